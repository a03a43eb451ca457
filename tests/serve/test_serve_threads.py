"""The server's torch threads follow the cores other processes leave free (``world_model.serve.threads``):
the count from two /proc snapshots, the tuner's looks on a fake clock, and the backend worker applying it on
its own thread. No timing: every snapshot and clock reading here is made up."""

import logging
import os
import threading

from world_model.backend import BackendInfo
from world_model.constant import ConstantWorldModel
from world_model.serve.server import ServerConfig, SimulatorServer
from world_model.serve.threads import (
    CpuTimes,
    ThreadTuner,
    others_busy,
    parse_cpu_times,
    threads_for,
)
from world_model.serve.worker import BackendWorker, Job

# /proc/self/stat after "pid (comm) ": utime, stime, cutime, cstime are fields[11:15]
SELF_STAT = "42 (python (x)) R " + " ".join(["0"] * 10) + " {} {} {} {} 20 0 3"


def proc_stat(*cpus: tuple[int, int]) -> str:
    """/proc/stat text with one line per CPU of (busy, idle) ticks (busy as user time)."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0" for i, (busy, idle) in enumerate(cpus)]
    return "\n".join([*lines, "intr 1 2 3", "ctxt 5"]) + "\n"


def test_cpu_times_come_from_the_cpus_asked_and_this_process_with_its_children():
    text = "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 1 2 3 40 5 6 7 8 0 0\ncpu1 100 0 0 100 0 0 0 0 0 0\nintr 7\n"
    times = parse_cpu_times(text, SELF_STAT.format(10, 20, 3, 4), {0})
    assert times == CpuTimes(busy=1 + 2 + 3 + 6 + 7 + 8, total=1 + 2 + 3 + 40 + 5 + 6 + 7 + 8, own=37)
    both = parse_cpu_times(text, SELF_STAT.format(0, 0, 0, 0), {0, 1})
    assert both.busy == 27 + 100 and both.total == 72 + 200


def test_an_idle_machine_keeps_the_cap_and_a_core_busy_elsewhere_leaves_one_thread():
    before = CpuTimes(busy=1000, total=5000, own=0)
    idle = CpuTimes(busy=1010, total=5400, own=0)  # 400 ticks on 2 CPUs: 200 each, 10 busy in all
    assert others_busy(before, idle, 2) == 0.05
    assert threads_for(2, 2, others_busy(before, idle, 2)) == 2

    one_core = CpuTimes(busy=1200, total=5400, own=0)  # 200 of 400 ticks busy: one core's worth
    assert others_busy(before, one_core, 2) == 1.0
    assert threads_for(2, 2, 1.0) == 1
    assert threads_for(4, 4, 1.0) == 3 and threads_for(2, 4, 1.0) == 2  # the cap holds
    assert threads_for(2, 2, 2.0) == 1  # never fewer than one


def test_this_process_s_own_time_is_not_counted_as_others():
    before = CpuTimes(busy=1000, total=5000, own=100)
    ours = CpuTimes(busy=1400, total=5400, own=500)  # both cores busy, all of it this process's
    assert others_busy(before, ours, 2) == 0.0
    assert threads_for(2, 2, others_busy(before, ours, 2)) == 2
    reaped = CpuTimes(busy=1100, total=5400, own=400)  # a child's time counted at once when reaped
    assert others_busy(before, reaped, 2) == 0.0


class FakeProc:
    """Snapshots advanced by hand: each ``run(seconds, others, own)`` adds that many seconds of 2 CPUs at
    100 ticks/s, ``others`` cores busy with other processes and ``own`` with this one."""

    def __init__(self) -> None:
        self.times = CpuTimes(busy=0, total=0, own=0)
        self.now = 0.0
        self.reads = 0

    def run(self, seconds: float, others: float, own: float = 0.0) -> None:
        t = self.times
        ticks = round(seconds * 100)
        self.times = CpuTimes(
            t.busy + round((others + own) * ticks), t.total + 2 * ticks, t.own + round(own * ticks)
        )
        self.now += seconds

    def read(self, cpus):
        self.reads += 1
        return self.times


def tuner(proc: FakeProc, cap: int = 2, set_log=None, **kwargs) -> ThreadTuner:
    calls = [] if set_log is None else set_log
    return ThreadTuner(
        {0, 1},
        read=proc.read,
        get_threads=lambda: cap,
        set_threads=calls.append,
        clock=lambda: proc.now,
        **kwargs,
    )


def test_the_tuner_looks_every_interval_and_sets_threads_only_when_the_count_changes(caplog):
    proc, calls = FakeProc(), []
    t = tuner(proc, set_log=calls, interval_s=3.0)
    proc.run(5.0, others=1.0, own=1.0)  # the backend's start-up, another process on one core
    assert t.start("cpu") and t.cap == 2
    with caplog.at_level(logging.INFO, logger="world_model.serve"):
        assert t.tick() == 1  # the first job looks at once
    assert calls == [1] and "torch threads 2 -> 1" in caplog.text
    reads = proc.reads
    proc.run(1.0, others=0.0)
    assert t.tick() == 1 and proc.reads == reads  # not due yet: no file read, nothing set
    proc.run(2.0, others=0.0, own=1.0)
    assert t.tick() == 2 and calls == [1, 2]  # the other load went: back to the cap
    proc.run(3.0, others=0.1, own=1.0)
    assert t.tick() == 2 and calls == [1, 2]  # unchanged: not set again


def test_rising_back_needs_the_load_clearly_below_half_a_core():
    proc, calls = FakeProc(), []
    t = tuner(proc, set_log=calls)
    proc.run(3.0, others=0.5)
    t.start("cpu")
    assert t.tick() == 1  # half a core: down
    proc.run(3.0, others=0.4)
    assert t.tick() == 1  # 0.4: would not go down, but does not rise either
    proc.run(3.0, others=0.2)
    assert t.tick() == 2 and calls == [1, 2]


def test_a_look_too_short_to_tell_waits_for_the_next():
    proc, calls = FakeProc(), []
    t = tuner(proc, set_log=calls, interval_s=0.01)
    t.start("cpu")
    proc.run(0.02, others=2.0)  # 4 ticks: too few
    assert t.tick() == 2 and calls == []
    proc.run(1.0, others=2.0)  # counted from the same start
    assert t.tick() == 1 and calls == [1]


def test_the_tuner_stays_off_off_the_cpu_without_proc_and_with_one_thread():
    proc = FakeProc()
    assert not tuner(proc).start("cuda:0")
    assert not tuner(proc).start(None)  # a backend that does not say (oracle, constant)
    assert not tuner(proc, cap=1).start("cpu")
    calls = []
    blind = ThreadTuner({0, 1}, read=lambda cpus: None, get_threads=lambda: 2, set_threads=calls.append)
    assert not blind.start("cpu") and blind.tick() == 0 and calls == []
    assert not ThreadTuner({0}, read=proc.read, get_threads=lambda: 2).start("cpu")  # one usable CPU


class CpuBackend(ConstantWorldModel):
    """The constant backend, saying it runs on the CPU as the learned model does there."""

    def info(self) -> BackendInfo:
        info = super().info()
        info.extra["device"] = "cpu"
        return info


def test_the_backend_worker_sets_the_threads_on_its_own_thread_between_jobs():
    proc, applied = FakeProc(), []

    def make() -> ThreadTuner:
        return ThreadTuner(
            {0, 1},
            read=proc.read,
            get_threads=lambda: 2,
            set_threads=lambda n: applied.append((n, threading.current_thread().name)),
            clock=lambda: proc.now,
        )

    wake_r, wake_w = os.pipe()
    worker = BackendWorker(CpuBackend, max_batch=4, wake_fd=wake_w, threads=make)
    try:
        worker.start()
        assert worker.ready.wait(10) and worker.start_error is None and worker.tuner is not None
        proc.run(3.0, others=1.0)  # since the tuner's first snapshot, before the backend was built
        worker.submit(Job(lambda: None, lambda r, e: None))
        assert worker.done.get(timeout=10)[2] is None
        assert applied == [(1, "dreamx-backend")]
    finally:
        worker.stop()
        os.close(wake_r)
        os.close(wake_w)

    plain = BackendWorker(ConstantWorldModel, max_batch=4, wake_fd=-1, threads=make)
    plain.start()
    plain.ready.wait(10)
    assert plain.tuner is None  # the constant backend does not run on torch threads
    plain.stop()


def test_the_server_adapts_only_when_asked_and_not_given_a_thread_count():
    def tuner_of(**overrides):
        return SimulatorServer(ServerConfig(**overrides), backend=ConstantWorldModel()).thread_tuner()

    assert tuner_of() is None  # off by default: the thread count would make frames depend on the load
    assert tuner_of(adapt_threads=True) is ThreadTuner
    assert tuner_of(adapt_threads=True, backend_kwargs={"threads": 2}) is None
