"""Camera trajectories (geometry only, no rendering): random walks and the revisit protocols."""

import math
from itertools import groupby

import numpy as np
import pytest

from world_model.engine.navigation import free_space
from world_model.engine.scenes import make_scene
from world_model.engine.trajectories import (
    KINDS,
    Trajectory,
    closed_loop,
    invert_keys,
    make_trajectory,
    min_frames,
    out_and_back,
    random_events,
    random_walk,
    translate_rotate,
)
from world_model.events import EventRecord
from world_model.geometry import KeyMap, Viewpoint, key_trajectory

START = Viewpoint(1.0, 2.0, 1.0, math.radians(30.0), 0.0)
PROTOCOLS = {"out_and_back": out_and_back, "closed_loop": closed_loop, "translate_rotate": translate_rotate}


def same_pose(a: Viewpoint, b: Viewpoint, tol: float = 1e-9) -> bool:
    return (
        abs(a.x - b.x) < tol
        and abs(a.y - b.y) < tol
        and abs(math.remainder(a.yaw - b.yaw, 2 * math.pi)) < tol
        and abs(a.pitch - b.pitch) < tol
    )


def views(traj: Trajectory, start: Viewpoint = START) -> list[Viewpoint]:
    """Viewpoint of every frame: frame 0 is the start (its keys are '')."""
    return key_trajectory(start, traj.keys)


@pytest.mark.parametrize("kind", list(PROTOCOLS))
@pytest.mark.parametrize("n_frames", [160, 256, 301])
def test_revisit_protocols_return_to_the_start_pose(kind, n_frames):
    for seed in range(5):
        traj = PROTOCOLS[kind](np.random.default_rng(seed), n_frames, start=START)
        vs = views(traj)
        assert len(traj) == n_frames and traj.keys[0] == "" and traj.kind == kind
        assert same_pose(vs[0], START) and same_pose(vs[-1], START), (kind, seed)
        assert max(math.hypot(v.x - START.x, v.y - START.y) for v in vs) > 0.5  # it does go somewhere


def test_out_and_back_retraces_every_outbound_pose_in_reverse():
    traj = out_and_back(np.random.default_rng(1), 201, start=START, turn_around=False)
    vs = views(traj)
    for t in range(101):
        assert same_pose(vs[t], vs[200 - t]), t


def test_out_and_back_turning_around_passes_the_same_positions_facing_the_other_way():
    traj = out_and_back(np.random.default_rng(2), 201, start=START, turn_around=True)
    vs = views(traj)
    half = round(180 / KeyMap().yaw_step_deg)
    n_out = (200 - 2 * half) // 2
    assert set(traj.keys[n_out + 1 : n_out + 1 + half]) in ({"J"}, {"L"})
    for t in range(n_out + 1):
        back = vs[200 - half - t]
        assert math.hypot(back.x - vs[t].x, back.y - vs[t].y) < 1e-9
        assert abs(abs(math.remainder(back.yaw - vs[t].yaw, 2 * math.pi)) - math.pi) < 1e-9


def test_closed_loop_laps_a_loop_whose_corners_make_a_full_turn():
    traj = closed_loop(np.random.default_rng(3), 301, start=START)
    vs = views(traj)
    lap = next(t for t in range(1, len(vs)) if same_pose(vs[t], START))
    assert lap >= 4 * 30 + 4  # four 90-degree corners and four legs of at least one frame
    turns = sum(("J" in k) - ("L" in k) for k in traj.keys[1 : lap + 1]) * KeyMap().yaw_step_deg
    assert abs(turns) == 360 and "W" in traj.keys[1 : lap + 1]
    assert same_pose(vs[-1], START)


