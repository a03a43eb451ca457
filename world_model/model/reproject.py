"""Batched forward warping with a z-buffer (torch): the model's camera conditioning.

``geometry.reproject`` is the numpy reference for one frame; this module warps many source frames into
many target cameras at once, every source frame landing in the image of its group. Ties in the z-buffer are
broken by source index, so the result is deterministic whatever the thread count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from world_model.geometry import Intrinsics, pixel_rays
from world_model.model.device import triton_available
from world_model.model.native import available as _native_available
from world_model.model.splat_native import splat_native
from world_model.model.splat_rules import DEPTH_QUANTUM, FOOTPRINT_DEPTH_FACTOR, KEY_SHIFT, MIN_Z, camera_rays

SAME_SURFACE = 0.05  # with priorities, depths within this fraction of the nearest count as its surface


def world_rays(poses: torch.Tensor, intr: Intrinsics, axes: int = 3) -> torch.Tensor:
    """Each pixel's ray from cameras ``poses [B, 4, 4]`` in world axes, per unit of camera z: ``[B, H, W,
    axes]`` (x, y, z; ``axes=2``: x and y only)."""
    rays = camera_rays(intr, poses.device).to(poses.dtype)
    return torch.einsum("hwj,bij->bhwi", rays, poses[:, :axes, :3])


def floor_depth(poses: torch.Tensor, intr: Intrinsics) -> torch.Tensor:
    """The z-depth ``[B, H, W]`` at which each pixel's ray meets the floor (the plane z = 0) from cameras
    ``poses [B, 4, 4]``; inf where the ray does not go down to it."""
    rays = camera_rays(intr, poses.device).to(poses.dtype)  # [H, W, 3], camera z = 1
    down = torch.einsum("hwj,bj->bhw", rays, poses[:, 2, :3])  # world z per unit camera z
    height = poses[:, 2, 3][:, None, None]
    depth = torch.where(down < -1e-3, height / (-down).clamp_min(1e-3), torch.full_like(down, float("inf")))
    return torch.where(height > 0, depth, torch.full_like(depth, float("inf")))


def room_depth(poses: torch.Tensor, intr: Intrinsics, bounds: torch.Tensor) -> torch.Tensor:
    """The z-depth ``[B, H, W]`` at which each pixel's ray from cameras ``poses [B, 4, 4]`` leaves the
    room's footprint ``bounds [B, 4]`` (x0, y0, x1, y1: the walls' inner faces, where the camera may stand),
    going through its walls; inf for a camera outside it or with bounds that are not finite (no room)."""
    world = world_rays(poses, intr, axes=2)
    pos = poses[:, :2, 3][:, None, None, :]
    lo, hi = bounds[:, None, None, :2], bounds[:, None, None, 2:]
    far = torch.where(world > 0, hi - pos, lo - pos)  # the wall each ray heads for, per axis
    ok = world.abs() > 1e-6
    steps = far / torch.where(ok, world, torch.ones_like(world))
    steps = torch.where(ok, steps, torch.full_like(world, float("inf")))
    depth = steps.amin(dim=-1)
    inside = (
        torch.isfinite(bounds).all(dim=1)
        & (poses[:, :2, 3] >= bounds[:, :2]).all(dim=1)
        & (poses[:, :2, 3] <= bounds[:, 2:]).all(dim=1)
    )
    return torch.where(inside[:, None, None], depth, torch.full_like(depth, float("inf")))


DOORWAY_TOLERANCE_M = 0.05  # a ray leaving the room this near the doorway's line goes through it


def doorway_pixels(
    poses: torch.Tensor, intr: Intrinsics, room: torch.Tensor, doorway: torch.Tensor
) -> torch.Tensor:
    """Which pixels' rays ``[B, H, W]`` (bool) from cameras ``poses [B, 4, 4]`` leave the room through its
    doorway, ``doorway [B, 5]`` (x0, y0, x1, y1, height: ``SceneInfo.doorway``; NaN rows for none), at
    ``room [B, H, W]`` (``room_depth``, where each ray leaves the room's footprint)."""
    world = world_rays(poses, intr)
    room = room.to(poses.dtype)
    exit_ = poses[:, None, None, :3, 3] + room[..., None] * world  # where each ray leaves the footprint
    doorway = doorway.to(poses.dtype)
    start, end = doorway[:, None, None, 0:2], doorway[:, None, None, 2:4]
    span = end - start
    length = span.norm(dim=-1).clamp_min(1e-9)
    along = ((exit_[..., :2] - start) * span).sum(-1) / length
    across = (exit_[..., 0] - start[..., 0]) * span[..., 1] - (exit_[..., 1] - start[..., 1]) * span[..., 0]
    height = exit_[..., 2]
    return (
        torch.isfinite(room)
        & (across.abs() / length <= DOORWAY_TOLERANCE_M)
        & (along >= 0)
        & (along <= length)
        & (height >= 0)
        & (height <= doorway[:, None, None, 4])
    )


def open_door_depth(
    poses: torch.Tensor, intr: Intrinsics, doorway: torch.Tensor, bounds: torch.Tensor
) -> torch.Tensor:
    """The z-depth ``[B, H, W]`` at which each pixel's ray from cameras ``poses [B, 4, 4]`` meets the open
    door: the panel of the doorway ``doorway [B, 5]`` (``SceneInfo.doorway``, hinge at its first end) turned
    90 degrees on its hinge to the outside of the room ``bounds [B, 4]``, as the engine opens it; inf where
    the ray misses it (no occlusion test: nearer surfaces hide it by depth)."""
    world = world_rays(poses, intr)
    doorway, bounds = doorway.to(poses.dtype), bounds.to(poses.dtype)
    hinge, span = doorway[:, 0:2], doorway[:, 2:4] - doorway[:, 0:2]
    width = span.norm(dim=-1).clamp_min(1e-9)
    u = span / width[:, None]  # along the closed door: the open panel's normal
    out_ = torch.stack([-u[:, 1], u[:, 0]], dim=-1)
    centre = (bounds[:, :2] + bounds[:, 2:]) / 2
    away = torch.where(((hinge - centre) * out_).sum(-1, keepdim=True) < 0, -out_, out_)  # to the outside
    cam = poses[:, :2, 3]
    facing = (world[..., :2] * u[:, None, None]).sum(-1)
    gap = ((hinge - cam) * u).sum(-1)[:, None, None]
    t = gap / torch.where(facing.abs() > 1e-9, facing, torch.full_like(facing, 1e-9))
    hit = cam[:, None, None] + t[..., None] * world[..., :2]
    along = ((hit - hinge[:, None, None]) * away[:, None, None]).sum(-1)
    height = poses[:, None, None, 2, 3] + t * world[..., 2]
    on = (
        (facing.abs() > 1e-9)
        & (t > 0)
        & (along >= 0)
        & (along <= width[:, None, None])
        & (height >= 0)
        & (height <= doorway[:, None, None, 4])
    )
    return torch.where(on, t, torch.full_like(t, float("inf")))


GROUND_MARGIN = 2.5  # the engine's floor reaches this many room widths (lengths) beyond the walls


def ground_reach(
    poses: torch.Tensor, intr: Intrinsics, floor: torch.Tensor, bounds: torch.Tensor
) -> torch.Tensor:
    """Which pixels ``[B, H, W]`` (bool) meet the floor where the ground exists, at ``floor [B, H, W]``
    (``floor_depth``): within ``GROUND_MARGIN`` room sizes of the room ``bounds [B, 4]``, past which a
    doorway shows what lies beyond the ground."""
    world = world_rays(poses, intr, axes=2)
    hit = poses[:, None, None, :2, 3] + floor.to(poses.dtype)[..., None] * world
    bounds = bounds.to(poses.dtype)
    size = bounds[:, 2:] - bounds[:, :2]
    lo, hi = bounds[:, :2] - GROUND_MARGIN * size, bounds[:, 2:] + GROUND_MARGIN * size
    return torch.isfinite(floor) & (hit >= lo[:, None, None]).all(-1) & (hit <= hi[:, None, None]).all(-1)


def splat(
    feats: torch.Tensor | Sequence[Sequence[torch.Tensor]],
    depth: torch.Tensor | Sequence[torch.Tensor],
    src_poses: torch.Tensor,
    dst_poses: torch.Tensor,
    groups: torch.Tensor,
    n_groups: int,
    intr: Intrinsics,
    priority: torch.Tensor | None = None,
    tolerance: float = SAME_SURFACE,
    footprint: int = 1,
    use_triton: bool | None = None,
    zbuffer: Callable | None = None,
    use_native: bool | None = None,
    far: float = float("inf"),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp ``N`` source frames into ``n_groups`` target cameras.

    ``feats [N, C, H, W]`` are carried along (colour, flags), ``depth [N, H, W]`` is metric z-depth
    (inf or <= 0: nothing there; with a finite ``far``, inf is a surface ``far`` metres away, as the sky
    is drawn), ``src_poses [N, 4, 4]`` camera-to-world of each source, ``dst_poses [G, 4, 4]`` of each
    target, ``groups [N]`` the target of each source. ``feats`` and ``depth`` may also come source by
    source, where they lie: per source a sequence of ``[k, H, W]`` or ``[H, W]`` planes, and a sequence of
    ``[H, W]`` depths (the C kernel reads them in place, the other paths stack them). With ``priority [N]``
    (non-negative ints, lower wins), a pixel takes the highest-priority source among those within
    ``tolerance`` (relative) of the nearest depth there: the same surface seen by several memories comes
    from the preferred one, while nearer surfaces still hide farther ones. ``footprint=2`` also writes each
    point into the 2x2 pixels around it (behind any point that lands there directly), closing the one-pixel
    cracks a turning or approaching camera leaves. The z-buffer runs as a Triton kernel on CUDA
    (``use_triton=None``: automatic; ``True`` forces it, e.g. under ``TRITON_INTERPRET=1``); on the CPU as
    the C kernel of ``splat_native`` (``use_native=None``: when it builds and no ``zbuffer`` is given);
    elsewhere as ``zbuffer`` (default :func:`zbuffer_torch`). All give the same keys. Returns warped
    ``feats [G, C, H, W]`` (0 where empty), z-depth ``[G, H, W]`` (inf where empty) and ``mask [G, H, W]``.
    """
    if footprint not in (1, 2):
        raise ValueError(f"footprint must be 1 or 2, got {footprint}")
    stacked = isinstance(feats, torch.Tensor)
    dev = feats.device if stacked else depth[0].device
    rel = relative_poses(src_poses, dst_poses, groups)
    triton = use_triton if use_triton is not None else (dev.type == "cuda" and triton_available())
    if not triton and (
        use_native
        if use_native is not None
        else dev.type == "cpu" and zbuffer is None and _native_available()
    ):
        return splat_native(feats, depth, rel, groups, n_groups, intr, priority, tolerance, footprint, far)
    if not stacked:
        feats, depth = stack_sources(feats, depth)
    if far != float("inf"):
        depth = torch.where(depth == float("inf"), torch.full_like(depth, far), depth)
    n, c, h, w = feats.shape
    args = (depth, rel, groups, n_groups, intr, priority, tolerance, footprint)
    if triton:
        from world_model.model.splat_triton import zbuffer_triton  # needs triton, optional on the CPU

        best, z = zbuffer_triton(*args), _project(depth, rel, intr)[0]
    else:
        zbuffer = zbuffer_torch if zbuffer is None else zbuffer
        best, z = zbuffer(*args, camera_rays(intr, dev))
    empty = torch.iinfo(torch.int64).max
    hit = best != empty
    winner = best[hit] & ((1 << KEY_SHIFT) - 1)
    out = torch.zeros(n_groups * h * w, c, dtype=feats.dtype, device=dev)
    out[hit] = feats.permute(0, 2, 3, 1).reshape(-1, c)[winner]
    zbuf = torch.full((n_groups * h * w,), float("inf"), device=dev)
    zbuf[hit] = z.reshape(-1)[winner]
    return (
        out.reshape(n_groups, h, w, c).permute(0, 3, 1, 2),
        zbuf.reshape(n_groups, h, w),
        hit.reshape(n_groups, h, w),
    )


def stack_sources(
    sources: Sequence[Sequence[torch.Tensor]], depths: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``feats [N, C, H, W]`` and ``depth [N, H, W]`` of sources given plane by plane (see :func:`splat`):
    one stack per plane group, a few large copies rather than one per source."""
    parts = [torch.stack([planes[j] for planes in sources]) for j in range(len(sources[0]))]
    return torch.cat([p if p.dim() == 4 else p[:, None] for p in parts], dim=1), torch.stack(list(depths))


def relative_poses(src_poses: torch.Tensor, dst_poses: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each source camera ``[N, 4, 4]`` in the frame of its target camera ``dst_poses[groups]``."""
    return torch.linalg.solve(dst_poses[groups].double(), src_poses.double()).float()


def _project(depth: torch.Tensor, rel: torch.Tensor, intr: Intrinsics, rays: torch.Tensor | None = None):
    """Target-camera z, sub-pixel u, v (``[N, H*W]``) and validity of every source pixel (``rays``: the
    ``camera_rays``, when the caller has them). Written element by element, in the order the C kernel of
    ``splat_native`` computes it, so both round alike."""
    n = depth.shape[0]
    ok = torch.isfinite(depth) & (depth > 0)
    rays = camera_rays(intr, depth.device) if rays is None else rays
    d = torch.where(ok, depth, torch.ones_like(depth)).reshape(n, -1)
    x, y = rays[..., 0].reshape(1, -1) * d, rays[..., 1].reshape(1, -1) * d  # the rays' z is 1
    r, t = rel[:, None, :3, :3], rel[:, None, :3, 3]
    px, py, z = (x * r[..., j, 0] + y * r[..., j, 1] + d * r[..., j, 2] + t[..., j] for j in range(3))
    return z, *intr.to_pixels(px, py, z.clamp_min(1e-6)), ok.reshape(n, -1)


def zbuffer_torch(
    depth: torch.Tensor,
    rel: torch.Tensor,
    groups: torch.Tensor,
    n_groups: int,
    intr: Intrinsics,
    priority: torch.Tensor | None,
    tolerance: float,
    footprint: int,
    rays: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The z-buffer of :func:`splat` (reference implementation): per target pixel, the packed key
    ``(depth in 0.1 mm or priority) << 32 | source pixel index`` of the winner, int64 max where empty;
    and the target-camera z of every source pixel. ``rays``: ``camera_rays(intr)``, passed in so a compiled
    z-buffer does not trace the cache."""
    n, h, w = depth.shape
    hw, dump = h * w, n_groups * h * w  # out-of-view points are sent to one extra "dump" cell
    z, uf, vf, ok = _project(depth, rel, intr, rays)
    ok = ok & (z > MIN_Z)
    u, v = torch.floor(uf).long(), torch.floor(vf).long()
    if footprint == 2:  # spots [S, N, H*W]: the 2x2 pixels around the point, which hold its own pixel (at
        # its depth); the other three get it slightly behind
        ub, vb = torch.floor(uf - 0.5).long(), torch.floor(vf - 0.5).long()
        us, vs = torch.stack([ub, ub, ub + 1, ub + 1]), torch.stack([vb, vb + 1, vb, vb + 1])
        zs = torch.where((us == u) & (vs == v), z, z * FOOTPRINT_DEPTH_FACTOR)
    else:
        us, vs, zs = u[None], v[None], z[None]
    keep = ok & (us >= 0) & (us < w) & (vs >= 0) & (vs < h)
    target = torch.where(keep, groups[:, None] * hw + vs * w + us, dump).reshape(-1)
    pid = torch.arange(n * hw, device=depth.device).reshape(1, n, hw)
    key = ((torch.round(zs / DEPTH_QUANTUM).long() << KEY_SHIFT) + pid).reshape(-1)  # + = | (low bits 0)
    empty = torch.iinfo(torch.int64).max
    best = torch.full((dump + 1,), empty, dtype=torch.long, device=depth.device)
    best.scatter_reduce_(0, target, key, reduce="amin")
    if priority is not None:
        znear = (best >> KEY_SHIFT).double() * DEPTH_QUANTUM
        same = zs.reshape(-1).double() <= znear[target] * (1 + tolerance) + DEPTH_QUANTUM
        ranked = ((priority.long() << KEY_SHIFT).reshape(1, n, 1) + pid).expand(len(us), n, hw)
        key = torch.where(same, ranked.reshape(-1), empty)
        best = torch.full_like(best, empty).scatter_reduce_(0, target, key, reduce="amin")
    return best[:dump], z


@functools.lru_cache(maxsize=8)
def _footprint_rays(intr: Intrinsics, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ys = (np.arange(grid) * intr.height // grid + intr.height // (2 * grid)).astype(int)
    xs = (np.arange(grid) * intr.width // grid + intr.width // (2 * grid)).astype(int)
    return ys, xs, pixel_rays(intr)[np.ix_(ys, xs)]


def view_points(
    depth: np.ndarray, pose: np.ndarray, intr: Intrinsics, grid: int = 8, far: float = 30.0
) -> np.ndarray:
    """A sparse sample ``[..., grid*grid, 3]`` of the world points frames ``depth [..., H, W]`` at ``pose
    [..., 4, 4]`` saw (sky at ``far`` metres): the footprint that view-overlap retrieval compares across
    cameras."""
    ys, xs, rays = _footprint_rays(intr, grid)
    d = depth[..., ys[:, None], xs[None, :]].astype(np.float64)
    d = np.where(np.isfinite(d) & (d > 0), np.minimum(d, far), far)
    cam = (rays * d[..., None]).reshape(*d.shape[:-2], -1, 3)
    return cam @ np.swapaxes(pose[..., :3, :3], -1, -2) + pose[..., None, :3, 3]
