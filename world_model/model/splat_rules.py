"""What every implementation of the z-buffered splat shares (the torch reference in ``reproject``, the C
kernel in ``splat_native``, the Triton kernel in ``splat_triton``): how a depth becomes a z-buffer key, how
near a point may land, how far behind its own pixel a footprint write sits, and the camera's pixel rays.
Kept in one place so the three give the same frames, and so the kernels need not import the module that
chooses between them."""

from __future__ import annotations

import functools

import torch

from world_model.geometry import Intrinsics, pixel_rays

DEPTH_QUANTUM = 1e-4  # metres: z-buffer keys are depths in this unit, then the source point index
KEY_SHIFT = 32
MIN_Z = 1e-3  # metres in front of the target camera for a point to land
FOOTPRINT_DEPTH_FACTOR = 1.01  # footprint writes sit this much behind the point's own pixel


@functools.lru_cache(maxsize=8)
def camera_rays(intr: Intrinsics, device: torch.device | str = "cpu") -> torch.Tensor:
    """Camera-frame rays ``[H, W, 3]`` with z = 1 through every pixel centre (made once per camera and
    device; do not modify)."""
    return torch.as_tensor(pixel_rays(intr), dtype=torch.float32, device=device)
