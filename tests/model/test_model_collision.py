"""The learned camera keeps clear of the objects it has seen, as the engine's keeps clear of footprints."""

import numpy as np

from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.model.collision import OBSTACLE_RADIUS_M, RECENT_FRAMES, obstacle_points, remember, slide
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
