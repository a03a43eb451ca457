"""Where the learned simulator's camera may stand, judged from what the model itself predicts.

The engine's camera is a circle on the floor plan that stays inside the scene's bounds and out of every
object's footprint (a circle covering the object), and a blocked move slides along the obstacle
(``GroundTruthWorld.move_to``). The learned backend keeps the bounds (``LearnedWorldModel._reach``); for
objects it has no geometry, only the depth and semantics it predicts, so its camera keeps clear of the
object surfaces predicted in its last ``RECENT_FRAMES`` frames, seen from above. A move may not bring the
camera within ``radius`` of those points, nor, where it already is that close, any closer; like the engine
it tries the full move, then each axis alone, then stays. What those frames did not show does not block.
On the CPU, both steps run in the C kernel ``native/collision.c`` for a whole batch where it builds: the numpy
functions here (with ``geometry.unproject_many``) are its reference, with the same numbers bit for bit.
"""

from __future__ import annotations

import numpy as np

from world_model.geometry import Intrinsics, shared_pixel_rays, unproject_many
from world_model.model import native
from world_model.semantics import OBJECT_CLASS_IDS

# engine: a 0.2 m camera against footprint circles, which reach past a box's or table's sides
OBSTACLE_RADIUS_M = 0.35
OBSTACLE_BAND_M = (0.02, 2.0)  # heights above the floor (z = 0) of object points that block
MIN_POINTS = 3  # predicted pixels that make an obstacle (a stray pixel or two of noisy depth do not)
RECENT_FRAMES = 8  # frames whose surfaces block: what the camera just walked up to and looked down at


_IS_OBJECT = np.isin(np.arange(256), OBJECT_CLASS_IDS)  # by class id: a lookup, not a search per pixel
_IS_OBJECT_BYTES = _IS_OBJECT.astype(np.uint8)  # the same, as the C kernel reads it


def obstacle_points(
    depth: np.ndarray, semantic: np.ndarray, pose: np.ndarray, intr: Intrinsics
) -> np.ndarray:
    """Floor-plan positions ``[N, 2]`` of the object pixels of ``semantic [H, W]`` (class ids), placed
    by ``depth [H, W]`` (metric z-depth) seen from ``pose``, within ``OBSTACLE_BAND_M`` of the floor."""
    return obstacle_points_many(depth[None], semantic[None], pose[None], intr)[0]


def obstacle_points_many(
    depth: np.ndarray, semantic: np.ndarray, poses: np.ndarray, intr: Intrinsics, use_native: bool = True
) -> list[np.ndarray]:
    """:func:`obstacle_points` of a batch of frames ``[B, H, W]`` seen from ``poses [B, 4, 4]`` (with
    ``use_native``, in the C kernel where it builds: the same points)."""
    depth, semantic = np.ascontiguousarray(depth, np.float32), np.ascontiguousarray(semantic, np.uint8)
    poses = np.ascontiguousarray(poses, np.float64)
    if depth.shape != semantic.shape or poses.shape != (len(depth), 4, 4):
        raise ValueError(
            f"need depth and semantic [B, H, W] and poses [B, 4, 4], got {list(depth.shape)}, "
            f"{list(semantic.shape)} and {list(poses.shape)}"
        )
    if depth.shape[1:] != (intr.height, intr.width):
        raise ValueError(f"frames of {list(depth.shape[1:])} pixels for a {intr.height}x{intr.width} camera")
    if len(depth) == 0:
        return []
    if use_native and native.available():
        return _obstacle_points_native(depth, semantic, poses, intr)
    keep = np.take(_IS_OBJECT, semantic) & (depth > 0) & (depth < np.inf)  # finite and positive
    lo, hi = OBSTACLE_BAND_M
    return [p[(p[:, 2] > lo) & (p[:, 2] < hi), :2] for p in unproject_many(depth, poses, intr, keep)]


