"""Where the world model's tensors live, and in what precision the network runs there: one rule for
training, inference and benchmarks."""

from __future__ import annotations

import atexit
import functools
import gc
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from world_model.model.native import cache_dir

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


CPUINFO = Path("/proc/cpuinfo")


@functools.lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """The CPU's instruction sets as Linux lists them in ``/proc/cpuinfo`` (x86: ``flags``, e.g. ``avx2``,
    ``avx512_bf16``, ``amx_bf16``; Arm: ``Features``, e.g. ``bf16``); empty where there is no such file."""
    if not CPUINFO.is_file():
        return frozenset()
    words: set[str] = set()
    for line in CPUINFO.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            words.update(value.split())
    return frozenset(words)


NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX512_BF16, x86 AMX, Arm BF16


def resolve_precision(name: str, device: torch.device) -> str:
    """What the network runs in on ``device`` for the setting ``name`` (``auto``, ``fp32`` or ``bf16``):
    ``auto`` -> bf16 where bfloat16 is native and pays: a CUDA GPU that computes in it, or a CPU with
    AVX512_BF16 or AMX on x86, BF16 on Arm (``cpu_features``) where bf16 convolutions measured faster than
    fp32 (``cpu_bf16_faster``: native bf16 instructions alone do not make them faster on every CPU); fp32
    elsewhere, for without them torch emulates bf16 at several times fp32's cost. An explicit ``bf16`` on a
    CPU without it warns once, and runs."""
    native = (
        torch.cuda.is_bf16_supported(including_emulation=False)
        if device.type == "cuda"
        else bool(cpu_features() & NATIVE_BF16)
    )
    if name == "auto":
        return "bf16" if native and (device.type == "cuda" or cpu_bf16_faster()) else "fp32"
    if name == "bf16" and device.type == "cpu" and not native:
        _warn_emulated_bf16()
    return name


BF16_MARGIN = 0.9  # bf16 is taken where its passes take at most this share of fp32's (fp32 is exact)
PROBE_FILE = "cpu_precision.json"


@functools.lru_cache(maxsize=1)
def cpu_bf16_faster() -> bool:
    """Whether convolutions like the network's run faster in bf16 (autocast, channels-last) than in fp32 on
    this CPU, at this thread count: timed once (about half a second) and kept in the cache folder
    (``native.cache_dir()``), keyed by the CPU's model and instruction sets, torch's version and the
    threads, so every later process, and so every run of one machine, makes the same choice."""
    native = sorted(cpu_features() & NATIVE_BF16)
    key = f"{cpu_model()}|{native}|{torch.__version__}|{torch.get_num_threads()}"
    path = cache_dir() / PROBE_FILE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        fp32, bf16 = _probe_seconds()
        known[key] = {"fp32_s": fp32, "bf16_s": bf16, "bf16": bf16 <= BF16_MARGIN * fp32}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=1))
            tmp.replace(path)
        except OSError:  # a read-only home: measured again by the next process
            pass
    return bool(known[key]["bf16"])


def cpu_model() -> str:
    """The ``model name`` line of ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    if CPUINFO.is_file():
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine()


def _probe_seconds(rounds: int = 7) -> tuple[float, float]:
    """Median seconds of a pass through the network's kind of encoder (3x3 convolutions, GroupNorm, SiLU;
    widths 32 to 128 from 64x64 down to 8x8; 8 frames), fp32 then bf16 under autocast, interleaved."""
    layers: list[nn.Module] = []
    widths = ((18, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 96, 2), (96, 96, 1), (96, 128, 2))
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        torch.manual_seed(0)
        for cin, cout, stride in (*widths, (128, 128, 1)):
            layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU()]
        x = torch.randn(8, 18, 64, 64).to(memory_format=torch.channels_last)
    net = nn.Sequential(*layers).eval().to(memory_format=torch.channels_last)
    times: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode():
        for r in range(rounds + 2):
            for bf16 in (False, True):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    net(x.to(torch.bfloat16) if bf16 else x)
                if r >= 2:  # two rounds of warm-up
                    times[bf16].append(time.perf_counter() - start)
    return statistics.median(times[False]), statistics.median(times[True])


@functools.lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    warnings.warn(
        "precision='bf16' on a CPU without native bfloat16 (x86: avx512_bf16 or amx_bf16; Arm: bf16; none "
        "in /proc/cpuinfo): torch emulates it, typically several times slower than fp32 here. "
        "precision='auto' (the default) picks fp32 on this CPU.",
        stacklevel=4,  # the caller that built the model
    )


def triton_available() -> bool:
    """Whether Triton can be imported: the condition (beside a CUDA device) for the Triton kernels of the
    memory warp and the network's normalisation."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def freeze_live_objects() -> bool:
    """Collect the garbage, then exempt every object alive now from Python's cyclic collector (``gc.freeze``)
    for the rest of the process; returns whether it did.

    A loaded and compiled network leaves about half a million long-lived Python objects (FX graphs, sympy
    expressions, kernel wrappers), and the collector walks them all on each full pass: 244-272 ms, about
    every 40 batch-256 calls on the CPU, since sessions' memories keep handing it objects that outlive two
    collections. Frozen, a full pass walks only what came after. Call it once the network has run a new
    batch shape (that is when compiling and graph capture make new objects). ``DREAMX_GC_DEFAULT=1``: leave
    the collector alone."""
    if os.environ.get("DREAMX_GC_DEFAULT", "") not in ("", "0"):
        return False
    gc.collect()  # what is garbage now would otherwise stay frozen for good
    gc.freeze()
    _unfreeze_at_exit()
    return True


@functools.lru_cache(maxsize=1)
def _unfreeze_at_exit() -> None:
    """Hand the frozen objects back to the collector at exit, so its last pass frees them (extension modules
    report objects still alive then as leaks)."""
    atexit.register(gc.unfreeze)
