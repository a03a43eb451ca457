"""The learned camera keeps clear of the objects it has seen, as the engine's keeps clear of footprints."""

import numpy as np
import pytest

import world_model.model.native as kernels
from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.model.collision import (
    OBSTACLE_RADIUS_M,
    RECENT_FRAMES,
    obstacle_points,
    obstacle_points_many,
    remember,
    slide,
    slide_many,
)
from world_model.semantics import CLASS_ID

INTR = Intrinsics.from_fov(32, 32, 70.0)
CAMERA = pose_from_yaw_pitch(np.array([1.0, 2.0, 1.0]), 0.0, 0.0)  # at (1, 2), looking along +x


def _facing(label: str, distance_m: float = 0.5) -> np.ndarray:
    """Obstacle points of a frame filled by a ``label`` surface ``distance_m`` ahead of ``CAMERA``."""
    depth = np.full((32, 32), distance_m, np.float32)
    semantic = np.full((32, 32), CLASS_ID[label], np.uint8)
    return obstacle_points(depth, semantic, CAMERA, INTR)


def test_object_points_sit_where_the_depth_puts_them():
    points = _facing("box")
    assert len(points) > 100 and np.allclose(points[:, 0], 1.5, atol=1e-6)  # 0.5 m ahead, along +x
    assert abs(np.median(points[:, 1]) - 2.0) < 0.05
    assert len(_facing("wall")) == len(_facing("floor")) == 0  # the bounds keep the camera off walls
    depth = np.full((32, 32), np.inf, np.float32)
    assert len(obstacle_points(depth, np.full((32, 32), CLASS_ID["box"], np.uint8), CAMERA, INTR)) == 0


def test_a_move_into_an_object_stays_and_a_move_past_it_slides():
    points, start = _facing("box"), CAMERA[:2, 3]
    assert np.allclose(slide(start, start + [0.3, 0.0], points), start)  # walking into it: stays
    assert np.allclose(slide(start, start + [-0.3, 0.0], points), start + [-0.3, 0.0])  # backing off
    assert np.allclose(slide(start, start + [0.0, 0.3], points), start + [0.0, 0.3])  # strafing along it
    assert np.allclose(slide(start, start + [0.3, 0.3], points), start + [0.0, 0.3])  # diagonal: slides
    assert np.allclose(slide(start, start + [0.1, 0.0], points), start + [0.1, 0.0])  # still clear of it
    assert 0.5 - 0.1 > OBSTACLE_RADIUS_M > 0.5 - 0.3


def test_a_camera_already_too_close_may_leave_but_not_go_deeper():
    points, start = _facing("table", distance_m=0.2), CAMERA[:2, 3]
    assert np.allclose(slide(start, start + [0.1, 0.0], points), start)
    assert np.allclose(slide(start, start + [-0.2, 0.0], points), start + [-0.2, 0.0])


def test_only_recent_frames_are_remembered():
    frames = ()
    for i in range(RECENT_FRAMES + 3):
        frames = remember(frames, np.full((1, 2), float(i)))
    assert len(frames) == RECENT_FRAMES and frames[-1][0, 0] == RECENT_FRAMES + 2 and frames[0][0, 0] == 3


needs_compiler = pytest.mark.skipif(kernels._compiler() is None, reason="no C compiler on this machine")


def _random_frames(rng, b=6):
    """Frames of random object and other labels at random depths (sky, zero and NaN included), seen from
    random cameras around the room."""
    depth = rng.uniform(0.05, 6.0, (b, 32, 32)).astype(np.float32)
    depth[0, :4], depth[1, :, :3], depth[2, 7] = np.inf, 0.0, np.nan
    semantic = rng.choice([CLASS_ID["box"], CLASS_ID["table"], CLASS_ID["wall"]], (b, 32, 32)).astype(
        np.uint8
    )
    poses = np.stack(
        [
            pose_from_yaw_pitch(
                np.array([*rng.uniform(-3, 3, 2), 1.0]), rng.uniform(-3, 3), rng.uniform(-0.6, 0.6)
            )
            for _ in range(b)
        ]
    )
    return depth, semantic, poses


@needs_compiler
def test_the_c_obstacle_points_are_the_numpy_reference_bit_for_bit():
    depth, semantic, poses = _random_frames(np.random.default_rng(1))
    semantic[3] = CLASS_ID["wall"]  # a frame with no obstacle at all
    assert kernels.available()
    got = obstacle_points_many(depth, semantic, poses, INTR)
    ref = obstacle_points_many(depth, semantic, poses, INTR, use_native=False)
    assert len(got) == len(ref) == len(depth) and len(got[3]) == 0
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))
    assert all(len(a) > 50 for i, a in enumerate(got) if i != 3)  # both kinds of frames were there
    one = [obstacle_points(depth[i], semantic[i], poses[i], INTR) for i in range(len(depth))]
    assert all(np.array_equal(a, b) for a, b in zip(got, one, strict=True))  # batched: as one by one
    assert obstacle_points_many(depth[:0], semantic[:0], poses[:0], INTR) == []
    with pytest.raises(ValueError, match="pixels for a 32x32 camera"):
        obstacle_points_many(depth[:, :16], semantic[:, :16], poses, INTR)


@needs_compiler
def test_the_c_moves_are_the_numpy_reference_bit_for_bit():
    """Moves near and far from obstacles, blocked, sliding and standing still, each among the points of its
    own recent frames (none for some): the C kernel stops where ``slide`` does."""
    rng = np.random.default_rng(2)
    depth, semantic, poses = _random_frames(rng, b=12)
    depth = np.minimum(depth, 1.0)  # close surfaces: many moves are blocked or slide
    frames = obstacle_points_many(depth, semantic, poses, INTR)
    at = rng.integers(0, len(frames), 300)  # each move starts near one of the cameras
    recent = [tuple(frames[i : i + rng.integers(0, 4)]) for i in at]
    starts = poses[at, :2, 3] + rng.normal(0, 0.2, (len(at), 2))
    targets = starts + rng.choice([-0.3, 0.0, 0.3], (len(at), 2))
    got = slide_many(starts, targets, recent)
    ref = slide_many(starts, targets, recent, use_native=False)
    assert np.array_equal(got, ref)
    moves = zip(starts, targets, recent, strict=True)
    one = [slide(s, t, np.concatenate([*r, np.empty((0, 2))])) for s, t, r in moves]
    assert np.array_equal(got, np.stack(one))
    outcomes = (got == targets).all(1), (got == starts).all(1) & (targets != starts).any(1)
    assert outcomes[0].any() and outcomes[1].any() and (~outcomes[0] & ~outcomes[1]).any()  # slid too
    with pytest.raises(ValueError, match=r"need starts and targets \[B=300, 2\]"):
        slide_many(starts[:3], targets[:3], recent)
