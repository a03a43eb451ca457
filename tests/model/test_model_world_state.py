import numpy as np
import pytest

from world_model.events import parse_prompt
from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.model.world_state import WorldState
from world_model.semantics import CLASS_ID

INTR = Intrinsics.from_fov(64, 64, 70.0)
POSE = pose_from_yaw_pitch(np.array([1.0, 1.0, 1.0]), 0.0, 0.0)  # looking along +x
EMPTY_DEPTH = np.full((64, 64), 5.0, np.float32)
FLOOR = np.full((64, 64), CLASS_ID["floor"], np.uint8)


def _apply(state, prompt, semantic=FLOOR, depth=EMPTY_DEPTH, bounds=None):
    for ev in parse_prompt(prompt):
        state = state.apply(ev, POSE, depth, semantic, INTR, bounds)
    return state


def test_lights_and_door_are_persistent_state_bits():
    s = _apply(WorldState(), "turn the lights off and open the door")
    assert list(s.vector()) == [-1.0, 1.0] and s.version == 2
    assert list(_apply(s, "lights on").vector()) == [1.0, 1.0]


def test_a_dropped_ball_lands_ahead_inside_the_bounds_and_shows_from_any_view():
    s = _apply(WorldState(), "drop a red ball 2 m ahead")
    (ball,) = s.props
    assert ball.center == pytest.approx((3.0, 1.0, 0.15))
    clipped = _apply(WorldState(), "drop a red ball 2 m ahead", bounds=(0.0, 0.0, 2.0, 2.0)).props[0]
    assert clipped.center[0] == pytest.approx(2.0 - 0.2)
    hints = s.hints(POSE[None], INTR)[0]
    cy, cx = np.argwhere(hints[3] > 0).mean(axis=0)
    assert abs(cx - 32) < 2 and cy > 32  # straight ahead, below the horizon
    assert np.allclose(hints[0:3, hints[3] > 0].T, [0.85 * 2 - 1, 0.12 * 2 - 1, 0.10 * 2 - 1], atol=1e-6)
    behind = pose_from_yaw_pitch(np.array([1.0, 1.0, 1.0]), np.pi, 0.0)
    assert not s.hints(behind[None], INTR)[0, 3].any()


def test_paint_targets_the_nearest_object_pixel_and_needs_one_in_view():
    with pytest.raises(ValueError, match="no object in view"):
        _apply(WorldState(), "paint the nearest object green")
    semantic, depth = FLOOR.copy(), EMPTY_DEPTH.copy()
    semantic[30:34, 30:34] = CLASS_ID["box"]
    depth[30:34, 30:34] = 2.0
    s = _apply(WorldState(), "paint the nearest box green", semantic, depth)
    assert s.props[0].kind == "paint" and s.props[0].center[0] == pytest.approx(3.0, abs=0.05)
    assert s.hints(POSE[None], INTR)[0, 4, 32, 32] == 1.0
    semantic[10:14, 10:14], depth[10:14, 10:14] = CLASS_ID["ball"], 1.0  # a nearer ball
    named = _apply(WorldState(), "paint box#3 green", semantic, depth)  # the nearest box, not the ball
    assert named.props[0].center == pytest.approx(s.props[0].center)
