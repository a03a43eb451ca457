"""Imagined rollouts for planners (CEM, MPPI): fork an env's state and run a batch of action sequences.

    from dreamx_env.planning import imagine
    plans = np.stack([env.action_space.sample() for _ in range(64 * 8)]).reshape(64, 8, -1)
    out = imagine(env, plans)            # out.returns [64], out.rewards [64, 8]
    env.step(plans[out.returns.argmax(), 0])

Cost: the server generates N x T x frames_per_step frames, here 64 x 8 x 4 = 2,048. On a 2-core CPU the
learned backend takes 30 s to 2 min for them (2 min with other work on the machine, where N=16, T=4 took
12 s and the oracle 24 s for this example); try small N and T first.

The real episode is untouched: the server forks the session N times (its world state, memory and
pose), all N sequences run in one STEP request of horizon T (T generate calls of batch N on the server),
the forks are closed, and rewards are scored on copies of the episode's reward state. Three server calls
in all, whatever N and T. ``relocate(env, pose)`` puts a planning env's camera where the real camera is
(closed-loop planning in a model while acting in another env).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.vector.utils import batch_space


@dataclass
class Imagination:
    rewards: np.ndarray  # [N, T]; 0 after an imagined episode ends
    returns: np.ndarray  # [N] discounted sums of rewards
    terminated: np.ndarray  # [N, T]; True from the step an imagined episode ends
    final_poses: np.ndarray  # [N, 4, 4] camera poses reached
    frames: np.ndarray | None = None  # [N, T, H, W, 3] last frame of each step, when asked


def imagine(
    env: Any, action_sequences: Any, env_index: int = 0, return_frames: bool = False, gamma: float = 1.0
) -> Imagination:
    """Roll ``action_sequences [N, T, *action_shape]`` out from the current state of ``env`` (a DreamX
    env or vector env; ``env_index`` picks the sub-env) without changing it. Queued ``command()`` events
    apply at the first imagined step of every sequence (and stay queued for the real step)."""
    core = env.unwrapped.core
    core.require_episode("imagine")
    single = core.mapper.space
    actions = np.asarray(action_sequences)
    if actions.ndim != 2 + len(single.shape) or actions.shape[2:] != single.shape or 0 in actions.shape[:2]:
        want = ", ".join(["N", "T", *map(str, single.shape)])
        raise ValueError(
            f"action_sequences must have shape [{want}] (N >= 1 plans of T >= 1 actions, each an element "
            f"of the env's action space {single}), got shape {list(actions.shape)}"
        )
    n, t = actions.shape[:2]
    flat = core.mapper.check(actions.reshape(n * t, *single.shape), batch_space(single, n * t))
    rewards, terminated, frames, final_poses = core.imagine(env_index, flat.reshape(n, t, *single.shape))
    returns = (rewards * gamma ** np.arange(t)).sum(axis=1)
    return Imagination(
        rewards, returns, terminated, final_poses, np.ascontiguousarray(frames) if return_frames else None
    )


def relocate(env: Any, pose: np.ndarray, env_index: int = 0) -> None:
    """Put ``env``'s camera at ``pose`` (camera-to-world 4x4), e.g. where another env's camera really is, so
    that planning in ``env`` starts from there (closed-loop planning in a model). The session stays in its
    scene and moves to ``pose`` without collisions. The learned backend keeps its memory, world state and
    obstacles (only the objects its own frames showed), and its frame there is the real view (the engine
    renders it, as for any start pose it has not banked) while no event has changed the world, else one
    generated from memory; other backends start the session over at ``pose``. The episode goes on (goal,
    step count); the task's progress is re-measured from ``pose`` without a reward."""
    env.unwrapped.core.relocate(env_index, pose)
