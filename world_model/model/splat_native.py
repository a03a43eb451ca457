"""The projection, z-buffer and gather of ``reproject.splat`` as a small C kernel (``native/splat.c``),
for the CPU; :mod:`world_model.model.native` builds and loads it. ``reproject.zbuffer_torch`` is the
reference it is tested against (same keys, so the same frames bit for bit).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from world_model.geometry import Intrinsics
from world_model.model.native import load
from world_model.model.splat_rules import DEPTH_QUANTUM, FOOTPRINT_DEPTH_FACTOR, MIN_Z, camera_rays


@functools.lru_cache(maxsize=8)
def _planar_rays(intr: Intrinsics) -> torch.Tensor:
    """The x and y ``[2, H*W]`` of ``camera_rays``, one plane each, as the kernel reads them."""
    return camera_rays(intr)[..., :2].reshape(-1, 2).T.contiguous()


def splat_native(
    feats: torch.Tensor | Sequence[Sequence[torch.Tensor]],
    depth: torch.Tensor | Sequence[torch.Tensor],
    rel: torch.Tensor,
    groups: torch.Tensor,
    n_groups: int,
    intr: Intrinsics,
    priority: torch.Tensor | None,
    tolerance: float,
    footprint: int,
    far: float = float("inf"),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``reproject.splat`` on the CPU, given ``rel [N, 4, 4]``, each source camera in its target's frame.
    ``feats`` and ``depth`` come as ``splat`` takes them: tensors, or per source its planes where they lie
    (read in place, never stacked; planes that are not contiguous float32 are converted first)."""
    if load() is None:
        raise RuntimeError("the native splat kernel is not available")
    _check_cpu(rel, groups)
    h, w = intr.height, intr.width
    kept: list[torch.Tensor] = []  # converted planes, alive until the kernel has run
    stacked = isinstance(feats, torch.Tensor)
    if stacked and feats.dim() != 4:
        raise ValueError(f"feats must be [N, C, {h}, {w}], got {list(feats.shape)}")
    n = len(feats)
    per_source = [_planes(feats, h, w, kept)] if stacked else [_planes(t, h, w, kept) for t in feats]
    if not stacked and len({len(a) for a in per_source}) > 1:
        raise ValueError("every source needs the same feature channels")
    planes = [a for addresses in per_source for a in addresses]
    depths = _planes(depth, h, w, kept)
    if n == 0 or len(depths) != n:
        raise ValueError(f"depth must be one [{h}, {w}] plane per source: {len(depths)} for {n} sources")
    plane_at, depth_at = torch.tensor(planes, dtype=torch.int64), torch.tensor(depths, dtype=torch.int64)
    c = len(planes) // n
    return _run(depth_at, plane_at, c, rel, groups, n_groups, intr, priority, tolerance, footprint, far)


def _planes(tensors: torch.Tensor | Sequence[torch.Tensor], h: int, w: int, kept: list) -> list[int]:
    """The addresses of the ``[H, W]`` planes of ``tensors`` (each ``[..., H, W]``), in order. Called for
    every memory warped into every frame, so the common case (contiguous float32 on the CPU) takes only the
    cheapest tensor attributes (0.3 us a tensor against 4 for the plain checks)."""
    out = []
    step, size = h * w * 4, (h, w)
    for t in [tensors] if isinstance(tensors, torch.Tensor) else tensors:
        shape = t.shape
        if not t.is_cpu:
            _check_cpu(t)
        if shape[-2:] != size:
            raise ValueError(f"source planes must be [..., {h}, {w}] as the camera is, got {list(shape)}")
        if t.dtype is not torch.float32 or not t.is_contiguous():
            t = t.float().contiguous()
            kept.append(t)
        if len(shape) == 2:
            out.append(t.data_ptr())
        else:
            out.extend(range(t.data_ptr(), t.data_ptr() + step * (t.numel() // (h * w)), step))
    return out


def _check_cpu(*tensors: torch.Tensor) -> None:
    if any(t.device.type != "cpu" for t in tensors):
        raise ValueError("the native splat kernel runs on CPU tensors only (on CUDA, splat uses Triton)")


def _run(depths, planes, c, rel, groups, n_groups, intr, priority, tolerance, footprint, far):
    """The kernel, given the addresses of each source's depth ``[N]`` and feature planes ``[N * c]``."""
    h, w, n = intr.height, intr.width, len(depths)
    if rel.shape != (n, 4, 4) or groups.shape != (n,) or (priority is not None and priority.shape != (n,)):
        raise ValueError(f"{n} sources need rel [{n}, 4, 4], groups and priority [{n}]")
    if footprint not in (1, 2):
        raise ValueError(f"footprint must be 1 or 2, got {footprint}")
    rel, rays = rel.float().contiguous(), _planar_rays(intr)
    groups = groups.long().contiguous()
    prio = None if priority is None else priority.long().contiguous()
    out = torch.empty(n_groups, h, w, c)  # channels last, as the network takes it
    zbuf = torch.empty(n_groups, h, w)
    mask = torch.empty(n_groups, h, w, dtype=torch.bool)
    failed = load().dreamx_splat(
        depths.data_ptr(), rays.data_ptr(), rel.data_ptr(), intr.fx, intr.fy, intr.cx, intr.cy, MIN_Z, far,
        DEPTH_QUANTUM, FOOTPRINT_DEPTH_FACTOR,
        groups.data_ptr(), None if prio is None else prio.data_ptr(), n, h, w, planes.data_ptr(), c,
        float(tolerance), footprint, n_groups, torch.get_num_threads(),
        out.data_ptr(), zbuf.data_ptr(), mask.data_ptr(),
    )  # fmt: skip
    if failed == 2:
        raise ValueError(f"native splat kernel: a target has too many {h}x{w} sources for 32-bit keys")
    if failed == 3:
        raise ValueError(f"groups must lie in [0, {n_groups}), got {int(groups.min())}..{int(groups.max())}")
    if failed:
        raise MemoryError("native splat kernel: out of memory")
    return out.permute(0, 3, 1, 2), zbuf, mask
