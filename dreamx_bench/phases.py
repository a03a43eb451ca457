"""Where the learned backend's ``generate`` time goes, phase by phase (``dreamx-bench-model --phases``).

``timed_phases(model)`` times, for as long as it is open, the parts of every frame ``generate`` makes for
all its sessions at once: choosing the memories (retrieval), splatting them into the target cameras (warp),
the network, the new memory entries, each session's memory bookkeeping, and collision (where the cameras
may go, and the obstacles each new frame shows). What is left of the call (events, hint planes, the copies
to the caller's arrays, the Python around it) is ``other``. Python's cyclic garbage collector runs now and
then, inside whatever phase allocated last; its passes during the calls are ``garbage collection``, taken
out of the phases they interrupted (a full pass over a compiled model's objects takes a few hundred ms;
sessions whose memories are still filling up set one off now and then). It wraps these functions (of
``learned``, and this model's methods) while it is open and restores them after. On a GPU it waits for the
device at the start and end of every phase, so each phase gets its own kernels' time; the calls then run a
little slower than unprofiled ones, which overlap host work with the device's.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import world_model.model.learned as learned
from dreamx_bench.timing import synchronizer

# phase -> what it times: functions generate calls through world_model.model.learned, or the model's methods
PHASES = {
    "retrieval": ("retrieve_many",),
    "warp": ("warp_memories",),
    "network": ("_net",),
    "memory entries": ("entries_from_outputs",),
    "memory bookkeeping": ("add_many",),
    "collision": ("_reach", "obstacle_points_many"),
}
GC = "garbage collection"  # not a function: gc's passes during the calls, whatever phase they interrupted


@dataclass
class PhaseTimes:
    """Seconds spent in each phase, and in the ``generate`` calls around them, while timing was on."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys([*PHASES, GC], 0.0))
    total_s: float = 0.0
    frames: int = 0  # session-frames generated

    def per_frame_ms(self) -> dict[str, float]:
        """Milliseconds per session-frame of each phase, garbage collection, ``other`` (the rest of the
        calls) and ``total``."""
        if not self.frames:
            raise ValueError("no frames were generated while the phases were timed")
        ms = {name: 1e3 * s / self.frames for name, s in self.seconds.items()}
        total = 1e3 * self.total_s / self.frames
        return {**ms, "other": total - sum(ms.values()), "total": total}


@contextmanager
def timed_phases(model: learned.LearnedWorldModel) -> Iterator[PhaseTimes]:
    """Time ``model.generate``'s phases while open (see the module's docstring)."""
    times, sync = PhaseTimes(), synchronizer(model.device) or (lambda: None)
    clock = {"in_call": False, "gc_start": 0.0}

    def collected(stage: str, info: dict) -> None:  # gc.callbacks: around each collection
        if stage == "start":
            clock["gc_start"] = time.perf_counter()
        elif clock["in_call"]:
            times.seconds[GC] += time.perf_counter() - clock["gc_start"]

    def timed(phase: str, fn: Callable) -> Callable:
        def run(*args, **kwargs):
            sync()
            start, gc_before = time.perf_counter(), times.seconds[GC]
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                times.seconds[phase] += time.perf_counter() - start - (times.seconds[GC] - gc_before)

        return run

    def timed_generate(sessions, relative_poses, events):
        sync()
        start, clock["in_call"] = time.perf_counter(), True
        try:
            return generate(sessions, relative_poses, events)
        finally:
            sync()
            clock["in_call"] = False
            times.total_s += time.perf_counter() - start
            times.frames += len(sessions) * len(relative_poses[0]) if len(sessions) else 0

    generate, restore = model.generate, []
    for phase, names in PHASES.items():
        for name in names:
            owner, attr = (model, name) if name.startswith("_") else (learned, name)
            restore.append((owner, attr, owner.__dict__.get(attr)))
            setattr(owner, attr, timed(phase, getattr(owner, attr)))
    model.generate = timed_generate
    restore.append((model, "generate", None))
    gc.callbacks.append(collected)
    try:
        yield times
    finally:
        gc.callbacks.remove(collected)
        for owner, attr, was in reversed(restore):
            if was is None:
                delattr(owner, attr)  # an instance's wrapper: the class's method shows through again
            else:
                setattr(owner, attr, was)
