"""dreamx-play headless with a loaded policy (P hands control over and back) and the ground truth beside."""

import subprocess

import cv2
import numpy as np
import pytest
import torch

from agents.policies import PolicyCard
from agents.viewer import Viewer, ViewerConfig
from world_model.geometry import MOVE_COMBOS


@pytest.fixture(scope="module")
def forward_policy(tmp_path_factory):
    """A PPO policy on Explore whose greedy action is always (W, no look, no event), with its card."""
    from stable_baselines3 import PPO

    from dreamx_env.sb3 import make_sb3_env

    env = make_sb3_env("DreamX/Explore-v0", 1, backend="constant", server="thread", event_actions=True)
    model = PPO("CnnPolicy", env, n_steps=8, batch_size=8, device="cpu")
    env.close()
    with torch.no_grad():
        head = model.policy.action_net  # logits of MultiDiscrete([9, 9, 9]), concatenated
        head.weight.zero_()
        head.bias.fill_(-10.0)
        for index in (MOVE_COMBOS.index("W"), 9 + 0, 18 + 0):
            head.bias[index] = 10.0
    folder = tmp_path_factory.mktemp("forward")
    model.save(folder / "policy.zip")
    PolicyCard("ppo", "DreamX/Explore-v0", "constant", "CnnPolicy", {"frames_per_step": 1}).save(folder)
    return folder / "policy.zip"


def _yaw(pose):
    return np.degrees(np.arctan2(pose[1, 2], pose[0, 2]))


def test_p_hands_control_to_the_policy_and_back(oracle_server, forward_policy):
    # P: the policy drives for 6 frames (the human's L is ignored), P again: the human holds nothing
    script = "P,L*5,P,-*3"
    config = ViewerConfig(
        backend="oracle", server=oracle_server, seed=2, script=script, fps=0, window=128,
        policy=str(forward_policy), max_frames=10,
    )  # fmt: skip
    summary = Viewer(config).run()
    assert summary["frames"] == 10 and summary["policy_frames"] == 6
    assert summary["policy"] == "ppo policy.zip"
    xy = summary["positions"][:, :2]  # the reset pose, then one per frame
    assert np.linalg.norm(xy[6] - xy[0]) > 0.4  # walked forward 6 x 0.1 m under the policy ...
    assert abs(_yaw(summary["final_pose"]) - _yaw(summary["start_pose"])) < 1e-3  # ... without turning
    assert np.allclose(xy[7:], xy[6])  # back to the human, who holds no key


def test_policy_starts_in_control_and_a_wrong_env_fails_clearly(oracle_server, forward_policy):
    config = ViewerConfig(
        backend="oracle", server=oracle_server, seed=2, script="-*3", fps=0, window=128,
        policy=str(forward_policy), policy_control=True, max_frames=3,
    )  # fmt: skip
    summary = Viewer(config).run()
    steps = np.linalg.norm(np.diff(summary["positions"][:, :2], axis=0), axis=1)
    assert summary["policy_frames"] == 3 and steps.min() > 0.05  # every frame moved
    wrong = ViewerConfig(env_id="DreamX/GoalView-v0", backend="constant", policy=str(forward_policy))
    with pytest.raises(ValueError, match="the policy observes"):
        Viewer(wrong)


def test_ground_truth_side_by_side_follows_the_same_actions_and_events(oracle_server, tmp_path):
    shot = tmp_path / "side.png"
    config = ViewerConfig(
        backend="oracle", server=oracle_server, truth=True, truth_server=oracle_server, seed=2,
        script="W*4,J*3,3,T:turn the lights off,-", fps=0, window=200, screenshot=str(shot),
    )  # fmt: skip
    summary = Viewer(config).run()
    assert np.allclose(summary["truth_final_pose"], summary["final_pose"])  # same scene, same actions
    assert np.linalg.norm(summary["final_pose"][:2, 3] - summary["start_pose"][:2, 3]) > 0.2
    image = cv2.imread(str(shot))
    assert image.shape == (200, 400, 3)
    # below the HUD, left of the minimap: the same pixels in both panels
    left, right = image[135:175, :120].astype(int), image[135:175, 200:320].astype(int)
    assert left.std() > 1 and np.abs(left - right).max() <= 2  # the lights went off on both sides


def test_dreamx_play_cli_with_a_policy(forward_policy, tmp_path):
    shot = tmp_path / "cli.png"
    proc = subprocess.run(
        ["dreamx-play", "--headless", "--backend", "constant", "--policy", str(forward_policy), "--script",
         "P,-*3", "--fps", "0", "--screenshot", str(shot)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 frames" in proc.stdout and shot.is_file()
