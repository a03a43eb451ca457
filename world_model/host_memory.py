"""How this process's memory allocator treats freed blocks: one setting for every process that generates
frames (the server, the embedded learned backend, the benchmarks). Torch-free, so that a server of the
constant or oracle backend sets it without loading torch."""

from __future__ import annotations

import ctypes
import functools
import os
import sys

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_MMAP_THRESHOLD = 32 << 20  # the largest glibc allows: blocks below it come from the heap
HEAP_TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top kept for reuse, up to this much


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks of up to 32 MB for reuse instead of handing them back to
    the OS (returns whether it could; a no-op elsewhere than glibc).

    Generation allocates and frees megabytes to tens of megabytes per step (frames, network activations,
    warps); by default glibc returns such blocks to the OS and the next step takes every page back through
    a page fault that zeroes it (the timings are in ``docs/speed.md``). The cost is resident memory that
    stays at its peak. ``DREAMX_MALLOC_DEFAULT=1``: leave malloc alone."""
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
