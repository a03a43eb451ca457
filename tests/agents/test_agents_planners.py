"""CEM / MPPI: valid actions, an untouched episode, and better than random on a tiny budget."""

import numpy as np
import pytest
from gymnasium import spaces

from agents.planners import CEMPlanner, MPPIPlanner, PlannerConfig, make_planner
from dreamx_env.planning import imagine

TINY = PlannerConfig(horizon=2, population=8, iterations=2, elites=2, seed=0)


def test_bad_configs_and_spaces_fail_clearly():
    with pytest.raises(ValueError, match="population"):
        PlannerConfig(population=0)
    with pytest.raises(ValueError, match="elites"):
        PlannerConfig(population=4, elites=5)
    with pytest.raises(ValueError, match="action_set='multi' or 'discrete'"):
        CEMPlanner(spaces.Box(-1, 1, (4,)))
    with pytest.raises(ValueError, match="cem"):
        make_planner("random-shooting", spaces.Discrete(3))


def test_samples_stay_in_the_space_and_events_stay_off():
    space = spaces.MultiDiscrete([9, 9, 9])
    planner = MPPIPlanner(space, PlannerConfig(horizon=3, population=64))
    seqs = planner.sample(500)
    assert seqs.shape == (500, 3, 3) and all(space.contains(a) for a in seqs.reshape(-1, 3))
    assert (seqs[..., 2] == 0).all() and len(np.unique(seqs[..., 0])) == 9
    assert len(np.unique(MPPIPlanner(space, PlannerConfig(events=True)).sample(500)[..., 2])) == 9
    scalar = CEMPlanner(spaces.Discrete(5), PlannerConfig(horizon=2))
    assert scalar._actions(scalar.sample(4)).shape == (4, 2)  # Discrete: sequences of plain integers


def test_refits_move_the_distribution_towards_the_best():
    space = spaces.MultiDiscrete([9, 9, 9])
    seqs = np.zeros((4, 2, 3), np.int64)
    seqs[:, :, 0] = [[1, 1], [2, 2], [3, 3], [4, 4]]
    returns = np.array([5.0, 0.0, -1.0, 0.1])
    cem = CEMPlanner(space, PlannerConfig(horizon=2, population=4, elites=1))
    assert cem.refit(seqs, returns)[:, 0, 1].tolist() == [1.0, 1.0]
    mppi = MPPIPlanner(space, PlannerConfig(horizon=2, population=4, temperature=0.5))
    probs = mppi.refit(seqs, returns)
    assert probs[0, 0].argmax() == 1 and probs.sum(-1) == pytest.approx(np.ones((2, 3)))


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_plan_returns_a_valid_action_and_leaves_the_episode_untouched(make, name):
    env, twin = make("DreamX/GoalView-v0"), make("DreamX/GoalView-v0")
    env.reset(seed=3)
    twin.reset(seed=3)
    before = env.unwrapped.core.frames[0].poses[-1].copy()
    result = make_planner(name, env.action_space, TINY).plan(env)
    assert env.action_space.contains(result.action) and result.action.shape == (2,)  # (move, look)
    assert result.sequence.shape == (2, 2) and result.seconds > 0
    assert result.value >= result.mean_value
    assert np.array_equal(env.unwrapped.core.frames[0].poses[-1], before)
    assert env.unwrapped.core.states[0].step == 0
    a, b = env.step(result.action), twin.step(result.action)  # the planned env still matches its twin
    assert np.array_equal(a[0]["rgb"], b[0]["rgb"]) and a[1] == pytest.approx(b[1])


def test_cem_beats_random_actions_on_goal_view(make):
    env = make("DreamX/GoalView-v0")
    env.reset(seed=5)
    start_distance = env.unwrapped.core.states[0].task["distance"]  # metres + weighted angle error
    rng = np.random.default_rng(0)
    random_plans = rng.integers(0, 9, (24, 3, 2))
    random_return = imagine(env, random_plans).returns.mean()
    planner, planned_return = CEMPlanner(env.action_space, TINY), 0.0
    for _ in range(3):
        planned_return += env.step(planner.plan(env).action)[1]
    assert planned_return > random_return + 0.3, (planned_return, random_return)
    assert env.unwrapped.core.states[0].task["distance"] < start_distance - 0.3
