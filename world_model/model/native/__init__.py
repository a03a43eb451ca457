"""The CPU kernels written in C (``splat.c``: the memory warp; ``coverage.c``: footprint coverage and the
greedy choice of memories for retrieval; ``collision.c``: the camera's obstacles and moves), built into one
library with the system C compiler the first time they are needed (about a second) and cached under
``$XDG_CACHE_HOME/dreamx_env`` (default ``~/.cache``), keyed by their sources, so later processes just load
it. They are called through ctypes; the parallel ones split their work among ``torch.get_num_threads()``
OpenMP threads: the library links libgomp, which torch's CPU build has already loaded, so both share one
thread pool (a pool of its own fought torch's spinning workers: twice the time).
Where no compiler works, :func:`load` warns once and returns ``None`` and callers keep to their torch or
numpy paths. Every kernel rounds as its reference does (no ``-ffast-math``, ``-ffp-contract=off``), so the
frames are the same bit for bit either way.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

SOURCES = tuple(sorted(Path(__file__).parent.glob("*.c")))
FLAGS = ("-O3", "-std=c11", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared")
OPENMP = "-fopenmp"  # links libgomp, the OpenMP runtime torch's CPU build already loaded: one thread pool
ENV_DISABLE = "DREAMX_NO_NATIVE"  # set to 1: never build or use the kernels (torch paths only)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dreamx_env"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(cc: str, flags: tuple[str, ...]) -> Path:
    """The compiled library for these sources, compiler, flags and machine (built once, then reused)."""
    texts = "|".join(source.read_text() for source in SOURCES)
    tag = f"{texts}|{cc}|{flags}|{platform.machine()}|{sys.platform}"
    lib = cache_dir() / f"kernels-{hashlib.sha256(tag.encode()).hexdigest()[:16]}.so"
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:  # build aside, then move into place
            built = Path(tmp) / lib.name
            command = [cc, *flags, *map(str, SOURCES), "-o", str(built), "-lm"]
            subprocess.run(command, check=True, capture_output=True)
            os.replace(built, lib)
    return lib


@functools.lru_cache(maxsize=1)
def load() -> ctypes.CDLL | None:
    """The kernel library, or ``None`` (with one warning) where it cannot be built or is disabled."""
    if os.environ.get(ENV_DISABLE, "") not in ("", "0"):
        return None
    cc = _compiler()
    try:
        if cc is None:
            raise RuntimeError("no C compiler found (set CC)")
        try:
            lib = ctypes.CDLL(str(_build(cc, (*FLAGS, OPENMP))))
        except (OSError, subprocess.CalledProcessError):  # no OpenMP: the same kernels on one thread
            lib = ctypes.CDLL(str(_build(cc, FLAGS)))
    except subprocess.CalledProcessError as err:
        warnings.warn(
            f"native kernels did not build, using torch: {err.stderr.decode()[-500:]}", stacklevel=2
        )
        return None
    except (OSError, RuntimeError) as err:
        warnings.warn(f"native kernels unavailable, using torch: {err}", stacklevel=2)
        return None
    p, i64, f32, f64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_double, ctypes.c_int
    lib.dreamx_splat.argtypes = [
        *(p, p, p, f32, f32, f32, f32, f32, f32),  # depth, rays, rel, camera, MIN_Z, far
        *(f64, f32),  # DEPTH_QUANTUM, FOOTPRINT_DEPTH_FACTOR
        *(p, p, i64, i64, i64, p, i64, f64, i32, i64, i32),  # groups ... threads
        *(p, p, p),  # out, zbuf, mask
    ]
    lib.dreamx_splat.restype = ctypes.c_int
    lib.dreamx_coverage.argtypes = [
        *(p, i32, p, i64, i64, i64),  # points, shared, poses, cameras, footprints per camera, their points
        *(f64, f64, f64, f64, i64, i64, f64, i64),  # camera, image size, least z, cells per side
        *(i32, p, p),  # threads, hits, seen
    ]
    lib.dreamx_coverage.restype = None
    lib.dreamx_select.argtypes = [
        *(p, p, p, p),  # hits, seen, valid, ages
        *(i64, i64, i64, i64, f64, p),  # cameras, candidates, cells, k, staleness, chosen
    ]
    lib.dreamx_select.restype = None
    lib.dreamx_obstacles.argtypes = [
        *(p, p, p, p, p),  # depth, labels, poses, is_object, rays
        *(i64, i64, f64, f64, p, p),  # frames, pixels per frame, height band, out, counts
    ]
    lib.dreamx_obstacles.restype = i64
    lib.dreamx_slide.argtypes = [
        *(p, p, p, p),  # starts, targets, points, offsets
        *(i64, f64, i64, p),  # moves, radius, points that make an obstacle, out
    ]
    lib.dreamx_slide.restype = i32
    return lib


def available() -> bool:
    return load() is not None
