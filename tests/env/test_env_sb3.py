"""SB3: the VecEnv adapter's episode bookkeeping, and PPO running on it."""

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import VecEnv

from dreamx_env.sb3 import DreamXVecEnv, make_sb3_env


@pytest.fixture
def sb3_env():
    envs = []

    def _make(env_id, **kwargs):
        kwargs.setdefault("backend", "constant")
        kwargs.setdefault("server", "thread")
        env = make_sb3_env(env_id, **kwargs)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


def test_adapter_reports_terminal_observation_and_time_limit(sb3_env):
    env = sb3_env("DreamX/Explore-v0", num_envs=2, max_episode_steps=3)
    assert isinstance(env, VecEnv)
    env.seed(5)
    obs = env.reset()
    assert obs.shape == (2, 64, 64, 3)
    calls = []
    core = env.unwrapped.venv.core
    original = core.client.request
    core.client.request = lambda t, *a, **k: calls.append(t.name) or original(t, *a, **k)
    for _ in range(3):
        obs, rewards, dones, infos = env.step(np.array([[1, 1], [2, 2]]))
        assert rewards.dtype == np.float32 and len(infos) == 2
    assert dones.all()
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (64, 64, 3)
        assert not np.array_equal(info["terminal_observation"], obs[0])
    assert calls == ["STEP", "STEP", "STEP", "RESET"]  # episodes ending add one batched reset
    assert env.env_method("command", "lights off", indices=[1])[0][0].predicate == "lights"


def test_adapter_refuses_a_next_step_vector_env(make):
    with pytest.raises(ValueError, match="SAME_STEP"):
        DreamXVecEnv(make("DreamX/Explore-v0", vector=2, backend="constant"))


@pytest.mark.parametrize(
    "env_id, policy", [("DreamX/Explore-v0", "CnnPolicy"), ("DreamX/FindObject-v0", "MultiInputPolicy")]
)
def test_ppo_smoke(sb3_env, env_id, policy):
    env = sb3_env(env_id, num_envs=2, max_episode_steps=20)
    model = PPO(policy, env, n_steps=64, batch_size=64, n_epochs=1, seed=0)
    model.learn(256)
    assert model.num_timesteps >= 256
    action, _ = model.predict(env.reset(), deterministic=True)
    assert action.shape == (2, 2)


class _Recorder(KVWriter):
    """An SB3 logger output that keeps every dumped key (what the console and TensorBoard would show)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def write(self, key_values, key_excluded, step=0) -> None:
        self.keys.update(key_values)


def _logged_keys(env, steps: int = 256) -> set[str]:
    model = PPO("MultiInputPolicy", env, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    recorder = _Recorder()
    model.set_logger(Logger(None, [recorder]))
    model.learn(steps)
    return recorder.keys


@pytest.mark.parametrize("path", ["make_vec_env", "make_sb3_env"])
def test_ppo_logs_episode_returns_and_success(sb3_env, path):
    """Both SB3 paths show ep_rew_mean, ep_len_mean and success_rate with no wrapper from the user."""
    kwargs = dict(backend="constant", server="thread", max_episode_steps=8)
    if path == "make_vec_env":
        import dreamx_env  # noqa: F401  (registers the ids)

        env = make_vec_env("DreamX/GoalView-v0", n_envs=2, seed=0, env_kwargs=kwargs)
    else:
        env = sb3_env("DreamX/GoalView-v0", num_envs=2, **kwargs)
    try:
        keys = _logged_keys(env)
    finally:
        env.close()
    assert {"rollout/ep_rew_mean", "rollout/ep_len_mean", "rollout/success_rate"} <= keys


def test_is_success_only_for_tasks_that_can_succeed(make):
    """GoalView reports SB3's is_success on every step (False until the goal is reached); Explore, which
    has no success condition, does not, so SB3 logs no success_rate for it."""
    goal = make("DreamX/GoalView-v0", backend="constant")
    goal.reset(seed=0)
    info = goal.step(goal.action_space.sample())[-1]
    assert info["is_success"] is False and info["success"] is False
    explore = make("DreamX/Explore-v0", backend="constant")
    explore.reset(seed=0)
    assert "is_success" not in explore.step(explore.action_space.sample())[-1]
