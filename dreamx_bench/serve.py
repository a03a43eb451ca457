"""``dreamx-bench-serve``: env-steps/s through the whole path (vector env -> client -> server -> backend).

    dreamx-bench-serve                                   # constant, constant-flat, oracle; 1 / 8 / 32 envs
    dreamx-bench-serve --backends constant --envs 1 8 32 128 --seconds 5 --json bench.json
    dreamx-bench-serve --backends learned --envs 8 --clients 8 --max-wait-ms 0 2 5 --think-ms 0 4
    dreamx-bench-serve --backends learned --envs --sb3 4 --seconds 30    # SB3: make_vec_env vs the adapter

For each backend and number of envs it starts an embedded server subprocess (ipc://; with ``--lanes N``, a
broker and N workers), steps a native ``DreamX/Explore-v0`` vector env with random move/look keys (no
events), and reports env-steps/s and milliseconds per vector step; ``--raw`` adds the same through the bare
client (protocol and batching without the env's reward and observation work); ``--clients N`` adds N
independent clients of one session each on one server, the path the server's batching policy is for
(``bench_clients``; ``--max-wait-ms``, ``--active-window-ms`` and ``--think-ms`` give the grid);
``--sb3 N`` adds SB3's ``make_vec_env(env_id, n_envs=N)`` against the project's adapter ``make_sb3_env``
(``bench_sb3``; ``--sb3-unshared`` also times ``make_vec_env`` with a server process per env). The
constant backend measures overhead (``constant-flat``, without objects, is the pure protocol + batching + env
cost); the oracle is the MuJoCo ground truth. Benchmarks, not tests: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import platform
import time
from typing import Any

import numpy as np

from dreamx_bench.serve_clients import bench_clients, turning_poses
from dreamx_bench.serve_sb3 import bench_sb3
from dreamx_bench.timing import WARMUP_FRAMES, add_warmup_argument
from world_model.options import add_model_arguments, model_options
from world_model.serve.batching import BatchPolicy


def backend_options(backend: str, resolution: int, model: dict | None = None) -> tuple[str, dict[str, Any]]:
    """The backend's name and options. ``"constant-flat"`` is the constant backend without objects: the
    cheapest possible frames; ``model`` (the learned model's flags: weights, precision, cpu_compile) goes
    to the learned backend only."""
    kwargs: dict[str, Any] = {"height": resolution, "width": resolution}
    if backend == "constant-flat":
        return "constant", dict(kwargs, draw_objects=False)
    if backend == "learned":
        kwargs |= model or {}
    return backend, kwargs


def bench_env(
    backend: str,
    num_envs: int,
    seconds: float,
    resolution: int,
    frames: int,
    options: dict | None = None,
    warmup_frames: int = WARMUP_FRAMES,
    lanes: int = 1,
) -> dict[str, Any]:
    """Env-steps/s of a ``num_envs`` vector env on an embedded server; with ``lanes`` > 1 (at most
    ``num_envs``), its sessions in that many lanes on a broker and as many workers (``dreamx_env.lanes``)."""
    from dreamx_env.envs.explore import ExploreVectorEnv

    lanes = min(lanes, num_envs)
    name, kwargs = backend_options(backend, resolution, options)
    env = ExploreVectorEnv(
        num_envs=num_envs,
        backend=name,
        resolution=resolution,
        backend_options={k: v for k, v in kwargs.items() if k not in ("height", "width")},
        frames_per_step=frames,
        lanes=lanes,
        server_options={"max_batch": max(64, num_envs), "max_sessions": max(256, 2 * num_envs)},
    )
    try:
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        actions = rng.integers(0, 9, size=(64, num_envs, 2))  # move, look; no events (the default)
        for i in range(max(3, -(-warmup_frames // frames))):  # untimed: memories fill, compiles are done
            env.step(actions[i % 64])
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            env.step(actions[steps % 64])
            steps += 1
        dt = time.perf_counter() - start
    finally:
        env.close()
    return {
        "path": "env",
        "backend": backend,
        "num_envs": num_envs,
        "lanes": lanes,
        "warmup_frames": warmup_frames,
        "vector_steps": steps,
        "env_steps_per_s": steps * num_envs / dt,
        "ms_per_vector_step": 1000 * dt / steps,
    }


def bench_raw(
    backend: str, num_envs: int, seconds: float, resolution: int, frames: int, options: dict | None = None
) -> dict[str, Any]:
    from dreamx_env.launcher import launch
    from world_model.wire.client import SimulatorClient
    from world_model.wire.requests import SceneSpec

    name, kwargs = backend_options(backend, resolution, options)
    server = {"max_batch": max(64, num_envs), "max_sessions": max(256, 2 * num_envs)}
    with launch(backend=name, backend_kwargs=kwargs, server=server) as srv:
        client = SimulatorClient(srv.address)
        sessions = client.open([SceneSpec(i) for i in range(num_envs)]).sessions
        rel = turning_poses(num_envs, frames)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            client.step(sessions, rel)
            steps += 1
        dt = time.perf_counter() - start
        client.close()
    return {
        "path": "raw",
        "backend": backend,
        "num_envs": num_envs,
        "vector_steps": steps,
        "env_steps_per_s": steps * num_envs / dt,
        "ms_per_vector_step": 1000 * dt / steps,
    }


def failure_reason(exc: Exception) -> str:
    """The last line of a failed measurement's error, for its line in the table."""
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def measure_clients(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``bench_clients`` for every backend, number of clients and batching policy asked; one line each."""
    results = []
    print(
        f"\n{'path':7} {'backend':13} {'clients':>7} {'think':>6} {'wait':>5} {'window':>6} "
        f"{'env-steps/s':>12} {'median':>7} {'p95':>7} {'batch':>6}  (ms; batch: sessions a generate call)"
    )
    grid = itertools.product(
        args.backends, args.clients, args.think_ms, args.max_wait_ms, args.active_window_ms
    )
    for backend, n, think, wait, window in grid:
        name, kwargs = backend_options(backend, args.resolution, model_options(args))
        server = {"max_wait_ms": wait, "active_window_ms": window, "max_sessions": max(256, 2 * n)}
        head = f"{'clients':7} {backend:13} {n:>7} {think:>6g} {wait:>5g} {window:>6g}"
        try:
            frames = args.frames_per_step
            r = bench_clients(name, kwargs, n, args.seconds, frames, server, think, args.warmup_frames)
        except Exception as exc:  # e.g. a backend that is not installed here
            print(f"{head}  failed: {failure_reason(exc)}")
            continue
        results.append(dict(r, backend=backend))
        rate, median, p95 = r["env_steps_per_s"], r["ms_per_step_median"], r["ms_per_step_p95"]
        print(f"{head} {rate:>12.0f} {median:>7.2f} {p95:>7.2f} {r['mean_batch']:>6.2f}", flush=True)
    return results


def measure_sb3(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``bench_sb3`` for every backend and number of envs asked; one line per path."""
    results = []
    print(f"\n{'path':22} {'backend':13} {'envs':>5} {'env-steps/s':>12} {'servers':>8}  ({args.env_id})")
    for backend, n in itertools.product(args.backends, args.sb3):
        name, kwargs = backend_options(backend, args.resolution, model_options(args))
        try:
            r = bench_sb3(
                name,
                kwargs,
                n,
                args.seconds,
                args.frames_per_step,
                args.env_id,
                args.rounds,
                args.warmup_frames,
                args.sb3_unshared,
            )
        except Exception as exc:  # e.g. a backend that is not installed here
            print(f"{'sb3':22} {backend:13} {n:>5}  failed: {failure_reason(exc)}")
            continue
        results.append(dict(r, backend=backend))
        for path, rate in r["env_steps_per_s"].items():
            print(f"{path:22} {backend:13} {n:>5} {rate:>12.2f} {r['server_processes'][path]:>8}")
        print(
            f"{'make_vec_env / adapter':22} {backend:13} {n:>5} {r['natural_over_adapter']:>12.2f}",
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--backends",
        nargs="+",
        default=["constant", "constant-flat", "oracle"],
        help="oracle | learned | constant | constant-flat (no objects: the cheapest frames)",
    )
    p.add_argument(
        "--envs",
        nargs="*",
        type=int,
        default=[1, 8, 32],
        help="env path: vector envs of these sizes (none: skip)",
    )
    p.add_argument("--seconds", type=float, default=3.0, help="measurement time per configuration")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--frames-per-step", type=int, default=4)
    add_warmup_argument(p, "env (env path)")
    p.add_argument(
        "--lanes",
        type=int,
        default=1,
        help="env path: the envs in this many lanes, on a broker and as many workers (default: 1)",
    )
    p.add_argument("--raw", action="store_true", help="also measure the bare client (no env)")
    p.add_argument(
        "--clients",
        nargs="+",
        type=int,
        default=[],
        help="also measure this many independent clients, one session each, on one server: the batching\n"
        "policy's path (each of --max-wait-ms x --active-window-ms x --think-ms)",
    )
    p.add_argument("--max-wait-ms", nargs="+", type=float, default=[BatchPolicy.max_wait_ms])
    p.add_argument("--active-window-ms", nargs="+", type=float, default=[BatchPolicy.active_window_ms])
    p.add_argument(
        "--think-ms",
        nargs="+",
        type=float,
        default=[0.0],
        help="--clients: each client's own work before each step, uniform in [0, this] (default: 0)",
    )
    p.add_argument(
        "--sb3",
        nargs="+",
        type=int,
        default=[],
        help="also measure SB3's make_vec_env(ENV_ID, n_envs=N) (DummyVecEnv) against the adapter\n"
        "make_sb3_env(ENV_ID, N), timed in alternating windows",
    )
    p.add_argument("--env-id", default="DreamX/GoalView-v0", help="--sb3: the env (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="--sb3: alternating windows of each path")
    p.add_argument(
        "--sb3-unshared",
        action="store_true",
        help="--sb3: also time make_vec_env with share_server=False (a server process per env)",
    )
    p.add_argument("--json", help="write the results here")
    add_model_arguments(p)
    args = p.parse_args(argv)
    if args.lanes < 1:
        p.error("--lanes must be >= 1")
    results = []
    if args.envs:
        print(f"{'path':5} {'backend':13} {'envs':>5} {'env-steps/s':>12} {'ms/step':>9}")
    model = model_options(args)
    runs = [
        (
            "env",
            functools.partial(bench_env, warmup_frames=args.warmup_frames, lanes=args.lanes, options=model),
        )
    ]
    runs += [("raw", functools.partial(bench_raw, options=model))] if args.raw else []
    for backend in args.backends:
        for n in args.envs:
            for path, run in runs:
                try:
                    r = run(backend, n, args.seconds, args.resolution, args.frames_per_step)
                except Exception as exc:  # e.g. a backend that is not installed here
                    print(f"{path:5} {backend:13} {n:>5}  failed: {failure_reason(exc)}")
                    continue
                results.append(r)
                rate, ms = r["env_steps_per_s"], r["ms_per_vector_step"]
                print(f"{r['path']:5} {backend:13} {n:>5} {rate:>12.0f} {ms:>9.2f}")
    if args.clients:
        results += measure_clients(args)
    if args.sb3:
        results += measure_sb3(args)
    meta = {
        "resolution": args.resolution,
        "frames_per_step": args.frames_per_step,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
