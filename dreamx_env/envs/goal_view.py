"""DreamX/GoalView-v0: reach the viewpoint shown in a goal image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from dreamx_env.envs.base import DreamXEnv, DreamXVectorEnv
from dreamx_env.envs.task import Frame, RewardConfig, Task
from world_model.backend import SceneInfo
from world_model.geometry import Viewpoint, rotation_angle_deg


@dataclass
class GoalViewConfig:
    success_dist_m: float = 0.3
    success_angle_deg: float = 15.0
    angle_weight_m: float = 0.5  # metres of distance per radian of viewing-direction error
    goal_pose_obs: bool = False  # also observe where the goal is from the camera ("goal_pose")


# The "goal_pose" observation: the goal's position from the camera on the floor plane, in metres along the
# camera's heading and to its left, and how far the goal view is turned (yaw, as its sine and cosine) and
# tilted (pitch, radians) from the camera's. What a robot's odometry and a known goal give (PointGoal).
GOAL_POSE_FIELDS = ("ahead_m", "left_m", "sin_yaw", "cos_yaw", "pitch_rad")
GOAL_POSE_BOUND = np.array([100.0, 100.0, 1.0, 1.0, math.pi], np.float32)  # no scene is 100 m across


def goal_from_camera(camera: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """The goal pose ``goal [4, 4]`` seen from the camera pose ``camera [4, 4]``, as ``GOAL_POSE_FIELDS``."""
    cam, aim = Viewpoint.from_pose(camera), Viewpoint.from_pose(goal)
    dx, dy = aim.x - cam.x, aim.y - cam.y
    cy, sy = math.cos(cam.yaw), math.sin(cam.yaw)
    turn = aim.yaw - cam.yaw
    return np.array(
        [dx * cy + dy * sy, -dx * sy + dy * cy, math.sin(turn), math.cos(turn), aim.pitch - cam.pitch],
        np.float32,
    )


class GoalViewTask(Task):
    name = "goal_view"
    starts_from_images = False  # a user image has no known goal views or objects
    has_success = True
    default_reward = RewardConfig(progress=1.0, success=10.0, step=-0.01)

    def observation_spaces(self) -> dict[str, spaces.Space]:
        out: dict[str, spaces.Space] = {"goal": spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)}
        if self.config.goal_pose_obs:
            out["goal_pose"] = spaces.Box(-GOAL_POSE_BOUND, GOAL_POSE_BOUND, dtype=np.float32)
        return out

    def scene_request(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"view_goal": int(rng.integers(0, 2**16))}  # the server renders goal_poses[i % G]

    def _errors(self, st: dict, pose: np.ndarray) -> tuple[float, float]:
        dist = float(np.linalg.norm(pose[:3, 3] - st["pose"][:3, 3]))
        return dist, rotation_angle_deg(pose[:3, :3], st["pose"][:3, :3])

    def _distance(self, dist: float, angle_deg: float) -> float:
        return dist + self.config.angle_weight_m * np.radians(angle_deg)

    def begin(self, scene: SceneInfo, frame: Frame, view: np.ndarray | None, request: dict, rng: Any) -> dict:
        goal = scene.goal_poses[request["view_goal"] % len(scene.goal_poses)]
        st = {"pose": goal, "image": np.asarray(view, np.uint8).copy(), "camera": frame.poses[-1].copy()}
        st["distance"] = self._distance(*self._errors(st, frame.poses[-1]))
        return st

    def progress(self, st: dict, frame: Frame) -> tuple[float, bool, dict[str, float]]:
        dist, angle = self._errors(st, frame.poses[-1])
        d = self._distance(dist, angle)
        gained, st["distance"] = st["distance"] - d, d
        st["camera"] = frame.poses[-1].copy()
        success = dist <= self.config.success_dist_m and angle <= self.config.success_angle_deg
        return gained, success, {"goal_distance_m": dist, "goal_angle_deg": angle}

    def observe(self, st: dict) -> dict[str, np.ndarray]:
        out = {"goal": st["image"].copy()}
        if self.config.goal_pose_obs:
            out["goal_pose"] = goal_from_camera(st["camera"], st["pose"])
        return out


class GoalViewEnv(DreamXEnv):
    """
    ## Description

    The camera starts somewhere in a generated world and is shown a picture taken from another viewpoint
    of the same world (one of the scene's goal poses). Reach that viewpoint. Frames come from the
    world-model backend over ZeroMQ, exactly as in :class:`~dreamx_env.envs.explore.ExploreEnv`, whose
    docstring documents the shared arguments, action sets and events.

    ## Action Space

    As ExploreEnv: ``MultiDiscrete([9, 9])`` (move, look) by default, ``MultiDiscrete([9, 9, 9])`` (move,
    look, event) with ``event_actions=True``; ``action_set="discrete"`` or ``"continuous"``. An action
    outside the space raises ``ValueError`` naming the space.

    ## Observation Space

    ``Dict(rgb=Box(0, 255, (H, W, 3), uint8), goal=Box(0, 255, (H, W, 3), uint8))`` (+ ``depth``,
    ``semantic`` with ``obs_keys``). With ``goal_pose_obs=True``, also ``goal_pose``, 5 float32 in
    ``Box(-GOAL_POSE_BOUND, GOAL_POSE_BOUND)``: where the goal is from the camera (metres ahead and to the
    left on the floor plan, the sine and cosine of the goal view's yaw from the camera's, and its pitch
    difference in radians), as a robot's odometry would give it (PointGoal navigation); the goal image
    stays. Use SB3's ``MultiInputPolicy``.

    ## Rewards

    ``progress`` (1.0) x the decrease of ``distance = |Δposition| + angle_weight_m x viewing-angle error
    (rad)``, ``success`` (10.0) on reaching the goal, ``step`` (-0.01) per step; ``coverage`` and
    ``revisit`` terms are available with weight 0 by default. Set with ``reward={...}``.

    ## Starting State

    The scene's start pose; the goal is drawn from the scene's goal poses with the reset seed.

    ## Episode End

    Terminates when within ``success_dist_m`` (0.3 m) and ``success_angle_deg`` (15°) of the goal;
    truncated after ``max_episode_steps`` (200 with ``gymnasium.make``).

    ## Information

    As ExploreEnv, plus ``goal_distance_m``, ``goal_angle_deg``, ``success`` (this step reached the goal)
    and ``is_success`` (the episode has succeeded; SB3 logs it as ``rollout/success_rate``).

    ## Arguments

    As ExploreEnv, plus ``success_dist_m``, ``success_angle_deg``, ``angle_weight_m`` and ``goal_pose_obs``.

    ## Version History

    * v0: Initial version.
    """

    task_cls, task_config_cls = GoalViewTask, GoalViewConfig


class GoalViewVectorEnv(DreamXVectorEnv):
    """Native vector version of :class:`GoalViewEnv` (one server call per step; see ExploreVectorEnv)."""

    task_cls, task_config_cls = GoalViewTask, GoalViewConfig
