from dataclasses import replace

import numpy as np
import pytest

from world_model.events import parse_prompt
from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.model.world_state import SLIDE_M, VACATED_MARGIN_M, WorldState
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


def test_the_target_is_the_object_whose_centre_is_nearest_as_the_engine_picks():
    semantic, depth = FLOOR.copy(), EMPTY_DEPTH.copy()
    semantic[30:40, 10:30], depth[30:40, 10:30] = (
        CLASS_ID["box"],
        1.8,
    )  # a wide box: near face 1.8 m, centre ~2.2
    semantic[30:34, 40:44], depth[30:34, 40:44] = CLASS_ID["ball"], 2.0  # a small ball, centre ~2.1 m
    semantic[5, 5], depth[5, 5] = CLASS_ID["ball"], 0.5  # a speck nearer still is no object
    s = _apply(WorldState(), "paint the nearest object green", semantic, depth)
    assert s.props[0].center[1] < 1.0  # right of the view's centre: the ball
    assert _apply(WorldState(), "paint the nearest box green", semantic, depth).props[0].center[1] > 1.0


def test_a_push_tips_what_stands_tall_and_slides_what_is_squat():
    semantic, depth = FLOOR.copy(), EMPTY_DEPTH.copy()
    semantic[20:40, 30:34], depth[20:40, 30:34] = CLASS_ID["cylinder"], 2.0  # 0.18 m wide, 1.5 m tall
    (tipped,) = _apply(WorldState(), "push the nearest cylinder", semantic, depth).props
    # on its side (resting on its radius), over its far edge and rolled on: TIPPED_ROLL x (its radius plus
    # its half height) further on
    assert tipped.center[2] == pytest.approx(tipped.radius) and tipped.center[0] > 3.0 + 0.3
    semantic, depth = FLOOR.copy(), EMPTY_DEPTH.copy()
    semantic[34:40, 20:44], depth[34:40, 20:44] = CLASS_ID["cylinder"], 2.0  # 1 m wide, 0.9 m tall
    state = _apply(WorldState(), "push the nearest cylinder", semantic, depth)
    (slid,), (left,) = state.props, state.vacated
    # upright (as tall as its top, which the camera saw) and SLIDE_M further away, the way it was pushed
    top = left.top - VACATED_MARGIN_M
    assert slid.center[2] == pytest.approx(top / 2) and slid.half_height == pytest.approx(top / 2)
    assert slid.center[0] - left.center[0] == pytest.approx(SLIDE_M)
    assert slid.center[1] == pytest.approx(left.center[1])


def test_a_pushed_table_is_drawn_as_its_top_and_legs():
    semantic, depth = FLOOR.copy(), EMPTY_DEPTH.copy()
    semantic[30:40, 16:48], depth[30:40, 16:48] = CLASS_ID["table"], 2.0
    (table,) = _apply(WorldState(), "push the nearest table", semantic, depth).props
    assert table.shape == "table"
    mask = WorldState(props=(table,)).hints(POSE[None], INTR)[0, 3] > 0
    as_box = WorldState(props=(replace(table, shape="box"),)).hints(POSE[None], INTR)[0, 3] > 0
    assert mask.any() and (mask <= as_box).all()  # within the solid box's outline, and less of it:
    assert mask.sum() < 0.7 * as_box.sum()  # the floor shows between the legs, under the top


def test_the_version_changes_only_when_the_lights_or_the_door_change():
    # memories of an older version are replaced by newer views of the same place: props are drawn from the
    # state in every view, so a drop or paint must not make every remembered place stale
    semantic, depth = FLOOR.copy(), EMPTY_DEPTH.copy()
    semantic[33:36, 20:44], depth[33:36, 20:44] = CLASS_ID["box"], 2.0  # a push slides it
    s = _apply(WorldState(), "drop a red ball")
    s = _apply(s, "paint the nearest box green", semantic, depth)
    s = _apply(s, "push the nearest box", semantic, depth)
    assert s.version == 0 and len(s.props) == 3
    dark = _apply(s, "lights off")
    assert dark.version == 1
    assert _apply(dark, "lights off").version == 1  # already off: nothing changed
    assert _apply(dark, "open the door").version == 2