def _obstacle_points_native(
    depth: np.ndarray, semantic: np.ndarray, poses: np.ndarray, intr: Intrinsics
) -> list[np.ndarray]:
    b, hw = len(depth), depth.shape[1] * depth.shape[2]
    rays = shared_pixel_rays(intr).reshape(-1, 3)  # contiguous, read-only
    out, counts = np.empty((b * hw, 2)), np.empty(b, np.int64)
    n = native.load().dreamx_obstacles(
        depth.ctypes.data, semantic.ctypes.data, poses.ctypes.data, _IS_OBJECT_BYTES.ctypes.data,
        rays.ctypes.data, b, hw, *OBSTACLE_BAND_M, out.ctypes.data, counts.ctypes.data,
    )  # fmt: skip
    return _per_frame(out[:n].copy(), counts)  # a frame's points: a view of the batch's


def _per_frame(points: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """``points`` of consecutive frames split into each frame's, ``counts [B]`` of them (np.split's result,
    without its 10 us of overhead)."""
    ends = np.cumsum(counts).tolist()
    return [points[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def remember(recent: tuple[np.ndarray, ...], points: np.ndarray) -> tuple[np.ndarray, ...]:
    """The obstacle points of the last ``RECENT_FRAMES`` frames, ``points`` (the newest) last."""
    return (*recent[max(0, len(recent) + 1 - RECENT_FRAMES) :], points)


def _clearance(points: np.ndarray, xy: np.ndarray) -> float:
    """Distance from ``xy`` to the ``MIN_POINTS``-th nearest obstacle point."""
    d2 = ((points - xy) ** 2).sum(axis=1)
    return float(np.sqrt(np.partition(d2, MIN_POINTS - 1)[MIN_POINTS - 1]))


def slide(
    start: np.ndarray, target: np.ndarray, points: np.ndarray, radius: float = OBSTACLE_RADIUS_M
) -> np.ndarray:
    """The floor-plan position ``[2]`` reached moving from ``start [2]`` toward ``target [2]`` among
    obstacle ``points [N, 2]``: the target, else the target's x or y alone, else the start."""
    reach = radius + float(np.abs(target - start).max())
    # the only ones that can matter, tested axis by axis (2.2x faster than a reduction over the pair)
    near = (np.abs(points[:, 0] - start[0]) < reach) & (np.abs(points[:, 1] - start[1]) < reach)
    points = points[near]
    if len(points) < MIN_POINTS:
        return target.copy()
    needed = min(radius, _clearance(points, start))
    for xy in (target, np.array([target[0], start[1]]), np.array([start[0], target[1]])):
        if _clearance(points, xy) >= needed:
            return xy.copy()
    return start.copy()


def slide_many(
    starts: np.ndarray, targets: np.ndarray, obstacles: list[tuple[np.ndarray, ...]], use_native: bool = True
) -> np.ndarray:
    """:func:`slide` for a batch of moves from ``starts [B, 2]`` toward ``targets [B, 2]``, each among the
    obstacle points of its session's recent frames (``obstacles[b]``, as :func:`remember` keeps them); with
    ``use_native``, in the C kernel where it builds: the same positions."""
    starts, targets = np.ascontiguousarray(starts, np.float64), np.ascontiguousarray(targets, np.float64)
    if starts.shape != targets.shape or starts.shape != (len(obstacles), 2):
        got = f"{list(starts.shape)} and {list(targets.shape)}"
        raise ValueError(f"need starts and targets [B={len(obstacles)}, 2], got {got}")
    if not (use_native and native.available()):
        out = targets.copy()
        for b, recent in enumerate(obstacles):
            if not np.array_equal(starts[b], targets[b]):
                out[b] = slide(starts[b], targets[b], np.concatenate(recent or [np.empty((0, 2))]))
        return out
    frames = [points for recent in obstacles for points in recent]
    points = np.ascontiguousarray(np.concatenate(frames) if frames else np.empty((0, 2)), np.float64)
    offsets = np.zeros(len(obstacles) + 1, np.int64)
    np.cumsum([sum(len(p) for p in recent) for recent in obstacles], out=offsets[1:])
    out = np.empty_like(starts)
    status = native.load().dreamx_slide(
        starts.ctypes.data, targets.ctypes.data, points.ctypes.data, offsets.ctypes.data, len(starts),
        OBSTACLE_RADIUS_M, MIN_POINTS, out.ctypes.data,
    )  # fmt: skip
    if status == -1:
        raise ValueError(f"the C kernel takes MIN_POINTS from 1 to 16, got {MIN_POINTS}")
    if status != 0:
        raise MemoryError(f"no scratch memory for {offsets[-1]} obstacle points")
    return out
