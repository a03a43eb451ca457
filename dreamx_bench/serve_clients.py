"""Many independent clients on one server: what the server's batching policy (``max_wait_ms``,
``active_window_ms``; see ``batching``) does for them.

Each client is its own connection with one session, as each process of an SB3 ``SubprocVecEnv`` or each
player is. It steps in lock step with its own replies, after ``think_ms`` of work of its own drawn
uniformly from [0, think_ms] each step (a policy's forward pass, a viewer's drawing), so the clients drift
apart. The server batches whatever steps it holds, by its policy; measured: env-steps/s over all clients,
each step's round trip (median, p95) and the server's batch sizes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from dreamx_bench.timing import WARMUP_FRAMES


def turning_poses(sessions: int, frames: int) -> np.ndarray:
    """A STEP's relative poses ``[sessions, 1, frames, 4, 4]`` (horizon 1): every camera turning 3 degrees a
    frame."""
    rel = np.tile(np.eye(4), (sessions, 1, frames, 1, 1))
    for k in range(frames):
        c, s = np.cos(np.radians(3 * (k + 1))), np.sin(np.radians(3 * (k + 1)))
        rel[:, 0, k, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    return rel


def bench_clients(
    backend: str,
    kwargs: dict[str, Any],
    clients: int,
    seconds: float,
    frames: int,
    server: dict[str, Any],
    think_ms: float = 0.0,
    warmup_frames: int = WARMUP_FRAMES,
) -> dict[str, Any]:
    """``clients`` client threads, one session each, on one embedded server (subprocess) with the
    ``server`` options (``ServerConfig`` fields: ``max_wait_ms``, ``active_window_ms``, ...)."""
    from dreamx_env.launcher import launch
    from world_model.wire.client import SimulatorClient
    from world_model.wire.requests import SceneSpec

    rel = turning_poses(1, frames)
    warmup_steps = max(2, -(-warmup_frames // frames))
    start = threading.Barrier(clients + 1)
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[BaseException] = []

    def run(i: int, address: str) -> None:
        rng = np.random.default_rng(i)
        try:
            with SimulatorClient(address) as client:
                session = client.open([SceneSpec(i)]).sessions
                for _ in range(warmup_steps):
                    client.step(session, rel)
                start.wait()
                while not stop.is_set():
                    time.sleep(rng.uniform(0, think_ms) / 1000)
                    t = time.perf_counter()
                    client.step(session, rel)
                    latencies[i].append(time.perf_counter() - t)
        except BaseException as exc:  # reported by the caller; the barrier must not wait for this one
            failures.append(exc)
            start.abort()

    with launch(backend=backend, backend_kwargs=kwargs, server=server) as srv:
        threads = [threading.Thread(target=run, args=(i, srv.address), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        try:
            start.wait()
        except threading.BrokenBarrierError:
            pass
        before = _batch_sizes(srv.address)
        t0 = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        sizes = _difference(_batch_sizes(srv.address), before)
    if failures:
        raise failures[0]
    ms = 1000 * np.concatenate([np.asarray(x) for x in latencies])
    batches = sum(sizes.values())
    return {
        "path": "clients",
        "backend": backend,
        "clients": clients,
        "think_ms": think_ms,
        "server": server,
        "env_steps": len(ms),
        "env_steps_per_s": len(ms) / dt,
        "ms_per_step_median": float(np.median(ms)),
        "ms_per_step_p95": float(np.percentile(ms, 95)),
        "mean_batch": sum(int(k) * v for k, v in sizes.items()) / batches if batches else 0.0,
        "batch_sizes": sizes,
    }


def _batch_sizes(address: str) -> dict[str, int]:
    """The server's count of generate calls by batch size (its INFO)."""
    from world_model.wire.client import SimulatorClient

    with SimulatorClient(address) as client:
        return dict(client.info()["stats"]["batch_sizes"])


def _difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    counts = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in sorted(counts.items(), key=lambda kv: int(kv[0])) if v}
