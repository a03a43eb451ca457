"""What every DreamX task shares: the reward weights, the per-episode state and the ``Task`` interface.

A step's reward is the weighted sum of five terms (weights in :class:`RewardConfig`, defaults per task)::

    coverage * new (cell, heading) views      + revisit * (similarity - neutral) on a revisit
    + progress * task progress                + success (once, then the episode terminates)
    + step (every step; negative = time penalty)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from dreamx_env.rewards import CoverageConfig, CoverageTracker, RevisitConfig, RevisitTracker
from world_model.backend import SceneInfo
from world_model.geometry import Intrinsics


@dataclass
class RewardConfig:
    coverage: float = 0.0
    revisit: float = 0.0  # negative: reward inconsistencies (adversarial search)
    progress: float = 0.0
    success: float = 0.0
    step: float = 0.0


@dataclass
class Frame:
    """One env's view after a step: last frame of the chunk (rgb/depth/semantic as asked), the chunk's
    poses actually reached ``[K, 4, 4]`` and the events applied."""

    rgb: np.ndarray
    poses: np.ndarray
    depth: np.ndarray | None = None
    semantic: np.ndarray | None = None
    events: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class Timing:
    """Wall-clock timings of a step in milliseconds. Timings are measurements, not state: any two compare
    equal, so determinism checks (``gymnasium.utils.env_checker``) look at everything else in ``info``."""

    server_ms: float = 0.0  # round trip of the server call
    step_ms: float = 0.0  # the whole env step

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timing)

    def __hash__(self) -> int:
        return 0


@dataclass
class EpisodeState:
    scene: SceneInfo
    revisit: RevisitTracker
    coverage: CoverageTracker
    task: Any = None
    step: int = 0
    success: bool = False

    def clone(self) -> EpisodeState:
        return copy.deepcopy(self)


class Task:
    """Task logic for one kind of episode. Subclasses override the hooks below; all state lives in the
    ``EpisodeState.task`` object they return from :meth:`begin`, so episodes can be forked for planning."""

    name = "task"
    has_success = False  # a success condition ends the episode; steps then report SB3's info["is_success"]
    starts_from_images = True  # reset(options={"first_frame": image}) makes sense (no goal or object to find)
    needs: tuple[str, ...] = ("rgb",)  # server outputs the task reads
    default_reward = RewardConfig()

    def __init__(self, config: Any, height: int, width: int, vfov_deg: float = 70.0) -> None:
        self.config, self.height, self.width = config, height, width
        self.intrinsics = Intrinsics.from_fov(height, width, vfov_deg)

    def observation_spaces(self) -> dict[str, spaces.Space]:
        """Extra observation entries (beyond rgb/depth/semantic)."""
        return {}

    def scene_request(self, rng: np.random.Generator) -> dict[str, Any]:
        """Extra ``SceneSpec`` fields for a new episode (e.g. ``view_goal`` for a goal image)."""
        return {}

    def begin(
        self, scene: SceneInfo, frame: Frame, view: np.ndarray | None, request: dict, rng: np.random.Generator
    ) -> Any:
        """Task state for a new episode; ``request`` is what :meth:`scene_request` asked for and ``view``
        the extra view it rendered (if any)."""
        return None

    def progress(self, state: Any, frame: Frame) -> tuple[float, bool, dict[str, float]]:
        """(progress since the last step, success, scalar info entries)."""
        return 0.0, False, {}

    def observe(self, state: Any) -> dict[str, np.ndarray]:
        return {}


def new_episode(
    task: Task,
    scene: SceneInfo,
    frame: Frame,
    view_rgb: np.ndarray | None,
    request: dict[str, Any],
    rng: np.random.Generator,
    revisit: RevisitConfig,
    coverage: CoverageConfig,
) -> EpisodeState:
    st = EpisodeState(scene, RevisitTracker(revisit), CoverageTracker(coverage))
    st.coverage.observe(frame.poses[-1:])
    st.revisit.observe(0, frame.poses[-1], frame.rgb)
    st.task = task.begin(scene, frame, view_rgb, request, rng)
    return st


def score_step(task: Task, st: EpisodeState, frame: Frame, weights: RewardConfig) -> tuple[float, bool, dict]:
    """Advance ``st`` by one observed step; returns (reward, terminated, scalar info entries)."""
    st.step += 1
    new = st.coverage.observe(frame.poses)
    rv = st.revisit.observe(st.step, frame.poses[-1], frame.rgb)
    prog, success, task_info = task.progress(st.task, frame)
    reward = weights.coverage * new + weights.progress * prog + weights.step
    if rv is not None:
        reward += weights.revisit * (rv.similarity - st.revisit.config.neutral)
    if success and not st.success:
        reward += weights.success
    st.success = st.success or success
    info = {
        "new_views": new,
        "coverage": len(st.coverage.visited),
        "is_revisit": rv is not None,
        "revisit_psnr": rv.psnr_db if rv else 0.0,  # 0 when this step is not a revisit
        "revisit_similarity": rv.similarity if rv else 0.0,
        "revisit_count": st.revisit.count,
        "revisit_mean_psnr": st.revisit.mean_psnr if st.revisit.count else 0.0,
        "success": success,
        **task_info,
    }
    if task.has_success:  # SB3 reads is_success at episode ends for rollout/success_rate
        info["is_success"] = st.success
    return float(reward), bool(success), info
