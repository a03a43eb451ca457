"""Envs made in one process share one embedded server (``dreamx_env.server_pool``): one process for SB3's
``make_vec_env``, reference-counted, the same frames as alone, and a dead server replaced for new envs."""

import json
import os
import signal
import weakref

import gymnasium as gym
import numpy as np
import pytest
from process_checks import alive
from stable_baselines3.common.env_util import make_vec_env

import dreamx_env  # noqa: F401
from dreamx_env import launcher
from dreamx_env.server_pool import POOL
from world_model.wire.client import ServerUnavailable, SimulatorClient

# The constant backend in an embedded subprocess: the default path, started in well under a second. The
# idle timeout is a setting no other test uses, so these envs share servers only among themselves.
KWARGS = {"backend": "constant", "event_actions": False, "server_options": {"idle_timeout_s": 321.0}}
STILL = np.array([0, 0])


def server_stats(address: str) -> dict:
    with SimulatorClient(address) as client:
        return client.info()


def omp_threads(pid: int) -> bytes | None:
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    return environ.get(b"OMP_NUM_THREADS")


def ours() -> list:
    """The pool's servers started with this file's settings."""
    return [
        s
        for s in POOL.servers()
        if getattr(s, "config", None) and s.config.server.get("idle_timeout_s") == 321.0
    ]


@pytest.fixture
def closing():
    """``closing(env)`` returns ``env`` and closes it after the test (closing twice is allowed)."""
    envs = []
    yield lambda env: envs.append(env) or env
    for env in envs:
        env.close()
    assert not ours(), "a shared server outlived its envs"


def test_make_vec_env_starts_one_server_process_for_all_envs(closing):
    venv = closing(make_vec_env("DreamX/GoalView-v0", n_envs=4, env_kwargs=KWARGS))
    leases = [env.unwrapped.core.embedded for env in venv.envs]
    assert len({lease.pid for lease in leases}) == 1 and len({lease.address for lease in leases}) == 1
    assert leases[0].users == 4 and alive(leases[0].pid)
    venv.reset()
    venv.step(np.stack([venv.action_space.sample() for _ in range(4)]))
    info = server_stats(leases[0].address)
    assert info["stats"]["sessions"] == 4 and info["server"]["max_wait_ms"] == 0.0
    # gymnasium.make and the native vector env with the same settings join it; other settings get another
    single = closing(gym.make("DreamX/GoalView-v0", **KWARGS)).unwrapped.core.embedded
    vector = closing(gym.make_vec("DreamX/GoalView-v0", 2, vectorization_mode="vector_entry_point", **KWARGS))
    assert single.pid == vector.unwrapped.core.embedded.pid == leases[0].pid and single.users == 6
    other = closing(gym.make("DreamX/GoalView-v0", resolution=32, **KWARGS)).unwrapped.core.embedded
    own = closing(gym.make("DreamX/GoalView-v0", share_server=False, **KWARGS)).unwrapped.core.embedded
    assert len({leases[0].pid, other.pid, own.pid}) == 3 and not hasattr(own, "users")


def test_closing_one_env_keeps_the_others_and_the_last_stops_the_server(closing):
    envs = [closing(gym.make("DreamX/Explore-v0", **KWARGS)) for _ in range(3)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    lease = envs[0].unwrapped.core.embedded
    pid, address, path = lease.pid, lease.address, lease.address[len("ipc://") :]
    assert server_stats(address)["stats"]["sessions"] == 3
    envs[0].close()
    assert alive(pid) and os.path.exists(path) and lease.users == 2
    assert server_stats(address)["stats"]["sessions"] == 2  # the closed env's session was freed
    with pytest.raises(RuntimeError, match="on a closed env"):
        envs[0].step(STILL)
    for env in envs[1:]:
        obs, *_ = env.step(STILL)
        assert obs.shape == (64, 64, 3)
    envs[1].close()
    envs[1].close()  # a second close lets go of nothing more
    assert alive(pid) and lease.users == 1
    envs[2].step(STILL)
    envs[2].close()
    assert not alive(pid) and not os.path.exists(path) and not ours()


def test_sharing_changes_no_frames(closing):
    def rollout(env, seed: int, other=None) -> list[np.ndarray]:
        obs, _ = env.reset(seed=seed)
        frames = [obs]
        for action in ([0, 3], [1, 0], [5, 7], [2, 2]):
            if other is not None:  # another env on the same server steps in between
                other.step(other.action_space.sample())
            frames.append(env.step(np.array(action))[0])
        return frames

    alone = rollout(closing(gym.make("DreamX/Explore-v0", share_server=False, **KWARGS)), seed=7)
    first, second = (closing(gym.make("DreamX/Explore-v0", **KWARGS)) for _ in range(2))
    assert first.unwrapped.core.embedded.pid == second.unwrapped.core.embedded.pid
    second.reset(seed=1)
    shared = rollout(first, seed=7, other=second)
    assert all(np.array_equal(a, b) for a, b in zip(alone, shared, strict=True))
    assert not np.array_equal(alone[0], alone[-1])  # the rollout moved: the comparison can fail


def test_a_killed_shared_server_is_replaced_for_new_envs(closing):
    old = [closing(gym.make("DreamX/Explore-v0", timeout_s=1.0, **KWARGS)) for _ in range(2)]
    for env in old:
        env.reset(seed=0)
    dead = old[0].unwrapped.core.embedded.pid
    os.kill(dead, signal.SIGKILL)
    with pytest.raises(ServerUnavailable):
        old[0].step(STILL)
    new = closing(gym.make("DreamX/Explore-v0", **KWARGS))
    lease = new.unwrapped.core.embedded
    assert lease.pid != dead and lease.users == 1
    new.reset(seed=0)
    for env in old:  # closing the envs of the dead server leaves the new one alone
        env.close()
    assert new.step(STILL)[0].shape == (64, 64, 3) and alive(lease.pid)


def test_backend_processes_share_the_cores(closing, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launcher, "_running", weakref.WeakSet())  # none of other tests' servers
    monkeypatch.setattr(launcher, "available_cores", lambda: 4)
    first = closing(gym.make("DreamX/Explore-v0", share_server=False, **KWARGS)).unwrapped.core.embedded
    second = closing(gym.make("DreamX/Explore-v0", share_server=False, **KWARGS)).unwrapped.core.embedded
    assert omp_threads(first.pid) == b"4" and omp_threads(second.pid) == b"2"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's setting is kept
    third = closing(gym.make("DreamX/Explore-v0", share_server=False, **KWARGS)).unwrapped.core.embedded
    assert omp_threads(third.pid) == b"3"


def test_bench_serve_times_make_vec_env_against_the_adapter(tmp_path, capsys):
    from dreamx_bench.serve import main

    before = POOL.servers()
    out = tmp_path / "sb3.json"
    argv = ["--backends", "constant", "--envs", "--sb3", "2", "--sb3-unshared", "--seconds", "0.3"]
    main([*argv, "--rounds", "2", "--warmup-frames", "4", "--resolution", "32", "--json", str(out)])
    (row,) = json.loads(out.read_text())["results"]
    assert row["path"] == "sb3" and row["num_envs"] == 2
    assert row["server_processes"] == {"make_vec_env": 1, "adapter": 1, "make_vec_env_unshared": 2}
    assert all(rate > 0 for rate in row["env_steps_per_s"].values())
    printed = capsys.readouterr().out
    assert "make_vec_env / adapter" in printed and "adapter " in printed
    assert POOL.servers() == before  # the bench's servers stopped with its envs
