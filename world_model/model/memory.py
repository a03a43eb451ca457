"""Per-session memory of what was seen, and retrieval by camera geometry (design §7, WorldMem-style).

Every generated frame is kept with its predicted depth, pose, time and world state. The bank keeps the
latest frame plus *keyframes*: a frame becomes a keyframe unless a keyframe of the same world state already
covers its view from nearby; a keyframe from before an event is replaced by a newer view of the same place;
when the bank is full, the keyframe another one covers best goes, so rarely seen places stay remembered.
Retrieval for a target camera starts from the latest frame and greedily adds the keyframes that cover the
most still-uncovered parts of the target view (footprints projected into the target), minus staleness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from world_model.geometry import Intrinsics

COVERAGE_CELLS = 4  # the target view is split into COVERAGE_CELLS x COVERAGE_CELLS cells for coverage


@dataclass
class MemoryEntry:
    """One remembered frame: ``rgb [3,H,W]`` in [-1, 1], metric ``depth [H,W]`` (inf: sky), ``door [H,W]``
    (1 where the door was seen), ``pose [4,4]``, ``time`` (frame index), the world state it was seen in
    (``lights``, ``door_open``, ``version``) and ``points [P,3]``, its footprint for retrieval."""

    rgb: torch.Tensor
    depth: torch.Tensor
    door: torch.Tensor
    pose: np.ndarray
    time: int
    lights: bool
    door_open: bool
    version: int
    points: np.ndarray


def footprint_cells(points: np.ndarray, pose: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Which coverage cells of camera ``pose`` the footprints ``points [E,P,3]`` land in: ``[E, cells²]``
    bool, plus nothing behind the camera or outside the image."""
    rot, t = pose[:3, :3], pose[:3, 3]
    cam = (points - t) @ rot  # world -> camera: R^T (p - t)
    z = cam[..., 2]
    zs = np.maximum(z, 1e-6)
    u = intr.fx * cam[..., 0] / zs + intr.cx
    v = intr.fy * cam[..., 1] / zs + intr.cy
    inside = (z > 0.05) & (u >= 0) & (u < intr.width) & (v >= 0) & (v < intr.height)
    cu = np.clip((u * COVERAGE_CELLS / intr.width).astype(int), 0, COVERAGE_CELLS - 1)
    cv = np.clip((v * COVERAGE_CELLS / intr.height).astype(int), 0, COVERAGE_CELLS - 1)
    cells = np.zeros((points.shape[0], COVERAGE_CELLS * COVERAGE_CELLS), bool)
    e_idx, p_idx = np.nonzero(inside)
    cells[e_idx, (cv * COVERAGE_CELLS + cu)[e_idx, p_idx]] = True
    return cells


def overlap(points: np.ndarray, pose: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Fraction ``[E]`` of each footprint that camera ``pose`` sees (frustum test, no occlusion)."""
    rot, t = pose[:3, :3], pose[:3, 3]
    cam = (points - t) @ rot
    z = np.maximum(cam[..., 2], 1e-6)
    u = intr.fx * cam[..., 0] / z + intr.cx
    v = intr.fy * cam[..., 1] / z + intr.cy
    inside = (cam[..., 2] > 0.05) & (u >= 0) & (u < intr.width) & (v >= 0) & (v < intr.height)
    return inside.mean(axis=1)


def select(
    points: np.ndarray,
    ages: np.ndarray,
    pose: np.ndarray,
    intr: Intrinsics,
    k: int,
    latest: int,
    staleness: float = 0.002,
) -> list[int]:
    """Indices of up to ``k`` memories for camera ``pose``: ``latest`` first, then greedy coverage of the
    target view (ties and leftovers by overlap minus ``staleness`` per frame of age)."""
    cells = footprint_cells(points, pose, intr)
    score = overlap(points, pose, intr) - staleness * ages
    chosen = [latest]
    covered = cells[latest].copy()
    while len(chosen) < min(k, len(points)):
        gain = (cells & ~covered).sum(axis=1) + score
        gain[chosen] = -np.inf
        best = int(np.argmax(gain))
        if not cells[best].any():
            break
        chosen.append(best)
        covered |= cells[best]
    return chosen


class MemoryBank:
    """A session's bounded memory: the latest frame plus at most ``capacity`` keyframes."""

    def __init__(self, capacity: int = 48, same_place_m: float = 0.5, same_view: float = 0.8) -> None:
        self.capacity, self.same_place_m, self.same_view = capacity, same_place_m, same_view
        self.keyframes: list[MemoryEntry] = []
        self.used: list[int] = []  # when each keyframe was last retrieved (least recently used goes first)
        self.latest: MemoryEntry | None = None

    def __len__(self) -> int:
        return len(self.keyframes) + (self.latest is not None and self.latest not in self.keyframes)

    def copy(self) -> MemoryBank:
        """A fork's memory: same (immutable) entries, independent lists."""
        out = MemoryBank(self.capacity, self.same_place_m, self.same_view)
        out.keyframes, out.used, out.latest = list(self.keyframes), list(self.used), self.latest
        return out

    def add(self, entry: MemoryEntry, intr: Intrinsics) -> None:
        self.latest = entry
        if self.keyframes:
            pts = np.stack([k.points for k in self.keyframes])
            seen = overlap(pts, entry.pose, intr)
            near = np.array(
                [
                    np.linalg.norm(k.pose[:3, 3] - entry.pose[:3, 3]) < self.same_place_m
                    for k in self.keyframes
                ]
            )
            same = near & (seen >= self.same_view)
            for i in np.flatnonzero(same):
                if self.keyframes[i].version == entry.version:
                    return  # this place is already remembered in this world state
            stale = np.flatnonzero(same)
            if len(stale):  # the world changed since this place was remembered: the newer view wins
                self.keyframes[int(stale[0])] = entry
                self.used[int(stale[0])] = entry.time
                return
        self.keyframes.append(entry)
        self.used.append(entry.time)
        if len(self.keyframes) > self.capacity:
            drop = self._most_redundant(intr)
            self.keyframes.pop(drop)
            self.used.pop(drop)

    def _most_redundant(self, intr: Intrinsics) -> int:
        """The keyframe whose view another keyframe covers best (least recently used among equals)."""
        pts = np.stack([k.points for k in self.keyframes])
        seen = np.stack([overlap(pts, k.pose, intr) for k in self.keyframes])  # [viewer, entry]
        np.fill_diagonal(seen, 0.0)
        used = np.asarray(self.used, np.float64)
        return int(np.argmax(seen.max(axis=0) - 1e-6 * (used - used.min())))

    def retrieve(self, pose: np.ndarray, intr: Intrinsics, k: int, now: int) -> list[MemoryEntry]:
        """The latest frame and the keyframes that best cover the view from ``pose``."""
        if self.latest is None:
            raise RuntimeError("empty memory: open the session with a first frame")
        entries = [self.latest] + [e for e in self.keyframes if e is not self.latest]
        pts = np.stack([e.points for e in entries])
        ages = np.array([now - e.time for e in entries], np.float64)
        chosen = select(pts, ages, pose, intr, k, latest=0)
        for i in chosen:
            for j, kf in enumerate(self.keyframes):
                if kf is entries[i]:
                    self.used[j] = now
        return [entries[i] for i in chosen]
