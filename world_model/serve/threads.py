"""Torch threads that follow the cores other processes leave free, while a server runs.

A backend running torch on the CPU splits its work among OpenMP threads that wait for each other at the
end of every parallel region. When another process keeps one of their cores busy, each region waits for
the thread that shares that core, which runs only in the slices the scheduler gives it: a batch then takes
many times longer than it would on one thread fewer. Sizing the threads once, at start, cannot see load
that comes and goes, so ``ThreadTuner`` looks again every ``interval_s``: from ``/proc/stat`` (the busy time
of the CPUs this process may run on) less ``/proc/self/stat`` (this process's own time, with its waited-for
children) it knows how many cores other processes kept busy, and it sets torch's thread count to the cores
left, ``threads_for``: never more than ``cap``, the count the backend started with (``OMP_NUM_THREADS``,
which the embedded launcher sets to the server's share of the cores; else torch's default), never fewer
than 1. Rising back needs the other load a quarter core below the point where it fell, so a load near half
a core does not switch the count at every look.

The tuner runs on the backend's own thread, between jobs (``BackendWorker``): torch's OpenMP thread count
belongs to the thread that sets it, so setting it from the server's I/O thread would change nothing. A look
costs two small file reads every few seconds; between looks, a clock read per job. The first look covers the
backend's start-up. It does nothing without ``/proc`` (not Linux), for a backend that does not report
running on the CPU (``BackendInfo.extra["device"] == "cpu"``: the learned model on a GPU, the oracle and the
constant backends keep what they have), or with a cap of 1. The server leaves it off when the backend was
given ``threads`` explicitly (that count is kept) or with ``ServerConfig.adapt_threads=False``.

The thread count changes the learned model's frames (its sums are split differently, and the difference
grows over a rollout: 1 against 2 threads, about 1% of pixels over 8 steps, by up to 40 levels), so with
the tuner on, the same seed's frames depend on the machine's load; the server leaves it off unless asked
(``adapt_threads=True``). In a thread-mode (in-process) server "own" time is the
whole process's, the env's included.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

log = logging.getLogger("world_model.serve")

INTERVAL_S = 3.0  # between looks at the load
RAISE_MARGIN = 0.25  # cores: rising back needs the other load this far below where it fell
MIN_TICKS_PER_CPU = 10  # a look over less than this (0.1 s at 100 ticks/s) waits for the next


@dataclass(frozen=True)
class CpuTimes:
    """Clock ticks since boot: of the CPUs looked at, ``busy`` (any process) and ``total`` (busy or idle);
    ``own``: this process's user and system time, with its waited-for children's."""

    busy: int
    total: int
    own: int


def parse_cpu_times(proc_stat: str, self_stat: str, cpus: Collection[int]) -> CpuTimes:
    """``CpuTimes`` from the text of ``/proc/stat`` (its ``cpuN`` lines for N in ``cpus``) and of
    ``/proc/self/stat``. Busy is user, nice, system, irq, softirq and steal (a hypervisor's steal is a core
    taken from us too); idle and iowait are free."""
    busy = total = 0
    for line in proc_stat.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in rest.split()[:8])
        used = user + nice + system + irq + softirq + steal
        busy += used
        total += used + idle + iowait
    fields = self_stat[self_stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 is fields[0]
    own = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    return CpuTimes(busy, total, own)


def usable_cpus() -> frozenset[int]:
    """The CPUs this process may run on (its affinity mask, which containers and ``taskset`` set)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def read_cpu_times(cpus: Collection[int]) -> CpuTimes | None:
    """The machine's and this process's CPU times now; None where there is no ``/proc`` to read them."""
    try:
        with open("/proc/stat") as f:
            proc_stat = f.read()
        with open("/proc/self/stat") as f:
            self_stat = f.read()
        return parse_cpu_times(proc_stat, self_stat, cpus)
    except (OSError, ValueError, IndexError):  # no /proc, or not in the layout Linux gives
        return None


def others_busy(before: CpuTimes, after: CpuTimes, n_cpus: int) -> float:
    """Cores that other processes kept busy on average between two looks (at least 0)."""
    total = after.total - before.total
    if total <= 0:
        return 0.0
    other = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, other) / total * n_cpus


def threads_for(cap: int, usable: int, others: float) -> int:
    """The cores left by ``others`` busy ones (rounded half up) of ``usable``, between 1 and ``cap``."""
    return max(1, min(cap, usable - math.floor(others + 0.5)))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


class ThreadTuner:
    """Made on the backend's thread before the backend is built (its start-up is the first interval
    measured); ``start(device)`` once it is built; then ``tick()`` before each job. The defaults read
    ``/proc`` and set torch's threads; tests give their own ``read``, ``clock`` and thread functions."""

    def __init__(
        self,
        cpus: Collection[int] | None = None,
        *,
        interval_s: float = INTERVAL_S,
        read: Callable[[Collection[int]], CpuTimes | None] = read_cpu_times,
        get_threads: Callable[[], int] = _torch_threads,
        set_threads: Callable[[int], None] = _set_torch_threads,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cpus = usable_cpus() if cpus is None else frozenset(cpus)
        self.interval_s = interval_s
        self._read, self._get, self._set, self._clock = read, get_threads, set_threads, clock
        self._last = read(self.cpus)
        self.cap = self.threads = 0
        self.others = 0.0  # cores other processes kept busy, as of the last look
        self.active = False
        self._next = 0.0

    def start(self, device: str | None) -> bool:
        """Adapt from now on if the backend runs on the CPU (``device`` "cpu"), ``/proc`` was readable and
        there is more than one thread to choose from; returns whether it will."""
        if device != "cpu" or self._last is None or len(self.cpus) < 2:
            return False
        self.cap = self.threads = self._get()
        self.active = self.cap > 1
        self._next = self._clock()  # the first job looks at once
        return self.active

    def tick(self) -> int:
        """Between jobs: every ``interval_s``, set the thread count for the load since the last look.
        Returns the thread count now."""
        if not self.active:
            return self.threads
        now = self._clock()
        if now < self._next:
            return self.threads
        self._next = now + self.interval_s
        times = self._read(self.cpus)
        if times is None or times.total - self._last.total < MIN_TICKS_PER_CPU * len(self.cpus):
            return self.threads  # too short a look to tell: the next one covers this time too
        self.others = others_busy(self._last, times, len(self.cpus))
        self._last = times
        want = threads_for(self.cap, len(self.cpus), self.others)
        if want > self.threads:
            want = max(self.threads, threads_for(self.cap, len(self.cpus), self.others + RAISE_MARGIN))
        if want != self.threads:
            log.info(
                "torch threads %d -> %d: other processes kept %.1f of the %d cores busy (at most %d)",
                self.threads,
                want,
                self.others,
                len(self.cpus),
                self.cap,
            )
            self._set(want)
            self.threads = want
        return self.threads
