"""Wall-clock timing of repeated calls: one source for every dreamx-bench figure (and dreamx-bench-model)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

# frames each session generates before the learned backend is timed (alone and behind the server): enough
# to fill its memory (48 keyframes), so the figures are those of a long episode, not of fresh sessions
WARMUP_FRAMES = 160


def add_warmup_argument(parser: argparse.ArgumentParser, per: str) -> None:
    """The ``--warmup-frames`` option of every benchmark CLI; ``per``: what warms up ("session", "env")."""
    parser.add_argument(
        "--warmup-frames",
        type=int,
        default=WARMUP_FRAMES,
        help=f"untimed frames per {per} before the learned backend is timed: its memory fills as in a long "
        f"episode (default: {WARMUP_FRAMES})",
    )


def synchronizer(device: torch.device | str) -> Callable[[], None] | None:
    """What to call before reading the clock: CUDA kernels run asynchronously, CPU ones do not."""
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else None


@dataclass
class CallTimes:
    """Seconds of each timed call (after one untimed warm-up call)."""

    seconds: np.ndarray

    @property
    def calls(self) -> int:
        return len(self.seconds)

    @property
    def elapsed_s(self) -> float:
        return float(self.seconds.sum())

    def summary(self) -> dict[str, float]:
        """Calls, total seconds and milliseconds per call (mean, median, 95th percentile)."""
        ms = 1000 * self.seconds
        return {
            "calls": self.calls,
            "elapsed_s": self.elapsed_s,
            "ms_per_call": float(ms.mean()),
            "median_ms": float(np.median(ms)),
            "p95_ms": float(np.percentile(ms, 95)),
        }


def time_calls(
    call: Callable[[], object], seconds: float, sync: Callable[[], None] | None = None
) -> CallTimes:
    """Call ``call()`` once to warm up, then again and again for ``seconds`` (at least once), timing each
    call on its own; ``sync`` (e.g. ``torch.cuda.synchronize``) runs before every clock read."""
    sync = sync or (lambda: None)
    call()
    sync()
    times = []
    started = time.perf_counter()
    while not times or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - t0)
    return CallTimes(np.asarray(times))
