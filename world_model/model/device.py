"""Where the world model's tensors live: one rule for training, inference and benchmarks."""

from __future__ import annotations

import ctypes
import functools
import os
import sys

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else the CPU; ``cpu``; ``cuda`` (or ``cuda:N``), which must
    be available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"device must be one of {list(DEVICES)} (or cuda:N), got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but torch sees no CUDA GPU; use device=cpu or auto")
    return torch.device(name)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_MMAP_THRESHOLD = 32 << 20  # the largest glibc allows: blocks below it come from the heap
HEAP_TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top kept for reuse, up to this much


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks of up to 32 MB for reuse instead of handing them back to
    the OS (returns whether it could; a no-op elsewhere than glibc).

    CPU generation allocates and frees tens of MB of tensors per step (network activations, warps, the
    input); by default glibc returns such blocks to the OS and the next step takes every page back through
    a page fault that zeroes it: measured 1.31-1.35 -> 1.11-1.16 ms a frame at batch 32 (learned_fast, bf16,
    compiled). The cost is resident memory that stays at its peak. ``DREAMX_MALLOC_DEFAULT=1``: leave
    malloc alone."""
    if os.environ.get("DREAMX_MALLOC_DEFAULT", "") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD)
            and libc.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):  # not glibc (musl, ...): its allocator as it is
        return False
