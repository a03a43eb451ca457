"""Camera geometry: the one source of truth for poses, intrinsics, projection and the key map.

Conventions (used by the env, the engine, the model and the metrics alike):

- World frame: right-handed, +z up, floor at z = 0. Yaw is measured about +z from the +x axis
  (counter-clockwise seen from above); pitch is positive when looking up.
- Camera frame: OpenCV (+x right, +y down, +z forward).
- A pose is a camera-to-world 4x4 matrix (float64): ``p_world = pose @ p_camera``.
- Pixel (u, v) covers ``[u, u+1) x [v, v+1)``; its centre is at ``(u + 0.5, v + 0.5)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

MOVE_KEYS = "WASD"
LOOK_KEYS = "IJKL"
# Key combos the discrete action spaces index into. Opposite keys cancel, so they are not listed.
MOVE_COMBOS: tuple[str, ...] = ("", "W", "S", "A", "D", "WA", "WD", "SA", "SD")
LOOK_COMBOS: tuple[str, ...] = ("", "J", "L", "I", "K", "IJ", "IL", "KJ", "KL")


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``height x width``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, height: int, width: int, vfov_deg: float = 70.0) -> Intrinsics:
        """Square pixels, principal point at the image centre, vertical field of view in degrees."""
        if not 1.0 <= vfov_deg <= 170.0:
            raise ValueError(f"vertical field of view must be in [1, 170] degrees, got {vfov_deg}")
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        f = 0.5 * height / math.tan(math.radians(vfov_deg) / 2)
        return cls(f, f, width / 2, height / 2, width, height)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def to_pixels(self, x, y, z):
        """Pixel ``u, v`` of camera-frame points ``x, y, z`` (numpy or torch, any shape; z > 0: callers
        guard points behind the camera). The one pinhole projection every module uses."""
        return self.fx * x / z + self.cx, self.fy * y / z + self.cy


@dataclass(frozen=True)
class Viewpoint:
    """Where a walking camera stands and looks: position in metres, yaw and pitch in radians."""

    x: float
    y: float
    z: float
    yaw: float
    pitch: float = 0.0

    def pose(self) -> np.ndarray:
        return pose_from_yaw_pitch(np.array([self.x, self.y, self.z]), self.yaw, self.pitch)

    @classmethod
    def from_pose(cls, pose: np.ndarray) -> Viewpoint:
        """Inverse of :meth:`pose` for poses without roll."""
        yaw, pitch = yaw_pitch(pose)
        x, y, z = (float(v) for v in pose[:3, 3])
        return cls(x, y, z, float(yaw), float(pitch))


def pose_from_yaw_pitch(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world pose of a camera at ``position`` looking along (yaw, pitch), without roll."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    forward = np.array([cp * cy, cp * sy, sp])
    right = np.array([sy, -cy, 0.0])
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, position
    return pose


def yaw_pitch(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw (about +z from +x) and pitch (up positive), in radians, of camera poses ``[..., 4, 4]``: the
    heading and elevation of each camera's forward (+z) axis, the inverse of :func:`pose_from_yaw_pitch`
    (roll is ignored). Arrays of the leading shape (0-d for one pose)."""
    fwd = np.asarray(poses)[..., :3, 2]
    return np.arctan2(fwd[..., 1], fwd[..., 0]), np.arcsin(np.clip(fwd[..., 2], -1.0, 1.0))


MAX_TRANSLATION_M = 1e4  # a camera pose further out than this is refused: no scene is that large


