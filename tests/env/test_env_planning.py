"""Planner API: imagined rollouts in one batch leave the real episode untouched."""

import numpy as np
import pytest

from dreamx_env.planning import imagine, relocate


def test_imagination_leaves_the_episode_untouched(make):
    env, twin = make("DreamX/GoalView-v0", event_actions=True), make("DreamX/GoalView-v0", event_actions=True)
    env.reset(seed=8)
    twin.reset(seed=8)
    rng = np.random.default_rng(0)
    plans = np.stack([env.action_space.sample() for _ in range(12 * 5)]).reshape(12, 5, 3)
    plans[..., 2] = rng.integers(0, 9, (12, 5))  # events too: imagined lights-off must not leak
    calls = []
    original = env.unwrapped.core.client.request
    env.unwrapped.core.client.request = lambda t, *a, **k: calls.append(t.name) or original(t, *a, **k)
    out = imagine(env, plans, return_frames=True)
    assert calls == ["FORK", "STEP", "CLOSE"]
    assert out.rewards.shape == (12, 5) and out.frames.shape == (12, 5, 64, 64, 3)
    assert len({f.tobytes() for f in out.frames[:, -1]}) > 1  # different plans, different futures
    for t in range(5):
        action = plans[3, t]
        a, b = env.step(action), twin.step(action)
        assert np.array_equal(a[0]["rgb"], b[0]["rgb"]) and a[1] == pytest.approx(b[1])
        assert a[1] == pytest.approx(out.rewards[3, t])  # the imagination of a deterministic world is exact
        assert np.allclose(a[4]["pose"], out.final_poses[3]) or t < 4
    open_sessions = env.unwrapped.core.client.ping()["sessions"]
    assert open_sessions == env.unwrapped.core.sessions  # the forks were freed


def test_imagine_on_a_vector_env_and_bad_input(make):
    envs = make("DreamX/Explore-v0", vector=2)
    envs.reset(seed=1)
    out = imagine(envs, np.zeros((4, 3, 2), np.int64), env_index=1)
    assert out.returns.shape == (4,) and np.allclose(out.returns, out.returns[0])
    with pytest.raises(ValueError, match="MultiDiscrete|Box"):
        imagine(envs, np.full((2, 2, 2), 9))
    with pytest.raises(
        ValueError, match=r"shape \[N, T, 2\] .*MultiDiscrete\(\[9 9\]\)\), got shape \[2, 2, 3\]"
    ):
        imagine(envs, np.zeros((2, 2, 3), np.int64))  # an event column the env does not have
    with pytest.raises(ValueError, match=r"got shape \[0, 2, 2\]"):
        imagine(envs, np.zeros((0, 2, 2), np.int64))


def test_relocate_puts_the_camera_where_another_one_is_and_keeps_the_episode(make):
    env, other = make("DreamX/GoalView-v0"), make("DreamX/GoalView-v0")
    _, start = env.reset(seed=4)
    other.reset(seed=4)
    for _ in range(3):
        *_, there = other.step(np.array([1, 2]))  # walk and turn
    relocate(env, there["pose"])
    core = env.unwrapped.core
    assert np.allclose(core.frames[0].poses[-1], there["pose"]) and core.states[0].step == 0
    assert np.allclose(core.states[0].task["pose"], other.unwrapped.core.states[0].task["pose"])  # same goal
    a, b = env.step(np.array([1, 0])), other.step(np.array([1, 0]))
    assert np.allclose(a[4]["pose"], b[4]["pose"]) and a[1] == pytest.approx(b[1])  # progress from there
    assert a[4]["goal_distance_m"] == pytest.approx(b[4]["goal_distance_m"])
