"""The learned backend's bank of start views: per scene seed, the start view and the goal views with their
poses, plus the scene facts an agent may know (family, objects, bounds, doorway). With it,
``backend="learned"`` opens scenes without MuJoCo; ``python -m world_model.model.start_bank`` renders it
with the engine.

File: ``np.savez_compressed`` (loaded with ``allow_pickle=False``): ``seeds [S]``, ``images [S,V,H,W,3]``
uint8, ``poses [S,V,4,4]`` (view 0 is the start, 1.. the goals), ``families [S]``, ``bounds [S,4]`` and
``objects [S]`` (JSON lists of ``{"id", "shape", "color"}``), and ``doorways [S,5]`` (NaN rows where not
known; banks made before it have none).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from world_model.backend import SceneInfo

DEFAULT_BANK = Path(__file__).parent / "weights" / "start_bank_64.npz"


@dataclass
class StartBank:
    seeds: np.ndarray
    images: np.ndarray
    poses: np.ndarray
    families: np.ndarray
    bounds: np.ndarray
    objects: np.ndarray
    doorways: np.ndarray

    @classmethod
    def load(cls, path: str | Path = DEFAULT_BANK) -> StartBank:
        with np.load(path, allow_pickle=False) as z:
            fields = [z[k] for k in ("seeds", "images", "poses", "families", "bounds", "objects")]
            doorways = z["doorways"] if "doorways" in z else np.full((len(fields[0]), 5), np.nan)
        return cls(*fields, doorways)

    def find(self, seed: int) -> int | None:
        hit = np.flatnonzero(self.seeds == seed)
        return int(hit[0]) if len(hit) else None

    def view(self, i: int, pose: np.ndarray | None) -> np.ndarray | None:
        """The banked image of scene row ``i`` seen from ``pose`` (None: the start), or None if not banked."""
        if pose is None:
            return self.images[i, 0]
        match = [v for v in range(self.poses.shape[1]) if np.allclose(self.poses[i, v], pose, atol=1e-5)]
        return self.images[i, match[0]] if match else None

    def info(self, i: int) -> SceneInfo:
        b = self.bounds[i]
        return SceneInfo(
            int(self.seeds[i]),
            str(self.families[i]),
            self.poses[i, 0].astype(np.float64),
            self.poses[i, 1:].astype(np.float64),
            json.loads(str(self.objects[i])),
            (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            tuple(float(v) for v in self.doorways[i]) if np.isfinite(self.doorways[i]).all() else (),
        )


def build(seeds: range, height: int = 64, width: int = 64, vfov_deg: float = 70.0) -> dict[str, np.ndarray]:
    from world_model.engine.oracle import OracleConfig, OracleWorldModel

    oracle = OracleWorldModel(OracleConfig(height=height, width=width, vfov_deg=vfov_deg))
    keys = ("seeds", "images", "poses", "families", "bounds", "objects", "doorways")
    out: dict[str, list] = {k: [] for k in keys}
    for seed in tqdm(seeds, desc="rendering start views"):
        sid, frames, info = oracle.open(seed)
        images, poses = [frames.rgb[0]], [frames.poses[0]]
        for goal in info.goal_poses:
            gid, gframes, _ = oracle.open(seed, start_pose=goal)
            images.append(gframes.rgb[0])
            poses.append(gframes.poses[0])
            oracle.close(gid)
        oracle.close(sid)
        out["seeds"].append(seed)
        out["images"].append(np.stack(images))
        out["poses"].append(np.stack(poses).astype(np.float64))
        out["families"].append(info.family)
        out["bounds"].append(np.asarray(info.bounds, np.float64))
        out["objects"].append(json.dumps(info.objects))
        out["doorways"].append(np.asarray(info.doorway or (np.nan,) * 5, np.float64))
    oracle.shutdown()
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m world_model.model.start_bank",
        description="Render the learned backend's start-view bank (start + goal views per scene seed).",
    )
    parser.add_argument(
        "--seeds",
        nargs=2,
        type=int,
        default=[0, 256],
        metavar=("START", "STOP"),
        help="scene seeds [START, STOP) (default: 0 256)",
    )
    parser.add_argument("--out", default=str(DEFAULT_BANK), help=f"output .npz (default: {DEFAULT_BANK})")
    parser.add_argument("--size", default="64x64", help="HxW (default: 64x64)")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    bank = build(range(*args.seeds), h, w)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **bank)
    print(f"{args.out}: {len(bank['seeds'])} scenes, {Path(args.out).stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
