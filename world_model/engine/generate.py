"""``dreamx-generate``: render a ground-truth dataset of trajectories (Hydra entry point; config in
``configs/engine/generate.yaml``, format in ``world_model.engine.dataset``).

    dreamx-generate                                            # train seeds 0-127, data/engine/train
    dreamx-generate seed_start=0 seed_stop=1000 workers=8 output_dir=data/big
    dreamx-generate split=validation seed_start=100000 seed_stop=100064 output_dir=data/engine/validation

Shards are written atomically and listed in ``manifest.json`` once complete, so an interrupted run picks up
where it stopped when started again with the same settings. The same settings give the same arrays,
whatever the number of workers: each trajectory's randomness comes from (scene seed, trajectory index).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from world_model.engine.dataset import FORMAT_VERSION, MANIFEST, render_trajectory, write_shard
from world_model.engine.trajectories import DEFAULT_KEYMAP, KINDS, make_trajectory, min_frames
from world_model.engine.world import GroundTruthWorld, RenderConfig
from world_model.options import check_options
from world_model.splits import SPLITS

_RNG_SALT = 0x7EA1
# Settings that may change between runs into one output_dir; any other change would mix datasets.
_RUN_ONLY = ("output_dir", "seed_start", "seed_stop", "workers")


@dataclass
class GenerateConfig:
    """What to render. Seeds ``[seed_start, seed_stop)`` must lie in ``split`` (``scenes.SPLITS``); each
    seed gives ``trajectories_per_seed`` trajectories of ``frames`` frames at ``height x width``, of kinds
    drawn with the weights in ``kinds``, with events on a share ``event_probability`` of them. Shards group
    ``seeds_per_shard`` consecutive seeds; ``workers`` processes render shards in parallel (None: one per
    CPU)."""

    output_dir: str = "data/engine/train"
    split: str = "train"
    seed_start: int = 0
    seed_stop: int = 128
    trajectories_per_seed: int = 4
    frames: int = 256
    height: int = 64
    width: int = 64
    vfov_deg: float = 70.0
    kinds: dict[str, float] = field(
        default_factory=lambda: {
            "random": 0.7,
            "out_and_back": 0.1,
            "closed_loop": 0.1,
            "translate_rotate": 0.1,
        }
    )
    event_probability: float = 0.25
    seeds_per_shard: int = 8
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; choose one of {', '.join(SPLITS)}")
        lo, hi = SPLITS[self.split]
        if not self.seed_start < self.seed_stop:
            raise ValueError(
                f"empty seed range [{self.seed_start}, {self.seed_stop}): need seed_start < seed_stop"
            )
        if not (lo <= self.seed_start and self.seed_stop <= hi):
            other = [
                n
                for n, (a, b) in SPLITS.items()
                if a < self.seed_stop and self.seed_start < b and n != self.split
            ]
            hint = (
                f"; seeds {SPLITS['validation'][0]}-{SPLITS['validation'][1] - 1} are the validation split "
                "(never train on them): pass split=validation to render an evaluation set"
                if "validation" in other
                else ""
            )
            raise ValueError(
                f"seeds [{self.seed_start}, {self.seed_stop}) are not all in the {self.split} "
                f"split [{lo}, {hi}){hint}"
            )
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown or not self.kinds or min(self.kinds.values()) < 0 or sum(self.kinds.values()) <= 0:
            raise ValueError(f"kinds must map some of {', '.join(KINDS)} to weights >= 0, got {self.kinds}")
        for kind, weight in self.kinds.items():
            if weight > 0 and self.frames < min_frames(kind, DEFAULT_KEYMAP):
                raise ValueError(
                    f"{kind} trajectories need frames >= {min_frames(kind, DEFAULT_KEYMAP)}, got "
                    f"frames={self.frames}: raise frames or set kinds.{kind}=0"
                )
        if min(self.trajectories_per_seed, self.frames, self.height, self.width, self.seeds_per_shard) < 1:
            raise ValueError("trajectories_per_seed, frames, height, width and seeds_per_shard must be >= 1")
        if not 0.0 <= self.event_probability <= 1.0:
            raise ValueError(f"event_probability must be in [0, 1], got {self.event_probability}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 (or null for one per CPU), got {self.workers}")


def generate_config(values: dict[str, Any]) -> GenerateConfig:
    """A ``GenerateConfig`` from plain values (a Hydra config), with a clear error for unknown keys."""
    check_options(values, GenerateConfig, "generate")
    return GenerateConfig(**values)


def plan_shards(cfg: GenerateConfig) -> list[tuple[str, list[int]]]:
    """(file name, seeds) of every shard of the run, in seed order."""
    seeds = list(range(cfg.seed_start, cfg.seed_stop))
    groups = [seeds[i : i + cfg.seeds_per_shard] for i in range(0, len(seeds), cfg.seeds_per_shard)]
    return [(f"shard_{g[0]:06d}-{g[-1]:06d}.npz", g) for g in groups]


def render_shard(
    cfg: GenerateConfig, name: str, seeds: list[int], progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Render and write one shard; returns its manifest entry. ``progress(1)`` after each trajectory."""
    render = RenderConfig(cfg.height, cfg.width, cfg.vfov_deg)
    kinds = sorted(k for k, w in cfg.kinds.items() if w > 0)
    weights = np.array([cfg.kinds[k] for k in kinds], np.float64)
    trajectories, shard_seeds, indices, shard_kinds = [], [], [], []
    for seed in seeds:
        base = GroundTruthWorld(seed, render, DEFAULT_KEYMAP)
        try:
            for index in range(cfg.trajectories_per_seed):
                rng = np.random.default_rng([seed, index, _RNG_SALT])
                kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
                traj = make_trajectory(
                    kind, rng, cfg.frames, DEFAULT_KEYMAP, base.spec, cfg.event_probability
                )
                trajectories.append(render_trajectory(base.fork(), traj))
                shard_seeds.append(seed)
                indices.append(index)
                shard_kinds.append(kind)
                if progress is not None:
                    progress(1)
        finally:
            base.close()
    write_shard(Path(cfg.output_dir) / name, trajectories, shard_seeds, indices, shard_kinds)
    return {
        "file": name,
        "seeds": seeds,
        "trajectories": len(trajectories),
        "frames": len(trajectories) * cfg.frames,
    }


