"""Triton kernel for the z-buffer of ``reproject.splat`` (used on CUDA; ``TRITON_INTERPRET=1`` runs it on
CPU for tests). One program handles ``BLOCK`` source pixels: unproject with depth, move into the target
camera, project, and ``atomic_min`` a packed key into each pixel the point lands on (its own, or the 2x2
around it with the three that are not its own slightly behind, as ``zbuffer_torch`` does). The priority pass
(``splat(priority=...)``) is a second launch that keeps only points near the first pass's nearest depth.
``reproject.zbuffer_torch`` is the reference it is tested against.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from world_model.geometry import Intrinsics
from world_model.model.splat_rules import DEPTH_QUANTUM, FOOTPRINT_DEPTH_FACTOR, KEY_SHIFT, MIN_Z

BLOCK = 256


@triton.jit
def _land(
    best_ptr, near_ptr, base, u, v, zk, rank, pix, ok, W, H, quantum, tolerance, PRIORITY: tl.constexpr
):
    inside = ok & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    target = base + v * W + u
    if PRIORITY:
        near = tl.load(near_ptr + target, mask=inside, other=0)
        znear = (near >> 32).to(tl.float64) * quantum
        inside = inside & (zk.to(tl.float64) <= znear * (1 + tolerance) + quantum)
        key = (rank << 32) | pix
    else:
        key = ((zk / quantum + 0.5).to(tl.int64) << 32) | pix
    tl.atomic_min(best_ptr + target, key, mask=inside)


@triton.jit
def _zbuffer_kernel(
    depth_ptr,
    rel_ptr,
    groups_ptr,
    prio_ptr,
    near_ptr,
    best_ptr,
    total,
    H,
    W,
    fx,
    fy,
    cx,
    cy,
    quantum,
    tolerance,
    min_z,
    behind,
    FOOTPRINT: tl.constexpr,
    PRIORITY: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    pix = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    m = pix < total
    hw = H * W
    n = pix // hw
    p = pix % hw
    d = tl.load(depth_ptr + pix, mask=m, other=0.0)
    ok = m & (d > 0) & (d < float("inf"))
    d = tl.where(ok, d, 1.0)
    x = ((p % W).to(tl.float32) + 0.5 - cx) / fx * d
    y = ((p // W).to(tl.float32) + 0.5 - cy) / fy * d
    r = rel_ptr + n * 16
    X = (
        tl.load(r + 0, mask=m) * x
        + tl.load(r + 1, mask=m) * y
        + tl.load(r + 2, mask=m) * d
        + tl.load(r + 3, mask=m)
    )
    Y = (
        tl.load(r + 4, mask=m) * x
        + tl.load(r + 5, mask=m) * y
        + tl.load(r + 6, mask=m) * d
        + tl.load(r + 7, mask=m)
    )
    Z = (
        tl.load(r + 8, mask=m) * x
        + tl.load(r + 9, mask=m) * y
        + tl.load(r + 10, mask=m) * d
        + tl.load(r + 11, mask=m)
    )
    ok = ok & (Z > min_z)
    zs = tl.maximum(Z, 1e-6)
    uf = fx * X / zs + cx
    vf = fy * Y / zs + cy
    base = tl.load(groups_ptr + n, mask=m, other=0) * hw
    rank = tl.load(prio_ptr + n, mask=m, other=0)
    u = tl.floor(uf).to(tl.int64)
    v = tl.floor(vf).to(tl.int64)
    if FOOTPRINT == 2:  # the 2x2 pixels around the point: its own at its depth, the other three behind
        ub = tl.floor(uf - 0.5).to(tl.int64)
        vb = tl.floor(vf - 0.5).to(tl.int64)
        zb = Z * behind
        z00 = tl.where((ub == u) & (vb == v), Z, zb)
        z01 = tl.where((ub == u) & (vb + 1 == v), Z, zb)
        z10 = tl.where((ub + 1 == u) & (vb == v), Z, zb)
        z11 = tl.where((ub + 1 == u) & (vb + 1 == v), Z, zb)
        _land(best_ptr, near_ptr, base, ub, vb, z00, rank, pix, ok, W, H, quantum, tolerance, PRIORITY)
        _land(best_ptr, near_ptr, base, ub, vb + 1, z01, rank, pix, ok, W, H, quantum, tolerance, PRIORITY)
        _land(best_ptr, near_ptr, base, ub + 1, vb, z10, rank, pix, ok, W, H, quantum, tolerance, PRIORITY)
        _land(
            best_ptr, near_ptr, base, ub + 1, vb + 1, z11, rank, pix, ok, W, H, quantum, tolerance, PRIORITY
        )
    else:
        _land(best_ptr, near_ptr, base, u, v, Z, rank, pix, ok, W, H, quantum, tolerance, PRIORITY)


def zbuffer_triton(
    depth: torch.Tensor,
    rel: torch.Tensor,
    groups: torch.Tensor,
    n_groups: int,
    intr: Intrinsics,
    priority: torch.Tensor | None,
    tolerance: float,
    footprint: int,
) -> torch.Tensor:
    """Same contract as ``reproject.zbuffer_torch`` (first return value)."""
    n, h, w = depth.shape
    dev = depth.device
    depth = depth.float().contiguous()
    rel = rel.float().contiguous()
    groups = groups.to(dev, torch.int64).contiguous()
    empty = torch.iinfo(torch.int64).max
    best = torch.full((n_groups * h * w,), empty, dtype=torch.int64, device=dev)
    if priority is None:  # made on the device: a blocking copy from the host waits for the queued kernels
        prio = torch.zeros(n, dtype=torch.int64, device=dev)
    else:
        prio = priority.to(dev, torch.int64).contiguous()
    grid = (triton.cdiv(n * h * w, BLOCK),)
    common = (
        n * h * w,
        h,
        w,
        intr.fx,
        intr.fy,
        intr.cx,
        intr.cy,
        DEPTH_QUANTUM,
        tolerance,
        MIN_Z,
        FOOTPRINT_DEPTH_FACTOR,
    )
    # every multiply and add rounded on its own, as the torch reference and the C kernel do (no fused
    # multiply-adds): a point lands on the same pixel on the GPU as on the CPU, so both keep the same winner
    options = {"FOOTPRINT": footprint, "BLOCK_SIZE": BLOCK, "enable_fp_fusion": False}
    _zbuffer_kernel[grid](depth, rel, groups, prio, best, best, *common, PRIORITY=False, **options)
    if priority is None:
        return best
    ranked = torch.full_like(best, empty)
    _zbuffer_kernel[grid](depth, rel, groups, prio, best, ranked, *common, PRIORITY=True, **options)
    return ranked


assert KEY_SHIFT == 32  # the kernel packs keys with a literal 32-bit shift