def test_a_box_is_drawn_as_the_outline_of_its_corners():
    s = _apply(WorldState(), "drop a blue box")  # 1.5 m ahead, 0.3 m cube on the floor
    mask = s.hints(POSE[None], INTR)[0, 3] > 0
    rows, cols = np.nonzero(mask)
    assert 100 < mask.sum() < 200  # the engine draws this box in 126-145 pixels from its start views
    assert abs(cols.mean() - 31.5) < 1.0 and rows.min() > 32  # centred, below the horizon
    # its top face shows from eye height: taller on screen than its front face alone would be
    front_rows = INTR.fy * 0.3 / 1.35
    assert rows.max() - rows.min() + 1 > front_rows


def test_a_push_redraws_a_ball_further_on_and_memory_forgets_where_it_was():
    import torch

    from world_model.geometry import unproject
    from world_model.model.memory import MemoryBank, MemoryEntry
    from world_model.model.reproject import view_points

    semantic, depth = FLOOR.copy(), EMPTY_DEPTH.copy()
    semantic[28:36, 28:36], depth[28:36, 28:36] = CLASS_ID["ball"], 2.0  # a ball 2 m ahead, about 0.4 m wide
    rgb = np.full((64, 64, 3), 0.5, np.float32)
    rgb[28:36, 28:36] = (0.9, 0.1, 0.1)
    s = WorldState().apply(parse_prompt("push the nearest ball")[0], POSE, depth, semantic, INTR, None, rgb)
    (ball,), (gone,) = s.props, s.vacated
    assert ball.shape == "ball" and ball.color == pytest.approx((0.9, 0.1, 0.1))
    assert 0.15 < ball.radius < 0.3 and ball.center[2] == pytest.approx(ball.radius)
    seen_at = unproject(depth, POSE, INTR)[32, 32]
    assert ball.center[0] - seen_at[0] > 0.9 and abs(ball.center[1] - seen_at[1]) < 0.05  # rolled away
    assert gone.center[0] - seen_at[0] == pytest.approx(ball.radius) and gone.radius > ball.radius
    hint = s.hints(POSE[None], INTR)[0, 3] > 0
    assert 0 < hint.sum() < 64  # drawn smaller, further off
    push = parse_prompt("push the nearest ball")[0]
    walled = WorldState().apply(push, POSE, depth, semantic, INTR, (0.0, 0.0, 4.5, 2.0), rgb).props[0]
    assert walled.center[0] == pytest.approx(4.5 - walled.radius - 0.05)  # it rolls on until the wall
    # a box slides, upright, as the engine's push moves it
    squat, at = FLOOR.copy(), EMPTY_DEPTH.copy()
    squat[34:36, 16:48], at[34:36, 16:48] = CLASS_ID["box"], 2.0
    (box,) = WorldState().apply(parse_prompt("push the nearest box")[0], POSE, at, squat, INTR).props
    assert box.shape == "box" and box.center[2] == pytest.approx(box.half_height)

    bank = MemoryBank()
    t = torch.from_numpy(depth)
    bank.add(
        MemoryEntry(
            torch.zeros(3, 64, 64), t, t * 0, POSE, 0, True, False, 0, view_points(depth, POSE, INTR)
        ),
        INTR,
    )
    fork = bank.copy()
    bank.forget(gone.center, gone.radius, gone.top, INTR)
    forgotten = bank.latest.depth.numpy() == 0
    assert forgotten[28:36, 28:36].all() and forgotten.sum() == 64  # the ball's pixels, nothing else
    assert (
        bank.keyframes[0] is bank.latest and (fork.latest.depth.numpy() == depth).all()
    )  # forks keep theirs