def _dataset_settings(cfg: GenerateConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(cfg).items() if k not in _RUN_ONLY}


def _load_completed(cfg: GenerateConfig, planned: list[tuple[str, list[int]]]) -> dict[str, dict]:
    path = Path(cfg.output_dir) / MANIFEST
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    before, now = _dataset_settings(generate_config(old["config"])), _dataset_settings(cfg)
    changed = ", ".join(f"{k}={before.get(k)!r} (now {now[k]!r})" for k in now if before.get(k) != now[k])
    if old.get("format_version") != FORMAT_VERSION:
        changed = f"format version {old.get('format_version')} (now {FORMAT_VERSION})"
    if changed:
        raise ValueError(
            f"{cfg.output_dir} holds a dataset made with other settings: {changed}; use another "
            "output_dir, or the same settings to resume or extend it"
        )
    done = {e["file"]: e for e in old["shards"] if (Path(cfg.output_dir) / e["file"]).is_file()}
    taken = {s: e["file"] for e in done.values() for s in e["seeds"]}
    for name, seeds in planned:
        clash = {taken[s] for s in seeds if s in taken} - {name}
        if clash:
            raise ValueError(
                f"shard {name} would repeat seeds of {sorted(clash)} in {cfg.output_dir}: keep "
                "seed_start aligned with the earlier runs (same seeds_per_shard), or use another "
                "output_dir"
            )
    return done


def _write_manifest(cfg: GenerateConfig, done: dict[str, dict]) -> None:
    shards = sorted(done.values(), key=lambda e: e["seeds"][0])
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": asdict(cfg),
        "keymap": DEFAULT_KEYMAP.to_dict(),
        "shards": shards,
        "trajectories": sum(e["trajectories"] for e in shards),
        "frames": sum(e["frames"] for e in shards),
    }
    path = Path(cfg.output_dir) / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)


_progress_queue: Any = None


def _init_worker(progress_queue: Any) -> None:
    global _progress_queue
    _progress_queue = progress_queue


def _render_shard_in_worker(cfg: GenerateConfig, name: str, seeds: list[int]) -> dict[str, Any]:
    return render_shard(cfg, name, seeds, _progress_queue.put)


def generate(cfg: GenerateConfig, show_progress: bool = True) -> dict[str, Any]:
    """Render every shard of ``cfg`` not already complete in ``cfg.output_dir``; returns the manifest."""
    from tqdm import tqdm

    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    planned = plan_shards(cfg)
    done = _load_completed(cfg, planned)
    for stale in Path(cfg.output_dir).glob("*.tmp"):  # left by an interrupted run
        stale.unlink()
    todo = [(name, seeds) for name, seeds in planned if name not in done]
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(todo)))
    total = sum(len(seeds) for _, seeds in todo) * cfg.trajectories_per_seed
    with tqdm(
        total=total, unit="traj", desc=f"rendering {len(todo)} shards", disable=not show_progress
    ) as bar:
        if workers == 1:
            for name, seeds in todo:
                done[name] = render_shard(cfg, name, seeds, bar.update)
                _write_manifest(cfg, done)
        else:
            ctx = mp.get_context("spawn")  # fresh processes: no inherited GL state
            progress = ctx.Queue()
            with ctx.Pool(workers, initializer=_init_worker, initargs=(progress,)) as pool:
                pending = [pool.apply_async(_render_shard_in_worker, (cfg, n, s)) for n, s in todo]
                while pending:
                    try:
                        bar.update(progress.get(timeout=0.1))
                    except queue.Empty:
                        pass
                    for result in [r for r in pending if r.ready()]:
                        pending.remove(result)
                        entry = result.get()  # re-raises a worker's error
                        done[entry["file"]] = entry
                        _write_manifest(cfg, done)
                while not progress.empty():
                    bar.update(progress.get())
    _write_manifest(cfg, done)
    return json.loads((Path(cfg.output_dir) / MANIFEST).read_text())


def main() -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    configs = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "engine"))

    @hydra.main(version_base=None, config_path=configs, config_name="generate")
    def _main(cfg: DictConfig) -> None:
        config = generate_config(OmegaConf.to_container(cfg, resolve=True))
        manifest = generate(config)
        shards, trajectories = len(manifest["shards"]), manifest["trajectories"]
        print(
            f"{config.output_dir}: {shards} shards, {trajectories} trajectories, {manifest['frames']} frames"
        )

    _main()


if __name__ == "__main__":
    main()
