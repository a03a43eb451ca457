"""Image and camera metrics: the one source of truth for rewards, evaluation and benchmarks.

Frames are ``[H, W, 3]`` uint8 (or float in [0, 255]); poses are camera-to-world 4x4 in the conventions of
``world_model.geometry``. Revisit pairs follow DreamX's protocol: two frames of one rollout
whose cameras are within ``max_dist_m`` and ``max_yaw_deg`` of each other, at least ``min_gap`` of the
rollout apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from world_model.geometry import Intrinsics, rotation_angle_deg

PSNR_CAP_DB = 99.0  # identical images


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB over all pixels, or over ``mask [H, W]`` (bool) pixels."""
    diff = a.astype(np.float32) - b.astype(np.float32)
    if mask is not None:
        diff = diff[mask]
        if diff.size == 0:
            return float("nan")
    mse = float(np.mean(diff**2))
    return PSNR_CAP_DB if mse < 1e-10 else 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) with a Gaussian window (sigma 1.5), mean over channels."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (7, 7), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


@dataclass
class CameraError:
    rotation_deg: float  # angle of R_est^T R_true
    translation_deg: float  # angle between translation directions (nan when the camera did not move)
    ok: bool  # the estimator found a pose


def estimate_relative_pose(
    frame0: np.ndarray, frame1: np.ndarray, intr: Intrinsics, upscale: int = 4
) -> tuple[np.ndarray, np.ndarray] | None:
    """Camera motion between two frames from SIFT matches and the essential matrix (OpenCV).

    Returns ``(R, t)``: the pose of camera 1 in camera 0's frame (rotation ``[3,3]``, unit translation
    ``[3]``), or None when too few matches survive. Small frames are upscaled so features exist at all.
    """
    sift = cv2.SIFT_create()
    g0, g1 = (
        cv2.resize(
            cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY),
            None,
            fx=upscale,
            fy=upscale,
            interpolation=cv2.INTER_CUBIC,
        )
        for f in (frame0, frame1)
    )
    k0, d0 = sift.detectAndCompute(g0, None)
    k1, d1 = sift.detectAndCompute(g1, None)
    if d0 is None or d1 is None or len(k0) < 8 or len(k1) < 8:
        return None
    matches = cv2.BFMatcher().knnMatch(d0, d1, k=2)
    good = [m for m, n in (p for p in matches if len(p) == 2) if m.distance < 0.8 * n.distance]
    if len(good) < 8:
        return None
    # OpenCV's keypoint (0, 0) is the centre of the first pixel, which is (0.5, 0.5) in our convention.
    p0 = (np.float64([k0[m.queryIdx].pt for m in good]) + 0.5) / upscale
    p1 = (np.float64([k1[m.trainIdx].pt for m in good]) + 0.5) / upscale
    return pose_from_matches(p0, p1, intr)


def pose_from_matches(
    p0: np.ndarray, p1: np.ndarray, intr: Intrinsics
) -> tuple[np.ndarray, np.ndarray] | None:
    """Relative pose ``(R, unit t)`` of camera 1 in camera 0's frame from matched pixels ``[N, 2]``."""
    k = intr.matrix
    e, inliers = cv2.findEssentialMat(p0, p1, k, method=cv2.RANSAC, prob=0.999, threshold=0.5)
    if e is None or e.shape != (3, 3):
        return None
    _, r, t, _ = cv2.recoverPose(e, p0, p1, k, mask=inliers)
    # OpenCV gives x1 = R x0 + t (world-to-camera of frame 1 in frame 0's coordinates); invert to a pose.
    rot = r.T
    trans = -r.T @ t.reshape(3)
    return rot, trans / max(np.linalg.norm(trans), 1e-12)


def camera_error(
    estimate: tuple[np.ndarray, np.ndarray] | None,
    pose0: np.ndarray,
    pose1: np.ndarray,
    min_translation_m: float = 0.02,
) -> CameraError:
    """Compare an estimated relative pose with the truth between camera-to-world ``pose0`` and ``pose1``."""
    if estimate is None:
        return CameraError(float("nan"), float("nan"), False)
    rel = np.linalg.inv(pose0) @ pose1
    rot_err = rotation_angle_deg(estimate[0], rel[:3, :3])
    t_true = rel[:3, 3]
    if np.linalg.norm(t_true) < min_translation_m:
        return CameraError(rot_err, float("nan"), True)
    cos = float(np.dot(estimate[1], t_true / np.linalg.norm(t_true)))
    return CameraError(rot_err, math.degrees(math.acos(max(-1.0, min(1.0, cos)))), True)


def revisit_pairs(
    poses: np.ndarray, max_dist_m: float = 0.1, max_yaw_deg: float = 2.0, min_gap: float = 0.2
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of one rollout's poses ``[T, 4, 4]`` that revisit each other:
    within ``max_dist_m`` and ``max_yaw_deg`` (and the same pitch) and at least ``min_gap`` (a fraction
    of T) apart in time."""
    t = len(poses)
    pos = poses[:, :3, 3]
    fwd = poses[:, :3, 2]
    gap = max(1, math.ceil(min_gap * t))
    cos_max = math.cos(math.radians(max_yaw_deg))
    pairs = []
    for i in range(t - gap):
        js = np.arange(i + gap, t)
        near = np.linalg.norm(pos[js] - pos[i], axis=1) <= max_dist_m
        aligned = fwd[js] @ fwd[i] >= cos_max
        pairs += [(i, int(j)) for j in js[near & aligned]]
    return pairs


def non_revisit_pairs(
    poses: np.ndarray,
    count: int,
    rng: np.random.Generator,
    min_dist_m: float = 1.0,
    min_angle_deg: float = 30.0,
    min_gap: float = 0.2,
) -> list[tuple[int, int]]:
    """Up to ``count`` random pairs as far apart in time as revisit pairs but clearly different views."""
    t = len(poses)
    gap = max(1, math.ceil(min_gap * t))
    pos, fwd = poses[:, :3, 3], poses[:, :3, 2]
    cos_min = math.cos(math.radians(min_angle_deg))
    out = []
    for _ in range(count * 20):
        if len(out) == count or t <= gap:
            break
        i = int(rng.integers(0, t - gap))
        j = int(rng.integers(i + gap, t))
        if np.linalg.norm(pos[j] - pos[i]) >= min_dist_m or fwd[j] @ fwd[i] <= cos_min:
            out.append((i, j))
    return out


def relative_depth_error(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``|pred - ref| / ref`` on the pixels where both depths are finite and positive (flattened)."""
    pred, ref = pred.astype(np.float64), ref.astype(np.float64)
    ok = np.isfinite(pred) & np.isfinite(ref) & (pred > 0) & (ref > 0)
    return np.abs(pred[ok] - ref[ok]) / ref[ok]


def event_mask(truth_with: np.ndarray, truth_without: np.ndarray) -> np.ndarray:
    """The pixels ``[H, W]`` an event changes in the truth: where its frames with and without it differ."""
    return np.any(truth_with != truth_without, axis=-1)
