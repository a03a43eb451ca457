"""Reward modules shared by every DreamX task: revisit consistency and exploration (new ground covered).

Revisit consistency: when the camera comes back near a pose it held at least ``min_gap_steps`` steps
earlier, the new frame is compared with what was seen there (on small thumbnails). The similarity is a
PSNR mapped to [0, 1]; the reward is ``weight * (similarity - neutral)``. A positive weight rewards a
world that looks the same when you come back; a negative weight turns the agent into an adversary that
searches for inconsistencies (and is charged for consistent revisits). Evaluation (design §9) uses
|Δyaw| ≤ 2°, |Δt| ≤ 0.1 m; these defaults are looser so that revisits happen often enough to learn from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np


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


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse < 1e-10 else 10.0 * math.log10(255.0**2 / mse)


class RevisitTracker:
    """Remembers (pose, thumbnail) per step of one episode and scores returns to earlier poses."""

    def __init__(self, config: RevisitConfig) -> None:
        self.config = c = config
        self._pos = np.zeros((c.max_history, 3))
        self._ang = np.zeros((c.max_history, 2))  # yaw, pitch (rad)
        self._step = np.zeros(c.max_history, np.int64)
        self._thumb = np.zeros((c.max_history, c.thumb_size, c.thumb_size, 3), np.uint8)
        self._n = 0
        self._next = 0
        self.count = 0
        self.psnr_sum = 0.0
        self.last: Revisit | None = None

    def observe(self, step: int, pose: np.ndarray, rgb: np.ndarray) -> Revisit | None:
        """Score ``rgb`` seen at ``pose`` against the nearest earlier visit (if any), then remember it."""
        c = self.config
        fwd = pose[:3, 2]
        yaw, pitch = math.atan2(fwd[1], fwd[0]), math.asin(max(-1.0, min(1.0, fwd[2])))
        pos = pose[:3, 3]
        thumb = thumbnail(rgb, c.thumb_size)
        found = None
        if self._n:
            n = self._n
            dist = np.linalg.norm(self._pos[:n] - pos, axis=1)
            dyaw = np.abs((self._ang[:n, 0] - yaw + math.pi) % (2 * math.pi) - math.pi)
            dpitch = np.abs(self._ang[:n, 1] - pitch)
            ok = (
                (dist <= c.max_dist_m)
                & (dyaw <= math.radians(c.max_yaw_deg))
                & (dpitch <= math.radians(c.max_pitch_deg))
                & (step - self._step[:n] >= c.min_gap_steps)
            )
            if ok.any():
                idx = np.flatnonzero(ok)
                best = idx[np.argmin(dist[idx] / c.max_dist_m + dyaw[idx] / math.radians(c.max_yaw_deg))]
                p = psnr(self._thumb[best], thumb)
                sim = float(np.clip((p - c.psnr_floor_db) / (c.psnr_ceiling_db - c.psnr_floor_db), 0.0, 1.0))
                found = Revisit(
                    sim, p, int(step - self._step[best]), float(dist[best]), math.degrees(dyaw[best])
                )
                self.count += 1
                self.psnr_sum += p
        i = self._next
        self._pos[i], self._ang[i], self._step[i], self._thumb[i] = pos, (yaw, pitch), step, thumb
        self._next = (i + 1) % c.max_history
        self._n = min(self._n + 1, c.max_history)
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
        cells = np.floor(poses[:, :2, 3] / c.cell_m).astype(np.int64)
        yaw = np.arctan2(poses[:, 1, 2], poses[:, 0, 2])
        bins = np.floor((yaw + math.pi) / (2 * math.pi) * c.yaw_bins).astype(np.int64) % c.yaw_bins
        before = len(self.visited)
        self.visited.update(zip(cells[:, 0].tolist(), cells[:, 1].tolist(), bins.tolist(), strict=True))
        return len(self.visited) - before