def pose_problem(poses: np.ndarray) -> str | None:
    """What keeps float64 ``poses [..., 4, 4]`` from being camera poses (finite, within
    ``MAX_TRANSLATION_M``, rigid: orthonormal rotation of determinant +1, last row 0 0 0 1), as the end of
    a sentence naming them; ``None`` when they are. The one rule for the server's requests and the
    backends' calls."""
    if not np.isfinite(poses).all() or np.abs(poses[..., :3, 3]).max(initial=0) > MAX_TRANSLATION_M:
        return f"must be finite with translations below {MAX_TRANSLATION_M:,.0f} m"
    rot = poses[..., :3, :3]
    if (
        np.abs(np.swapaxes(rot, -1, -2) @ rot - np.eye(3)).max(initial=0) > 1e-4
        or np.abs(poses[..., 3, :] - [0, 0, 0, 1]).max(initial=0) > 0
        or (np.linalg.det(rot) <= 0).any()
    ):
        return "must be rigid transforms (orthonormal rotation, last row [0, 0, 0, 1])"
    return None


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (or a batch ``[..., 4, 4]`` of them)."""
    rot = pose[..., :3, :3]
    inv = np.zeros_like(pose)
    inv[..., :3, :3] = np.swapaxes(rot, -1, -2)
    inv[..., :3, 3] = -np.einsum("...ji,...j->...i", rot, pose[..., :3, 3])
    inv[..., 3, 3] = 1.0
    return inv


def rotation_angle_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> float:
    """Angle in degrees of the rotation taking ``rot_a`` to ``rot_b``."""
    cos = (np.trace(rot_a.T @ rot_b) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))


def project(points_world: np.ndarray, pose: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Project world points ``[N, 3]`` into the camera: pixel coordinates ``[N, 2]`` and depth ``[N]``.

    Depth is the camera-frame z (metres). Points behind the camera get depth <= 0; callers mask them.
    """
    cam = (invert_pose(pose) @ np.c_[points_world, np.ones(len(points_world))].T).T[:, :3]
    z = cam[:, 2]
    u, v = intr.to_pixels(cam[:, 0], cam[:, 1], np.where(np.abs(z) < 1e-9, 1e-9, z))
    return np.stack([u, v], axis=1), z


def pixel_rays(intr: Intrinsics) -> np.ndarray:
    """Camera-frame rays ``[H, W, 3]`` through pixel centres, scaled so that z = 1."""
    u = (np.arange(intr.width) + 0.5 - intr.cx) / intr.fx
    v = (np.arange(intr.height) + 0.5 - intr.cy) / intr.fy
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu, vv, np.ones_like(uu)], axis=-1)


@functools.lru_cache(maxsize=8)
def shared_pixel_rays(intr: Intrinsics) -> np.ndarray:
    """``pixel_rays``, made once per camera and read-only (unproject runs for every generated frame)."""
    rays = pixel_rays(intr)
    rays.flags.writeable = False
    return rays


def unproject(
    depth: np.ndarray, pose: np.ndarray, intr: Intrinsics, mask: np.ndarray | None = None
) -> np.ndarray:
    """World points ``[H, W, 3]`` seen at each pixel centre, given metric z-depth ``[H, W]``; with a boolean
    ``mask [H, W]``, only those pixels' points ``[N, 3]`` (and only they are computed)."""
    if mask is not None:
        return unproject_many(depth[None], pose[None], intr, mask[None])[0]
    return shared_pixel_rays(intr) * depth[..., None] @ pose[:3, :3].T + pose[:3, 3]


def unproject_many(
    depth: np.ndarray, poses: np.ndarray, intr: Intrinsics, mask: np.ndarray
) -> list[np.ndarray]:
    """:func:`unproject` with a mask for a batch of frames ``depth [B, H, W]`` at ``poses [B, 4, 4]``:
    each frame's points ``[N_b, 3]`` at the pixels of ``mask [B, H, W]``, the same as one call per frame."""
    pixels = np.flatnonzero(mask)  # one flat index array: 11x faster than np.nonzero's three
    per_frame = mask.shape[1] * mask.shape[2]
    cam = shared_pixel_rays(intr).reshape(-1, 3)[pixels % per_frame] * depth.reshape(-1)[pixels][:, None]
    parts = np.split(cam, np.searchsorted(pixels, np.arange(1, len(depth)) * per_frame))
    # each rotation row summed left to right, then t: the order of the C kernel model/native/collision.c
    # (a matmul may round otherwise), so both give the same points bit for bit
    return [
        part[:, :1] * pose[:3, 0] + part[:, 1:2] * pose[:3, 1] + part[:, 2:3] * pose[:3, 2] + pose[:3, 3]
        for part, pose in zip(parts, poses, strict=True)
    ]


