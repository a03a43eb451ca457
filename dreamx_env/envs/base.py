"""``DreamXEnv`` (one camera) and ``DreamXVectorEnv`` (B cameras, one server call per step) over the
batched core. Task envs (Explore, GoalView, FindObject) subclass both and set ``task_cls``."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dreamx_env.envs.core import DreamXCore, EnvConfig
from dreamx_env.envs.task import Task
from world_model.events import EventRecord

RENDER_MODES = ["rgb_array", "human"]


def _build_core(task_cls: type[Task], task_config_cls: Any, num_envs: int, kwargs: dict) -> DreamXCore:
    task_fields = {f.name for f in dataclasses.fields(task_config_cls)} if task_config_cls else set()
    task_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in task_fields}
    cfg, weights = EnvConfig.build(task_cls, **kwargs)
    if cfg.render_mode not in (None, *RENDER_MODES):
        raise ValueError(f"render_mode must be None or one of {RENDER_MODES}, got {cfg.render_mode!r}")
    task = task_cls(
        task_config_cls(**task_kwargs) if task_config_cls else None, *cfg.resolution, cfg.vfov_deg
    )
    return DreamXCore(cfg, weights, task, num_envs)


class _Window:
    """A pygame window for ``render_mode="human"`` (frames scaled up, side by side for vector envs)."""

    def __init__(self, scale: int = 4) -> None:
        import pygame

        self.pg, self.scale, self.screen = pygame, scale, None
        pygame.display.init()  # display only: no audio device needed

    def show(self, frames: list[np.ndarray]) -> None:
        tiles = np.concatenate(frames, axis=1).repeat(self.scale, 0).repeat(self.scale, 1)
        if self.screen is None:
            self.screen = self.pg.display.set_mode((tiles.shape[1], tiles.shape[0]))
            self.pg.display.set_caption("DreamX")
        self.pg.event.pump()
        self.pg.surfarray.blit_array(self.screen, tiles.swapaxes(0, 1))
        self.pg.display.flip()

    def close(self) -> None:
        self.pg.display.quit()


class DreamXEnv(gym.Env):
    """Base single env; see the task envs for the user manual."""

    metadata = {"render_modes": RENDER_MODES, "render_fps": 15}
    task_cls: type[Task] = Task
    task_config_cls: Any = None

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.core = _build_core(self.task_cls, self.task_config_cls, 1, dict(kwargs, render_mode=render_mode))
        self.render_mode = render_mode
        self.action_space = self.core.mapper.space
        self.observation_space = self.core.observation_space
        self._window: _Window | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.core.rngs[0] = self.np_random  # scene seeds and task choices follow the env's seeded RNG
        self.core.reset([0], [None], [options])
        if self.render_mode == "human":
            self.render()
        return self.core.observation(0), self.core.info(0, {})

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.core.require_episode("step")
        a = self.core.mapper.check(action)
        rewards, terminated, infos = self.core.step(a[None], {})
        if self.render_mode == "human":
            self.render()
        return (
            self.core.observation(0),
            float(rewards[0]),
            bool(terminated[0]),
            False,
            self.core.info(0, infos[0]),
        )

    def command(self, text: str | EventRecord | dict | list) -> list[EventRecord]:
        """Queue events for the next step, e.g. ``env.unwrapped.command("turn the lights off")``: a prompt,
        an ``EventRecord``, its dict form, or a list of these. Raises ``ValueError`` listing the vocabulary
        when a prompt cannot be read, ``ValueError`` for a bad field or more events than the server takes
        in one step, ``TypeError`` for anything else; nothing is queued then."""
        return self.core.command(text, [0])

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self.core.frames[0] is None:
            return None
        frame = self.core.frames[0].rgb.copy()
        if self.render_mode == "rgb_array":
            return frame
        self._window = self._window or _Window()
        self._window.show([frame])
        return None

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
        self.core.close()


class DreamXVectorEnv(VectorEnv):
    """Base native vector env: ``num_envs`` sessions stepped with one server call per step."""

    metadata = {"render_modes": RENDER_MODES, "render_fps": 15, "autoreset_mode": AutoresetMode.NEXT_STEP}
    task_cls: type[Task] = Task
    task_config_cls: Any = None

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ) -> None:
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode must be NEXT_STEP or SAME_STEP, got {autoreset_mode}")
        self.metadata = dict(self.metadata, autoreset_mode=self.autoreset_mode)
        self.core = _build_core(
            self.task_cls, self.task_config_cls, num_envs, dict(kwargs, render_mode=render_mode)
        )
        self.num_envs, self.render_mode, self.max_episode_steps = num_envs, render_mode, max_episode_steps
        self.single_action_space = self.core.mapper.space
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = self.core.observation_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._autoreset = np.zeros(num_envs, bool)
        self._steps = np.zeros(num_envs, np.int64)
        self._window: _Window | None = None

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        super().reset(seed=seed if isinstance(seed, int) else None)
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            assert len(seeds) == self.num_envs, f"reset needs {self.num_envs} seeds, got {len(seeds)}"
        self.core.reset(list(range(self.num_envs)), seeds, _per_env_options(options, self.num_envs))
        self._autoreset[:] = False
        self._steps[:] = 0
        infos = [self.core.info(i, {}) for i in range(self.num_envs)]
        return self._observations(), self._vector_infos(infos)

    def step(self, actions: Any):
        self.core.require_episode("step")
        a = self.core.mapper.check(actions, self.action_space)
        resets = {int(i): None for i in np.flatnonzero(self._autoreset)}
        rewards, terminated, infos = self.core.step(a, resets)
        self._steps += 1
        self._steps[list(resets)] = 0
        truncated = np.zeros(self.num_envs, bool)
        if self.max_episode_steps is not None:
            truncated = (self._steps >= self.max_episode_steps) & ~terminated
        infos = [self.core.info(i, info) for i, info in enumerate(infos)]
        done = terminated | truncated
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._autoreset = done
            return self._observations(), rewards, terminated, truncated, self._vector_infos(infos)
        final = {}
        rows = [int(i) for i in np.flatnonzero(done)]
        if rows:  # SAME_STEP: the finished episodes restart now (one extra, batched server call)
            final_obs = np.empty(self.num_envs, object)
            final_info = np.empty(self.num_envs, object)
            for i in rows:
                final_obs[i], final_info[i] = self.core.observation(i), infos[i]
            self.core.reset(rows, [None] * len(rows))
            self._steps[rows] = 0
            for i in rows:
                infos[i] = self.core.info(i, {"reset": True})
            final = {
                "final_obs": final_obs,
                "_final_obs": done.copy(),
                "final_info": final_info,
                "_final_info": done.copy(),
            }
        return self._observations(), rewards, terminated, truncated, dict(self._vector_infos(infos), **final)

    def _vector_infos(self, infos: list[dict]) -> dict[str, Any]:
        """Gymnasium's vector info (one array per key over envs, plus a ``_key`` mask of the envs that have
        it), made by Gymnasium's own ``VectorEnv._add_info``."""
        out: dict[str, Any] = {}
        for i, info in enumerate(infos):
            out = self._add_info(out, info, i)
        return out

    def _observations(self) -> Any:
        obs = [self.core.observation(i) for i in range(self.num_envs)]
        if isinstance(obs[0], dict):
            return {k: np.stack([o[k] for o in obs]) for k in obs[0]}
        return np.stack(obs)

    def command(self, text: str | EventRecord | list, env_index: int | None = None) -> list[EventRecord]:
        """Queue events for the next step of one env (or of all when ``env_index`` is None); checked as
        ``DreamXEnv.command`` checks them, nothing queued on an error."""
        if env_index is not None and (
            isinstance(env_index, bool)
            or not isinstance(env_index, int | np.integer)
            or not 0 <= env_index < self.num_envs
        ):
            raise ValueError(f"env_index must be None or an int in [0, {self.num_envs}), got {env_index!r}")
        rows = list(range(self.num_envs)) if env_index is None else [int(env_index)]
        return self.core.command(text, rows)

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None or self.core.frames[0] is None:
            return None
        frames = tuple(f.rgb.copy() for f in self.core.frames)
        if self.render_mode == "rgb_array":
            return frames
        self._window = self._window or _Window()
        self._window.show(list(frames))
        return None

    def close_extras(self, **kwargs: Any) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
        self.core.close()


def _per_env_options(options: dict | None, num_envs: int) -> list[dict]:
    """A vector reset's ``options`` for each env: ``first_frame`` may be one image [H,W,3] for all or a batch
    [N,H,W,3]; other options apply to every env."""
    options = dict(options or {})
    frames = options.pop("first_frame", None)
    if frames is not None:
        frames = np.asarray(frames)
        frames = np.broadcast_to(frames, (num_envs, *frames.shape)) if frames.ndim == 3 else frames
        if len(frames) != num_envs:
            raise ValueError(f"first_frame: need one image or {num_envs} (one per env), got {len(frames)}")
        return [{**options, "first_frame": frames[i]} for i in range(num_envs)]
    return [options] * num_envs
