"""CEM and MPPI planners over imagined rollouts (``dreamx_env.planning.imagine``).

    from agents.planners import CEMPlanner, PlannerConfig

    env = gymnasium.make("DreamX/GoalView-v0", backend="oracle")
    obs, info = env.reset(seed=0)
    planner = CEMPlanner(env.action_space, PlannerConfig(horizon=4, population=16, iterations=2))
    while True:
        result = planner.plan(env)          # forks the episode; the real one is untouched
        obs, reward, terminated, truncated, info = env.step(result.action)
        if terminated or truncated:
            break

Both planners keep, for each of the ``horizon`` steps and each action dimension, a categorical distribution
over that dimension's choices (``Discrete(n)`` is one dimension, ``MultiDiscrete([9, 9, 9])`` three). Each
iteration samples ``population`` action sequences, scores them all with one batched ``imagine`` call (three
server calls) and refits the distribution:

- **CEM** to the choice frequencies of the ``elites`` best sequences;
- **MPPI** to the choice frequencies weighted by ``softmax(return / temperature)`` over all sequences.

The distribution is blended with the previous one (``smoothing``), and after each real step it is shifted one
step forward (receding horizon) with a uniform distribution appended. CEM acts with the first action of the
best sequence it has imagined; MPPI with the most likely choice of each dimension at the first step. With
``events=False`` (default) the event dimension of ``MultiDiscrete([move, look, event])`` stays 0, so the
planner never changes the world; the continuous action set (``Box``) is not supported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from dreamx_env.planning import imagine

PLANNERS: tuple[str, ...] = ("cem", "mppi")


@dataclass
class PlannerConfig:
    horizon: int = 4  # env steps per imagined sequence
    population: int = 16  # sequences imagined per iteration
    iterations: int = 2  # refits of the distribution per real step
    elites: int = 4  # CEM: sequences the distribution is refitted to
    temperature: float = 0.5  # MPPI: softmax temperature, in units of return
    smoothing: float = 0.2  # share of the previous distribution kept at each refit
    gamma: float = 1.0  # discount of imagined rewards
    events: bool = False  # let the planner trigger menu events (MultiDiscrete only)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("horizon", "population", "iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"planner {name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.elites <= self.population:
            raise ValueError(f"planner elites must be in [1, population={self.population}]: {self.elites}")
        if self.temperature <= 0 or not 0 <= self.smoothing < 1:
            raise ValueError(
                f"planner temperature must be > 0 and smoothing in [0, 1), got {self.temperature}, "
                f"{self.smoothing}"
            )


@dataclass
class PlanResult:
    action: np.ndarray  # the action to take now, an element of the env's action space
    sequence: np.ndarray  # [horizon, *action_shape] the best sequence imagined
    value: float  # its imagined return
    mean_value: float  # mean imagined return of the last population
    seconds: float  # wall-clock planning time


class Planner:
    """Base planner: a categorical distribution ``probs [horizon, dims, choices]`` over action sequences.
    Subclasses implement :meth:`refit` and may override :meth:`choose`."""

    name = "planner"

    def __init__(self, action_space: spaces.Space, config: PlannerConfig | None = None) -> None:
        self.config = config or PlannerConfig()
        if isinstance(action_space, spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
            self.nvec, self.scalar = action_space.nvec.astype(np.int64), False
        elif isinstance(action_space, spaces.Discrete):
            self.nvec, self.scalar = np.array([action_space.n], np.int64), True
        else:
            raise ValueError(
                f"{type(self).__name__} plans over Discrete or 1-D MultiDiscrete actions, "
                f"not {action_space}; "
                "make the env with action_set='multi' or 'discrete'"
            )
        self.space = action_space
        self.mask = np.zeros((len(self.nvec), int(self.nvec.max())), bool)  # choices that exist
        for d, n in enumerate(self.nvec):
            self.mask[d, :n] = True
        if not self.config.events and not self.scalar and len(self.nvec) == 3:
            self.mask[2, 1:] = False  # (move, look, event): keep event = 0
        self.rng = np.random.default_rng(self.config.seed)
        self.reset()

    def reset(self) -> None:
        """Forget the warm start (call at the start of each episode)."""
        self.probs = np.repeat(self._uniform()[None], self.config.horizon, axis=0)
        self.best: np.ndarray | None = None

    def _uniform(self) -> np.ndarray:
        return self.mask / self.mask.sum(axis=1, keepdims=True)

    def sample(self, n: int) -> np.ndarray:
        """``n`` sequences ``[n, horizon, dims]`` of choice indices drawn from the distribution."""
        cdf = np.cumsum(self.probs, axis=-1)  # [T, D, C]
        cdf /= cdf[..., -1:]  # exactly 1 from the last allowed choice on, so u in [0, 1) never passes it
        u = self.rng.random((n, *cdf.shape[:2], 1))
        return (u > cdf[None]).sum(-1)

    def one_hot(self, seqs: np.ndarray) -> np.ndarray:
        """``[n, T, D]`` choice indices -> ``[n, T, D, C]`` one-hot."""
        return (seqs[..., None] == np.arange(self.mask.shape[1])).astype(np.float64)

    def refit(self, seqs: np.ndarray, returns: np.ndarray) -> np.ndarray:
        raise NotImplementedError("refit(self, seqs: [N, T, D], returns: [N]) -> probs [T, D, C]")

    def choose(self, best: np.ndarray) -> np.ndarray:
        """Choice indices ``[D]`` to act with now, given the best sequence imagined ``best [T, D]``."""
        return best[0]

    def plan(self, env: Any, env_index: int = 0) -> PlanResult:
        """Plan from the current state of ``env`` (a DreamX env or vector env, after ``reset``) and return
        the action to take. The env's episode is not changed."""
        cfg, t0 = self.config, time.perf_counter()
        best_value, mean_value = -np.inf, 0.0
        for it in range(cfg.iterations):
            seqs = self.sample(cfg.population)
            if it == 0 and self.best is not None:
                seqs[0] = self.best  # the previous plan, shifted, competes again
            out = imagine(env, self._actions(seqs), env_index=env_index, gamma=cfg.gamma)
            top = int(np.argmax(out.returns))
            if out.returns[top] > best_value:
                best_value, best_seq = float(out.returns[top]), seqs[top].copy()
            mean_value = float(out.returns.mean())
            fitted = self.refit(seqs, out.returns)
            self.probs = cfg.smoothing * self.probs + (1 - cfg.smoothing) * fitted
        first = self.choose(best_seq)
        self.best = np.concatenate([best_seq[1:], best_seq[-1:]])  # receding horizon: shift by one step
        self.probs = np.concatenate([self.probs[1:], self._uniform()[None]])
        seconds = time.perf_counter() - t0
        return PlanResult(self._actions(first), self._actions(best_seq), best_value, mean_value, seconds)

    def _actions(self, idx: np.ndarray) -> np.ndarray:
        return idx[..., 0].astype(np.int64) if self.scalar else idx.astype(np.int64)


