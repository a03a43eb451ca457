"""SB3's two ways to n envs, timed against each other: the natural path a user reaches for,
``make_vec_env(env_id, n_envs=n)`` (a ``DummyVecEnv`` of n ``gymnasium.make`` envs, stepped one after
another, all on the one embedded server they share), and the project's adapter, ``make_sb3_env(env_id, n)``
(one native vector env: one server call per step for all n).

Both are made at once, so they share the server and its threads, then timed in alternating windows (``rounds``
of each), so that load from other work on the machine falls on both alike. ``unshared=True`` adds the natural
path with ``share_server=False`` (a server process per env, as before envs shared one), timed on its own.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dreamx_bench.timing import WARMUP_FRAMES

PATHS = ("make_vec_env", "adapter")


def _timed(venv: Any, actions: np.ndarray, seconds: float, start_step: int) -> tuple[int, float]:
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        venv.step(actions[(start_step + steps) % len(actions)])
        steps += 1
    return steps, time.perf_counter() - t0


def bench_sb3(
    backend: str,
    kwargs: dict[str, Any],
    num_envs: int,
    seconds: float,
    frames: int,
    env_id: str = "DreamX/GoalView-v0",
    rounds: int = 3,
    warmup_frames: int = WARMUP_FRAMES,
    unshared: bool = False,
) -> dict[str, Any]:
    """Env-steps/s of each path (``seconds`` of stepping each, in ``rounds`` alternating windows), and the
    server processes each path's envs run on. ``kwargs``: the backend's options (``height``/``width`` give
    the resolution)."""
    from stable_baselines3.common.env_util import make_vec_env

    import dreamx_env  # noqa: F401  (registers the ids)
    from dreamx_env.sb3 import make_sb3_env

    options = {k: v for k, v in kwargs.items() if k not in ("height", "width")}
    env_kwargs = {
        "backend": backend,
        "resolution": (kwargs.get("height", 64), kwargs.get("width", 64)),
        "frames_per_step": frames,
        "backend_options": options,
    }
    warmup_steps = max(3, -(-warmup_frames // frames))

    def pids(venv: Any) -> set[int | None]:
        if hasattr(venv, "envs"):
            return {env.unwrapped.core.embedded.pid for env in venv.envs}
        return {venv.unwrapped.venv.core.embedded.pid}

    made: dict[str, Any] = {}
    try:
        made["make_vec_env"] = make_vec_env(env_id, n_envs=num_envs, env_kwargs=env_kwargs)
        made["adapter"] = make_sb3_env(env_id, num_envs, **env_kwargs)
        space = made["adapter"].action_space
        space.seed(0)
        actions = np.stack([[space.sample() for _ in range(num_envs)] for _ in range(64)])
        for venv in made.values():
            venv.seed(0)
            venv.reset()
            for i in range(warmup_steps):  # untimed: memories fill, compiles are done
                venv.step(actions[i % 64])
        steps = dict.fromkeys(PATHS, 0)
        elapsed = dict.fromkeys(PATHS, 0.0)
        for _ in range(rounds):
            for path in PATHS:
                n, dt = _timed(made[path], actions, seconds / rounds, steps[path])
                steps[path] += n
                elapsed[path] += dt
        servers = {path: len(pids(made[path])) for path in PATHS}
    finally:
        for venv in made.values():
            venv.close()
    out: dict[str, Any] = {
        "path": "sb3",
        "backend": backend,
        "env_id": env_id,
        "num_envs": num_envs,
        "rounds": rounds,
        "warmup_frames": warmup_frames,
        "server_processes": servers,
        "env_steps_per_s": {p: steps[p] * num_envs / elapsed[p] for p in PATHS},
    }
    if unshared:
        venv = make_vec_env(env_id, n_envs=num_envs, env_kwargs=dict(env_kwargs, share_server=False))
        try:
            venv.reset()
            for i in range(warmup_steps):
                venv.step(actions[i % 64])
            n, dt = _timed(venv, actions, seconds, 0)
            out["server_processes"]["make_vec_env_unshared"] = len(pids(venv))
            out["env_steps_per_s"]["make_vec_env_unshared"] = n * num_envs / dt
        finally:
            venv.close()
    rates = out["env_steps_per_s"]
    out["natural_over_adapter"] = rates["make_vec_env"] / rates["adapter"]
    return out
