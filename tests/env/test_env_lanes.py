"""Laned vector envs (``lanes`` > 1): the same episodes as one lane, their sessions on separate workers."""

import numpy as np
import pytest

from dreamx_env.envs.explore import ExploreVectorEnv
from dreamx_env.lanes import LanedClient
from dreamx_env.planning import imagine, relocate
from world_model.geometry import LOOK_COMBOS
from world_model.serve.broker import HANDLE_SHIFT
from world_model.serve.cluster import ClusterConfig, LocalCluster


def _rollout(lanes: int, steps: int = 7) -> tuple[list, list[int]]:
    env = ExploreVectorEnv(
        num_envs=5, backend="constant", lanes=lanes, max_episode_steps=3, obs_keys=("rgb", "depth")
    )
    try:
        out = [env.reset(seed=11)[0]]
        actions = np.random.default_rng(0).integers(0, 9, size=(steps, 5, 2))
        for a in actions:  # episodes end every 3 steps: the resets ride along in the STEP
            obs, reward, terminated, truncated, _ = env.step(a)
            out.append((obs, reward, terminated, truncated))
        out.append(env.reset(seed=[4, None, 5, None, 6])[0])  # RESET of every row
        return out, list(env.core.sessions)
    finally:
        env.close()


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


def test_two_lanes_step_on_two_workers_and_give_the_frames_of_one():
    one, one_sessions = _rollout(lanes=1)
    two, two_sessions = _rollout(lanes=2)
    assert len({s >> HANDLE_SHIFT for s in one_sessions}) == 1
    workers = [s >> HANDLE_SHIFT for s in two_sessions]
    assert workers[:3] == [workers[0]] * 3 and workers[3:] == [workers[3]] * 2 and workers[0] != workers[3]
    assert all(_equal(a, b) for a, b in zip(one, two, strict=True))
    assert not _equal(one[1][0], one[2][0])  # the frames do change (the comparison can fail)


def test_lanes_relocate_and_imagine_on_the_sessions_worker():
    env = ExploreVectorEnv(num_envs=3, backend="constant", lanes=2)
    try:
        env.reset(seed=2)
        client = env.core.client
        assert isinstance(client, LanedClient)
        pose = env.core.frames[0].poses[-1].copy()
        pose[:2, 3] += 0.3
        relocate(env, pose, env_index=2)  # a RESET of one row, on the second lane
        np.testing.assert_allclose(env.core.frames[2].poses[-1][:2, 3], pose[:2, 3])
        seen = imagine(env, np.zeros((4, 2, 2), np.int64), env_index=2, return_frames=True)
        assert seen.frames.shape == (4, 2, 64, 64, 3)
        assert set(client._lane_of.values()) == {0, 1}
        assert len(client._lane_of) == 3  # the forks were closed and forgotten
    finally:
        env.close()


def test_lanes_must_fit_the_envs_and_the_backend():
    with pytest.raises(ValueError, match="lanes must be between 1 and num_envs=2"):
        ExploreVectorEnv(num_envs=2, backend="constant", lanes=3)
    with pytest.raises(ValueError, match="lanes must be at least 1"):
        LanedClient("ipc:///nowhere", 0)


def test_lanes_with_the_oracle_refuse_an_event_before_any_lane_steps():
    still, turn = np.array([0, 0]), np.array([0, LOOK_COMBOS.index("J")])
    env = ExploreVectorEnv(num_envs=3, backend="oracle", lanes=2, scene_seed=5)  # scene 5 has no box
    try:
        _, info = env.reset(seed=0)
        assert len({s >> HANDLE_SHIFT for s in env.core.sessions}) == 2
        env.command("turn the lights off", env_index=0)
        env.command("push the nearest box", env_index=2)  # the second lane's row: refused there
        with pytest.raises(ValueError, match="row 2, step 0: no box to target in this scene.*did not step"):
            env.step(np.stack([turn] * 3))
        lit, _, _, _, after = env.step(np.stack([still] * 3))  # no lane stepped, the queue was dropped
        assert np.allclose(after["pose"], info["pose"]) and list(after["events"]) == [[], [], []]
        env.command("turn the lights off", env_index=2)  # one the scene has: carried out in its lane
        obs, _, _, _, after = env.step(np.stack([still] * 3))
        assert list(after["events"]) == [[], [], ["lights(room state=off)"]]
        assert obs[2].mean() < 0.8 * lit[2].mean() and obs[0].mean() == pytest.approx(lit[0].mean(), rel=0.01)
    finally:
        env.close()


def test_cluster_workers_get_the_threads_asked():
    with LocalCluster(ClusterConfig(workers=1, backend="constant", threads=1)) as cluster:
        with open(f"/proc/{cluster.workers[0].pid}/environ", "rb") as f:
            environ = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    assert environ[b"OMP_NUM_THREADS"] == b"1"
