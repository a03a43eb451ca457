"""Reward modules shared by every DreamX task: revisit consistency and exploration (new ground covered).

Revisit consistency: when the camera comes back near a pose it held at least ``min_gap_steps`` steps
earlier, the new frame is compared with what was seen there (on small thumbnails). Coming back means
arriving: a camera that stays put (within the same tolerances of where it stopped) scores one revisit at
most, when it arrives, however long it stays, so standing still earns nothing. The similarity is a
PSNR mapped to [0, 1]; the reward is ``weight * (similarity - neutral)``. A positive weight rewards a
world that looks the same when you come back; a negative weight turns the agent into an adversary that
searches for inconsistencies (and is charged for consistent revisits). Evaluation (``dreamx-eval``) uses
|Δyaw| ≤ 2°, |Δt| ≤ 0.1 m; these defaults are looser so that revisits happen often enough to learn from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from world_model.geometry import yaw_pitch
from world_model.metrics import psnr


@dataclass
class RevisitConfig:
    max_yaw_deg: float = 3.0
    max_pitch_deg: float = 3.0
    max_dist_m: float = 0.15
    min_gap_steps: int = 10
    thumb_size: int = 16
    max_history: int = 1024  # oldest entries are forgotten beyond this
    psnr_floor_db: float = 10.0  # similarity 0 at or below
    psnr_ceiling_db: float = 35.0  # similarity 1 at or above
    neutral: float = 0.5  # similarity that earns no reward


@dataclass
class Revisit:
    similarity: float  # [0, 1]
    psnr_db: float
    gap_steps: int
    distance_m: float
    yaw_deg: float


def thumbnail(rgb: np.ndarray, size: int) -> np.ndarray:
    """Area-averaged ``size x size x 3`` uint8 copy of an ``H x W x 3`` uint8 frame."""
    return cv2.resize(np.ascontiguousarray(rgb), (size, size), interpolation=cv2.INTER_AREA)


class RevisitTracker:
    """Remembers (pose, thumbnail) per step of one episode and scores returns to earlier poses."""

    def __init__(self, config: RevisitConfig) -> None:
        self.config = config
        # Visits live in a ring of max_history slots and a grid of max_dist_m cells, so a lookup only
        # looks at the 3x3 cells around the camera (a few entries), whatever the episode length.
        self._visits: dict[int, tuple] = {}  # slot -> (x, y, z, yaw, pitch, step, thumbnail, cell)
        self._grid: dict[tuple[int, int], list[int]] = {}
        self._next = 0
        self.count = 0
        self.psnr_sum = 0.0
        self.last: Revisit | None = None
        # The current stay: where the camera stopped (x, y, z, yaw, pitch), the step it got there, and
        # whether that arrival was already scored.
        self._anchor: tuple[float, float, float, float, float] | None = None
        self._stay_start = 0
        self._stay_scored = False

    def observe(self, step: int, pose: np.ndarray, rgb: np.ndarray) -> Revisit | None:
        """Score ``rgb`` seen at ``pose`` against the nearest earlier visit (if any), then remember it."""
        c = self.config
        x, y, z = pose[:3, 3].tolist()
        yaw, pitch = (float(a) for a in yaw_pitch(pose))
        thumb = thumbnail(rgb, c.thumb_size)
        cell = (math.floor(x / c.max_dist_m), math.floor(y / c.max_dist_m))
        max_yaw, max_pitch = math.radians(c.max_yaw_deg), math.radians(c.max_pitch_deg)

        def near(vx: float, vy: float, vz: float, vyaw: float, vpitch: float) -> tuple[float, float] | None:
            """(distance, |yaw difference|) when within the tolerances of this pose, else None."""
            dist = math.sqrt((vx - x) ** 2 + (vy - y) ** 2 + (vz - z) ** 2)
            dyaw = abs((vyaw - yaw + math.pi) % (2 * math.pi) - math.pi)
            ok = dist <= c.max_dist_m and dyaw <= max_yaw and abs(vpitch - pitch) <= max_pitch
            return (dist, dyaw) if ok else None

        if self._anchor is None or near(*self._anchor) is None:  # moved: a new stay begins here
            self._anchor, self._stay_start, self._stay_scored = (x, y, z, yaw, pitch), step, False
        best, best_score = None, math.inf
        for gx in (cell[0] - 1, cell[0], cell[0] + 1):
            for gy in (cell[1] - 1, cell[1], cell[1] + 1):
                for slot in () if self._stay_scored else self._grid.get((gx, gy), ()):
                    vx, vy, vz, vyaw, vpitch, vstep = self._visits[slot][:6]
                    if vstep >= self._stay_start or step - vstep < c.min_gap_steps:
                        continue  # seen during this stay, or too recently
                    hit = near(vx, vy, vz, vyaw, vpitch)
                    score = math.inf if hit is None else hit[0] / c.max_dist_m + hit[1] / max_yaw
                    if score < best_score:
                        best, best_score = (slot, *hit), score
        found = None
        if best is not None:
            slot, dist, dyaw = best
            self._stay_scored = True
            p = psnr(self._visits[slot][6], thumb)
            sim = min(1.0, max(0.0, (p - c.psnr_floor_db) / (c.psnr_ceiling_db - c.psnr_floor_db)))
            found = Revisit(sim, p, int(step - self._visits[slot][5]), dist, math.degrees(dyaw))
            self.count += 1
            self.psnr_sum += p
        slot = self._next
        if slot in self._visits:  # forget the oldest visit
            self._grid[self._visits[slot][7]].remove(slot)
        self._visits[slot] = (x, y, z, yaw, pitch, step, thumb, cell)
        self._grid.setdefault(cell, []).append(slot)
        self._next = (slot + 1) % c.max_history
        self.last = found
        return found

    @property
    def mean_psnr(self) -> float:
        return self.psnr_sum / self.count if self.count else float("nan")


@dataclass
class CoverageConfig:
    cell_m: float = 0.5  # floor cells
    yaw_bins: int = 8  # heading sectors: facing a new way in a known cell also counts as new ground


@dataclass
class CoverageTracker:
    """Counts the (cell, heading sector) views an episode has reached; each new one is new ground."""

    config: CoverageConfig
    visited: set[tuple[int, int, int]] = field(default_factory=set)

    def observe(self, poses: np.ndarray) -> int:
        """Add the views of a chunk's poses ``[K, 4, 4]``; returns how many were new."""
        c = self.config
        before = len(self.visited)
        for fwd_x, fwd_y, x, y in poses[:, :2, 2:4].transpose(0, 2, 1).reshape(-1, 4).tolist():
            sector = (
                math.floor((math.atan2(fwd_y, fwd_x) + math.pi) / (2 * math.pi) * c.yaw_bins) % c.yaw_bins
            )
            self.visited.add((math.floor(x / c.cell_m), math.floor(y / c.cell_m), sector))
        return len(self.visited) - before