def reproject(
    rgb: np.ndarray, depth: np.ndarray, src_pose: np.ndarray, dst_pose: np.ndarray, intr: Intrinsics
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward-warp a source frame into a target camera with a z-buffer (nearest-pixel splat).

    Returns warped colour ``[H, W, 3]`` (uint8), warped z-depth ``[H, W]`` (inf where empty) and a
    validity mask ``[H, W]``. This numpy version is the reference; the model uses a batched torch one.
    """
    valid_depth = np.isfinite(depth) & (depth > 0)
    # sky (inf) would unproject to inf * 0 = nan with a RuntimeWarning: those pixels are dropped anyway
    points = unproject(np.where(valid_depth, depth, 1.0), src_pose, intr).reshape(-1, 3)
    colours = rgb.reshape(-1, rgb.shape[-1])
    ok = valid_depth.reshape(-1)
    uv, z = project(points[ok], dst_pose, intr)
    colours = colours[ok]
    u, v = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
    inside = (z > 1e-3) & (u >= 0) & (u < intr.width) & (v >= 0) & (v < intr.height)
    u, v, z, colours = u[inside], v[inside], z[inside], colours[inside]
    order = np.argsort(-z)  # far first, so nearer points overwrite them
    flat = v[order] * intr.width + u[order]
    out_depth = np.full(intr.height * intr.width, np.inf)
    out_rgb = np.zeros((intr.height * intr.width, rgb.shape[-1]), dtype=rgb.dtype)
    out_depth[flat] = z[order]
    out_rgb[flat] = colours[order]
    valid = np.isfinite(out_depth)
    shape = (intr.height, intr.width)
    return out_rgb.reshape(*shape, -1), out_depth.reshape(shape), valid.reshape(shape)


@dataclass(frozen=True)
class KeyMap:
    """Per-frame camera motion for held keys. Distances in metres, angles in degrees."""

    move_step: float = 0.10
    strafe_step: float = 0.10
    yaw_step_deg: float = 3.0
    pitch_step_deg: float = 3.0
    max_pitch_deg: float = 60.0

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}


def parse_keys(keys: str) -> str:
    """Validate a held-key string such as ``"WJ"`` (case-insensitive); returns it upper-cased."""
    upper = keys.upper()
    bad = sorted(set(upper) - set(MOVE_KEYS + LOOK_KEYS))
    if bad:
        raise ValueError(
            f"unknown key(s) {bad!r} in {keys!r}: move with W/A/S/D, look with I/J/K/L (combos allowed)"
        )
    return upper


def key_deltas(keys: str, keymap: KeyMap = KeyMap()) -> tuple[float, float, float, float]:
    """Per-frame (forward m, right m, yaw rad, pitch rad) for the held keys."""
    k = parse_keys(keys)
    forward = keymap.move_step * (("W" in k) - ("S" in k))
    right = keymap.strafe_step * (("D" in k) - ("A" in k))
    yaw = math.radians(keymap.yaw_step_deg) * (("J" in k) - ("L" in k))
    pitch = math.radians(keymap.pitch_step_deg) * (("I" in k) - ("K" in k))
    return forward, right, yaw, pitch


def apply_deltas(
    view: Viewpoint, forward: float, right: float, yaw: float, pitch: float, keymap: KeyMap = KeyMap()
) -> Viewpoint:
    """One frame of motion: rotate, then translate in the horizontal plane along the new heading."""
    new_yaw = math.atan2(math.sin(view.yaw + yaw), math.cos(view.yaw + yaw))
    limit = math.radians(keymap.max_pitch_deg)
    new_pitch = float(np.clip(view.pitch + pitch, -limit, limit))
    c, s = math.cos(new_yaw), math.sin(new_yaw)
    dx = forward * c + right * s
    dy = forward * s - right * c
    return replace(view, x=view.x + dx, y=view.y + dy, yaw=new_yaw, pitch=new_pitch)


def step_keys(view: Viewpoint, keys: str, keymap: KeyMap = KeyMap()) -> Viewpoint:
    """The viewpoint after holding ``keys`` for one frame (no collisions; the engine adds those)."""
    return apply_deltas(view, *key_deltas(keys, keymap), keymap=keymap)


def key_trajectory(view: Viewpoint, keys: list[str], keymap: KeyMap = KeyMap()) -> list[Viewpoint]:
    """Viewpoints after each frame of a held-key sequence (one entry per frame)."""
    out = []
    for k in keys:
        view = step_keys(view, k, keymap)
        out.append(view)
    return out
