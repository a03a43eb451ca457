"""Ground-truth video datasets: rendering trajectories, writing shards, reading them back.

A dataset is a folder of shards plus ``manifest.json`` (written by ``dreamx-generate``). A shard
``shard_<first seed>-<last seed>.npz`` (``np.savez_compressed``, no pickled objects: load it with
``allow_pickle=False``) holds N trajectories of T frames each, at H x W pixels:

===============  ==================  ======================================================================
array            shape, dtype        meaning
===============  ==================  ======================================================================
``rgb``          [N,T,H,W,3] uint8   colour
``depth``        [N,T,H,W] float16   z-depth along the camera axis, metres; inf where the ray hits nothing
``semantic``     [N,T,H,W] uint8     class ids of ``world_model.semantics.SEMANTIC_CLASSES`` (0 = sky)
``poses``        [N,T,4,4] float32   camera-to-world poses (OpenCV camera axes, world +z up) actually reached,
                                     after collisions
``keys``         [N,T] str           keys held to reach frame t from frame t-1 (``""`` at t = 0)
``events``       [N,T] str           JSON list of the event records applied just before frame t (``""``: none)
``seed``         [N] int64           scene seed
``trajectory``   [N] int64           index of the trajectory among those of its seed
``kind``         [N] str             trajectory kind (``world_model.engine.trajectories.KINDS``)
===============  ==================  ======================================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from world_model.engine.trajectories import Trajectory
from world_model.engine.world import GroundTruthWorld
from world_model.events import EventRecord

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PER_TRAJECTORY = ("rgb", "depth", "semantic", "poses", "keys", "events")


def render_trajectory(world: GroundTruthWorld, traj: Trajectory) -> dict[str, np.ndarray]:
    """Render ``traj`` in ``world`` (which it changes: pass a fresh world or a fork).

    The camera first moves to ``traj.start`` (when set); frame 0 is what it sees there, frame t > 0 comes
    after holding ``traj.keys[t]`` for one frame. ``traj.events[t]`` are applied just before frame t; a
    record the scene cannot do (nothing to push) is skipped and left out of ``events``. Returns the
    per-trajectory arrays of the shard format (``rgb [T,H,W,3]`` ... ``events [T]``)."""
    if traj.start is not None:
        world.move_to(traj.start)
    n, h, w = len(traj.keys), world.render_cfg.height, world.render_cfg.width
    rgb = np.empty((n, h, w, 3), np.uint8)
    depth = np.empty((n, h, w), np.float16)
    semantic = np.empty((n, h, w), np.uint8)
    poses = np.empty((n, 4, 4), np.float32)
    events = [""] * n
    for t, keys in enumerate(traj.keys):
        applied = []
        for record in traj.events.get(t, []):
            try:
                world.apply_events([record])
            except ValueError:
                continue
            applied.append(record.to_dict())
        events[t] = json.dumps(applied, sort_keys=True) if applied else ""
        obs = world.observe() if t == 0 else world.step_keys(keys)
        rgb[t], depth[t], semantic[t], poses[t] = obs.rgb, obs.depth, obs.semantic, obs.pose
    return {
        "rgb": rgb,
        "depth": depth,
        "semantic": semantic,
        "poses": poses,
        "keys": np.array(traj.keys, dtype=str),
        "events": np.array(events, dtype=str),
    }


def write_shard(
    path: str | Path,
    trajectories: list[dict[str, np.ndarray]],
    seeds: list[int],
    indices: list[int],
    kinds: list[str],
) -> None:
    """Stack per-trajectory arrays (all of the same T, H, W) into one shard at ``path``, atomically: the
    file appears complete or not at all."""
    path = Path(path)
    arrays = {name: np.stack([t[name] for t in trajectories]) for name in PER_TRAJECTORY}
    arrays["keys"] = arrays["keys"].astype(str)
    arrays.update(
        seed=np.array(seeds, np.int64),
        trajectory=np.array(indices, np.int64),
        kind=np.array(kinds, dtype=str),
    )
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_shard(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of one shard (see the module docstring), loaded into memory without pickle."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def decode_events(events: np.ndarray) -> dict[int, list[EventRecord]]:
    """The ``events [T]`` column of one trajectory as ``{frame: [EventRecord, ...]}``."""
    return {t: [EventRecord.from_dict(d) for d in json.loads(str(e))] for t, e in enumerate(events) if e}


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no dataset at {root}: {MANIFEST} is missing; make one with `dreamx-generate output_dir={root}`"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {manifest.get('format_version')}; this code reads "
            f"version {FORMAT_VERSION}: regenerate the dataset"
        )
    return manifest
