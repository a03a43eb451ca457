"""Training examples from ``dreamx-generate`` shards: memories, target camera, world state, targets.

An example is "predict frame t of a trajectory". Its memory is what the model would have at that point:
frame t-1 (the latest) plus earlier frames chosen by the same view-overlap retrieval the model runs. The
memories are degraded the way generated memories are (blur, noise, depth scale error), and the trainer can
replace the latest one by the model's own prediction (model-generated context against exposure bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from world_model.engine.dataset import decode_events, read_manifest
from world_model.geometry import Intrinsics
from world_model.model.memory import MemoryEntry, select
from world_model.model.reproject import view_points
from world_model.model.world_state import WorldState
from world_model.semantics import CLASS_ID

DOOR = CLASS_ID["door"]


@dataclass
class Example:
    memories: list[MemoryEntry]
    pose: np.ndarray
    state: WorldState
    rgb: np.ndarray  # [H,W,3] uint8 targets
    depth: np.ndarray  # [H,W] float32
    semantic: np.ndarray  # [H,W] uint8
    key: tuple[int, int]  # (trajectory, frame)


@lru_cache(maxsize=4096)
def _bounds(seed: int) -> tuple[float, float, float, float]:
    from world_model.engine.scenes import make_scene

    return make_scene(seed).bounds


def to_unit(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [-1, 1]."""
    return torch.as_tensor(np.asarray(rgb, np.float32)).movedim(-1, -3) / 127.5 - 1.0


def from_unit(rgb: torch.Tensor) -> torch.Tensor:
    """float ``[..., 3, H, W]`` in [-1, 1] -> uint8 ``[..., H, W, 3]``, rounded (the inverse of
    :func:`to_unit`; values outside [-1, 1] are clamped)."""
    return ((rgb + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1)


class TrajectoryStore:
    """All trajectories of a dataset folder in memory (uint8 / float16: ~25 kB per frame at 64x64)."""

    def __init__(self, root: str | Path, seeds: tuple[int, int] | None = None, progress: bool = True) -> None:
        manifest = read_manifest(root)
        arrays: dict[str, list[np.ndarray]] = {
            k: [] for k in ("rgb", "depth", "semantic", "poses", "events", "seed")
        }
        shards = manifest["shards"]
        for shard in tqdm(shards, desc=f"loading {root}", disable=not progress):
            with np.load(Path(root) / shard["file"], allow_pickle=False) as z:
                keep = np.ones(len(z["seed"]), bool)
                if seeds is not None:
                    keep = (z["seed"] >= seeds[0]) & (z["seed"] < seeds[1])
                for k in arrays:
                    arrays[k].append(z[k][keep])
        self.rgb, self.depth, self.semantic, self.poses, self.events, self.seed = (
            np.concatenate(arrays[k]) for k in ("rgb", "depth", "semantic", "poses", "events", "seed")
        )
        if not len(self.seed):
            raise ValueError(f"no trajectories in {root} for seeds {seeds}")
        self.height, self.width = self.rgb.shape[2:4]
        self.vfov_deg = float(manifest["config"].get("vfov_deg", 70.0))
        self.intr = Intrinsics.from_fov(self.height, self.width, self.vfov_deg)
        self._states: dict[int, list[WorldState]] = {}

    def __len__(self) -> int:
        return len(self.seed)

    @property
    def frames(self) -> int:
        return self.rgb.shape[1]

    def states(self, n: int) -> list[WorldState]:
        """World state at every frame of trajectory ``n``, replaying its events through ``WorldState``."""
        if n not in self._states:
            state, out = WorldState(), []
            events = decode_events(self.events[n])
            for t in range(self.frames):
                for record in events.get(t, []):
                    try:
                        state = state.apply(
                            record,
                            self.poses[n, t - 1].astype(np.float64),
                            self.depth[n, t - 1].astype(np.float32),
                            self.semantic[n, t - 1],
                            self.intr,
                            _bounds(int(self.seed[n])),
                            self.rgb[n, t - 1].astype(np.float32) / 255.0,
                        )
                    except ValueError:  # the model would not see a target here: it skips the event
                        pass
                out.append(state)
            self._states[n] = out
        return self._states[n]

    def entry(self, n: int, t: int, rng: np.random.Generator | None = None) -> MemoryEntry:
        """Frame t of trajectory n as a memory, degraded like a generated one when ``rng`` is given."""
        rgb = to_unit(self.rgb[n, t])
        depth = torch.from_numpy(self.depth[n, t].astype(np.float32))
        if rng is not None:
            if rng.random() < 0.5:
                rgb = torch.nn.functional.avg_pool2d(rgb[None], 3, 1, 1, count_include_pad=False)[0]
            rgb = (
                rgb + float(rng.uniform(0, 0.04)) * torch.randn(rgb.shape, generator=_torch_rng(rng))
            ).clamp(-1, 1)
            depth = depth * float(np.exp(rng.normal(0, 0.05)))
        st = self.states(n)[t]
        pose = self.poses[n, t].astype(np.float64)
        return MemoryEntry(
            rgb,
            depth,
            torch.from_numpy((self.semantic[n, t] == DOOR).astype(np.float32)),
            pose,
            t,
            st.lights_on,
            st.door_open,
            st.version,
            view_points(self.depth[n, t].astype(np.float32), pose, self.intr),
        )

    def example(self, n: int, t: int, rng: np.random.Generator, k: int = 4, candidates: int = 16) -> Example:
        """Predict frame ``t >= 1`` of trajectory ``n`` from frame t-1 and up to ``k``-1 retrieved earlier
        frames."""
        earlier = np.arange(t - 1)
        if len(earlier) > candidates:
            earlier = np.sort(rng.choice(earlier, candidates, replace=False))
        pool = [self.entry(n, t - 1, rng)] + [self.entry(n, int(s), rng) for s in earlier]
        pose = self.poses[n, t].astype(np.float64)
        ages = np.array([t - e.time for e in pool], np.float64)
        chosen = select(np.stack([e.points for e in pool]), ages, pose, self.intr, k, latest=0)
        return Example(
            [pool[i] for i in chosen],
            pose,
            self.states(n)[t],
            self.rgb[n, t],
            self.depth[n, t].astype(np.float32),
            self.semantic[n, t],
            (n, t),
        )


def _torch_rng(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**62)))
