"""Stable-Baselines3 ``VecEnv`` over the native DreamX vector env: one server call per step.

    from stable_baselines3 import PPO
    from dreamx_env.sb3 import make_sb3_env

    env = make_sb3_env("DreamX/Explore-v0", num_envs=8, backend="oracle")
    PPO("CnnPolicy", env).learn(2_000)   # MultiInputPolicy for GoalView / FindObject (Dict observations)

``make_sb3_env`` returns the adapter inside SB3's ``VecMonitor``, so training logs ``rollout/ep_rew_mean``
and ``rollout/ep_len_mean``, and ``rollout/success_rate`` for tasks that can succeed (GoalView, FindObject
set ``info["is_success"]``); ``env.unwrapped`` is the ``DreamXVecEnv``.

SB3 expects finished episodes to restart inside the same ``step`` and the last observation in
``info["terminal_observation"]``; the adapter therefore runs the vector env with ``SAME_STEP`` autoreset
(restarting finished episodes costs one extra, batched, server call on the steps where episodes end).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from dreamx_env.envs.base import DreamXVectorEnv


class DreamXVecEnv(VecEnv):
    """Adapts a ``DreamXVectorEnv`` created with ``autoreset_mode=SAME_STEP`` to SB3's ``VecEnv`` API."""

    def __init__(self, venv: DreamXVectorEnv) -> None:
        inner = venv.unwrapped
        if not isinstance(inner, DreamXVectorEnv) or inner.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                "DreamXVecEnv needs a DreamXVectorEnv made with autoreset_mode=AutoresetMode.SAME_STEP; "
                "use dreamx_env.sb3.make_sb3_env(env_id, num_envs, ...)"
            )
        self.venv = inner
        super().__init__(inner.num_envs, inner.single_observation_space, inner.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        obs, info = self.venv.reset(seed=seeds)
        self.reset_infos = _split(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos = _split(
            {k: v for k, v in info.items() if not k.startswith(("final_", "_final_"))}, self.num_envs
        )
        for i in np.flatnonzero(dones):
            infos[i] = dict(info["final_info"][i])
            infos[i]["terminal_observation"] = info["final_obs"][i]
        for i in range(self.num_envs):
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.venv.render() if self.venv.render_mode == "rgb_array" else None
        return list(frames) if frames is not None else [None] * self.num_envs

    # All sub-environments share one object, so attributes are the same for every index.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.venv, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        method = getattr(self.venv, method_name)
        if method_name == "command":  # the one per-env method: route it to each index
            return [method(*args, env_index=i, **kwargs) for i in self._get_indices(indices)]
        return [method(*args, **kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))


def _split(info: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's batched info (arrays + ``_key`` masks) -> one dict per env."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, values in info.items():
        if key.startswith("_"):
            continue
        mask = info.get("_" + key, np.ones(n, bool))
        for i in np.flatnonzero(mask):
            out[i][key] = values[i]
    return out


def make_sb3_env(env_id: str, num_envs: int = 1, **kwargs: Any) -> VecMonitor:
    """``gymnasium.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point")`` wrapped for SB3:
    a ``DreamXVecEnv`` inside a ``VecMonitor`` (episode returns, lengths and success for SB3's logger)."""
    import dreamx_env  # noqa: F401  (registers the ids)

    venv = gym.make_vec(
        env_id,
        num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.SAME_STEP,
        **kwargs,
    )
    return VecMonitor(DreamXVecEnv(venv))