class CEMPlanner(Planner):
    """Cross-entropy method: refit to the ``elites`` best sequences; act with the best one imagined."""

    name = "cem"

    def refit(self, seqs: np.ndarray, returns: np.ndarray) -> np.ndarray:
        elite = np.argsort(-returns, kind="stable")[: self.config.elites]
        return self.one_hot(seqs[elite]).mean(axis=0)


class MPPIPlanner(Planner):
    """Model-predictive path integral: refit to all sequences weighted by ``softmax(return / temperature)``;
    act with the most likely first action."""

    name = "mppi"

    def refit(self, seqs: np.ndarray, returns: np.ndarray) -> np.ndarray:
        w = np.exp((returns - returns.max()) / self.config.temperature)
        w /= w.sum()
        return np.einsum("n,ntdc->tdc", w, self.one_hot(seqs))

    def choose(self, best: np.ndarray) -> np.ndarray:
        return np.where(self.mask, self.probs[0], -1.0).argmax(axis=-1)


def make_planner(name: str, action_space: spaces.Space, config: PlannerConfig | None = None) -> Planner:
    """``"cem"`` or ``"mppi"`` for ``action_space``."""
    classes = {"cem": CEMPlanner, "mppi": MPPIPlanner}
    if name not in classes:
        raise ValueError(f"planner must be one of {PLANNERS}, got {name!r}")
    return classes[name](action_space, config)