def test_translate_rotate_rotates_a_full_turn_in_place_then_comes_back():
    traj = translate_rotate(np.random.default_rng(4), 256, start=START)
    vs = views(traj)
    spin = [t for t in range(1, len(vs)) if traj.keys[t] in ("J", "L")]
    first, last = spin[0], spin[0] + 119
    assert spin[:120] == list(range(first, last + 1))
    assert same_pose(vs[first - 1], vs[last])  # the view before the spin reappears after it
    assert len({(round(vs[t].x, 9), round(vs[t].y, 9)) for t in range(first - 1, last + 1)}) == 1
    assert math.hypot(vs[first - 1].x - START.x, vs[first - 1].y - START.y) > 0.05


def test_revisits_stay_in_free_space_of_a_scene():
    for seed in (0, 1, 7):
        spec = make_scene(seed)
        is_free = free_space(spec)
        for kind in KINDS:
            traj = make_trajectory(kind, np.random.default_rng(seed), 256, spec=spec)
            vs = views(traj, traj.start)
            assert is_free(traj.start.x, traj.start.y)
            assert all(is_free(v.x, v.y) for v in vs), (seed, kind)
            if kind != "random":
                assert same_pose(vs[0], vs[-1]), (seed, kind)


def test_random_walks_are_deterministic_per_rng_seed():
    a = random_walk(np.random.default_rng(7), 300, start=START).keys
    assert a == random_walk(np.random.default_rng(7), 300, start=START).keys
    assert a != random_walk(np.random.default_rng(8), 300, start=START).keys
    spec = make_scene(5)
    b = make_trajectory("random", np.random.default_rng(5), 100, spec=spec, event_probability=1.0)
    c = make_trajectory("random", np.random.default_rng(5), 100, spec=spec, event_probability=1.0)
    assert (b.keys, b.events, b.start) == (c.keys, c.events, c.start)


def test_random_walks_hold_keys_mostly_forward_and_keep_the_pitch_near_level():
    traj = random_walk(np.random.default_rng(0), 3000, start=START)
    runs = [len(list(g)) for _, g in groupby(traj.keys[1:])]
    assert 3.0 < np.mean(runs) < 12.0
    forward = np.mean(["W" in k for k in traj.keys])
    turning = np.mean([("J" in k) or ("L" in k) for k in traj.keys])
    strafing = np.mean([("A" in k) or ("D" in k) for k in traj.keys])
    pitching = np.mean([("I" in k) or ("K" in k) for k in traj.keys])
    assert forward > 0.4 and turning > 0.2 and 0.02 < strafing < forward and 0.01 < pitching < 0.3
    pitch = np.degrees([v.pitch for v in views(traj)])
    assert np.abs(pitch).max() <= 30.0 + 1e-9 and np.mean(np.abs(pitch) < 1e-9) > 0.3


def test_inverse_keys_undo_translations_and_rotations():
    for keys in ["W", "SA", "WD", "J", "L", "I", "KJ"]:
        there = key_trajectory(START, [keys])[0]
        assert same_pose(key_trajectory(there, [invert_keys(keys)])[0], START), keys


def test_random_events_follow_the_probability_and_stay_inside_the_trajectory():
    assert random_events(np.random.default_rng(0), 50, 0.0) == {}
    for seed in range(20):
        events = random_events(np.random.default_rng(seed), 50, 1.0)
        assert 1 <= len(events) <= 2
        assert all(
            1 <= t < 50 and records and isinstance(records[0], EventRecord) for t, records in events.items()
        )


def test_bad_requests_fail_with_what_to_do():
    with pytest.raises(ValueError, match="choose one of"):
        make_trajectory("spiral", np.random.default_rng(0), 50)
    with pytest.raises(ValueError, match=f"at least {min_frames('closed_loop')} frames"):
        closed_loop(np.random.default_rng(0), 100)
    with pytest.raises(ValueError, match="must divide"):
        closed_loop(np.random.default_rng(0), 300, keymap=KeyMap(yaw_step_deg=7.0))
    with pytest.raises(ValueError, match="keys\\[0\\]"):
        Trajectory(["W", "W"])
    with pytest.raises(ValueError, match="outside"):
        Trajectory(["", "W"], events={5: []})
