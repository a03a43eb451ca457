"""Actions -> keys -> poses: batched motion equals the geometry module's; bad actions name their space."""

import math

import numpy as np
import pytest

from dreamx_env.envs.actions import DISCRETE_KEYS, ActionMapper, chunk_poses, level_pose
from world_model.events import EVENT_MENU
from world_model.geometry import LOOK_COMBOS, MOVE_COMBOS, KeyMap, Viewpoint, key_trajectory


@pytest.mark.parametrize("pitch_deg", [0.0, 25.0, 58.0])
def test_batched_chunk_matches_geometry_key_trajectory(pitch_deg):
    keymap = KeyMap()
    start = Viewpoint(0.3, -1.2, 1.1, 2.5, math.radians(pitch_deg))
    mapper = ActionMapper("multi", keymap)
    actions = np.array([[m, lk] for m in range(len(MOVE_COMBOS)) for lk in range(len(LOOK_COMBOS))])
    deltas, events = mapper.decode(actions)
    got = chunk_poses(np.repeat(start.pose()[None], len(actions), 0), deltas, 4, keymap)
    for a, poses in zip(actions, got, strict=True):
        keys = MOVE_COMBOS[a[0]] + LOOK_COMBOS[a[1]]
        want = np.stack([v.pose() for v in key_trajectory(start, [keys] * 4, keymap)])
        assert np.allclose(poses, want, atol=1e-12), keys
    assert not events.any()


def test_level_pose_removes_round_off():
    pose = Viewpoint(1, 2, 1.2, 0.7, 0.2).pose()
    noisy = pose.copy()
    noisy[:3, :3] *= 1 + 1e-5
    fixed = level_pose(noisy[None])[0]
    assert np.allclose(fixed, pose, atol=1e-4)
    assert np.allclose(fixed[:3, :3].T @ fixed[:3, :3], np.eye(3), atol=1e-12)


def test_discrete_and_continuous_mappings():
    keymap = KeyMap()
    discrete = ActionMapper("discrete", keymap, event_actions=True)
    assert discrete.space.n == len(DISCRETE_KEYS) + len(EVENT_MENU) - 1
    deltas, events = discrete.decode(np.array([1, len(DISCRETE_KEYS)]))
    assert np.allclose(deltas[0], [0.1, 0, 0, 0]) and events[0] == 0
    assert np.allclose(deltas[1], 0) and EVENT_MENU[events[1]] == "lights off"
    cont = ActionMapper("continuous", keymap)
    deltas, _ = cont.decode(np.array([[1.0, -0.5, 1.0, 0.0]], np.float32))
    assert np.allclose(deltas[0], [0.1, -0.05, math.radians(3), 0.0])
    assert ActionMapper("discrete", keymap).space.n == len(DISCRETE_KEYS)  # events are off by default
    assert ActionMapper("multi", keymap).space.shape == (2,)
    multi = ActionMapper("multi", keymap, event_actions=True)
    assert multi.space.shape == (3,) and EVENT_MENU[multi.decode(np.array([0, 0, 1]))[1][0]] == "lights off"


@pytest.mark.parametrize(
    "action_set, bad, space",
    [
        ("multi", [9, 0], "MultiDiscrete"),
        ("multi", [1, 2, 0], "MultiDiscrete"),
        ("multi", [0.5, 0], "MultiDiscrete"),
        ("discrete", 11, "Discrete(11)"),
        ("discrete", -1, "Discrete(11)"),
        ("discrete", True, "Discrete(11)"),
        ("continuous", [2.0, 0, 0, 0], "Box"),
        ("continuous", [np.nan, 0, 0, 0], "Box"),
        ("continuous", [0, 0, 0], "Box"),
        ("continuous", "W", "Box"),
    ],
)
def test_invalid_actions_raise_value_error_naming_the_space(action_set, bad, space):
    mapper = ActionMapper(action_set, KeyMap())
    with pytest.raises(ValueError, match=f"action space {space}".replace("(", r"\(").replace(")", r"\)")):
        mapper.check(bad)
    mapper.check(mapper.space.sample())


def test_unknown_action_set():
    with pytest.raises(ValueError, match="action_set must be one of"):
        ActionMapper("joystick", KeyMap())
