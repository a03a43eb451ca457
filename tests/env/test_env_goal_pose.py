"""GoalView's goal_pose observation: where the goal is from the camera, kept up to date every step."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dreamx_env.envs.goal_view import GOAL_POSE_FIELDS, goal_from_camera
from dreamx_env.planning import relocate
from world_model.geometry import pose_from_yaw_pitch


def test_goal_from_camera_is_in_the_camera_heading_frame():
    camera = pose_from_yaw_pitch(np.array([1.0, 2.0, 1.0]), np.pi / 2, 0.0)  # facing +y
    goal = pose_from_yaw_pitch(np.array([0.0, 5.0, 1.0]), np.pi, 0.2)  # 3 m ahead, 1 m to the left
    ahead, left, sin_yaw, cos_yaw, pitch = goal_from_camera(camera, goal)
    assert (ahead, left) == pytest.approx((3.0, 1.0), abs=1e-6)
    assert (sin_yaw, cos_yaw, pitch) == pytest.approx((1.0, 0.0, 0.2), abs=1e-6)  # turned 90 deg left
    assert goal_from_camera(goal, goal) == pytest.approx([0, 0, 0, 1, 0], abs=1e-6)


def test_the_observation_follows_the_camera_and_reads_zero_at_the_goal(make):
    env = make("DreamX/GoalView-v0", goal_pose_obs=True)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs["goal_pose"].shape == (len(GOAL_POSE_FIELDS),) and obs["goal_pose"].dtype == np.float32
    core = env.unwrapped.core
    goal = core.states[0].task["pose"]
    planar = float(np.hypot(*(goal[:2, 3] - info["pose"][:2, 3])))
    assert float(np.hypot(*obs["goal_pose"][:2])) == pytest.approx(planar, abs=1e-4)
    obs, *_, info = env.step(np.array([1, 0]))  # a move: the goal's offset changes with the camera
    assert obs["goal_pose"] == pytest.approx(goal_from_camera(info["pose"], goal), abs=1e-5)
    relocate(env, goal)  # standing at the goal view
    assert env.unwrapped.core.task.observe(core.states[0].task)["goal_pose"] == pytest.approx(
        [0, 0, 0, 1, 0], abs=1e-4
    )
    assert "goal_pose" not in make("DreamX/GoalView-v0").reset(seed=3)[0]  # off by default
