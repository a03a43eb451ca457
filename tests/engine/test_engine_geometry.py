"""Camera geometry (pure numpy): key map, poses, intrinsics, projection and reprojection."""

import math

import numpy as np
import pytest

from world_model.geometry import (
    Intrinsics,
    KeyMap,
    Viewpoint,
    apply_deltas,
    invert_pose,
    key_deltas,
    key_trajectory,
    parse_keys,
    pixel_rays,
    pose_from_yaw_pitch,
    project,
    reproject,
    rotation_angle_deg,
    step_keys,
    unproject,
    unproject_many,
    yaw_pitch,
)

START = Viewpoint(1.0, 2.0, 1.0, math.radians(30.0), 0.0)


def _heading(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw), math.sin(yaw)])


def test_w_and_s_move_a_tenth_of_a_metre_along_the_heading():
    for keys, sign in (("W", 1), ("S", -1)):
        v = step_keys(START, keys)
        assert np.allclose([v.x - START.x, v.y - START.y], sign * 0.10 * _heading(START.yaw), atol=1e-12)
        assert (v.z, v.yaw, v.pitch) == (START.z, START.yaw, START.pitch)


def test_d_strafes_right_and_a_left():
    right = np.array([math.sin(START.yaw), -math.cos(START.yaw)])  # heading turned clockwise from above
    d, a = step_keys(START, "D"), step_keys(START, "A")
    assert np.allclose([d.x - START.x, d.y - START.y], 0.10 * right, atol=1e-12)
    assert np.allclose([a.x - START.x, a.y - START.y], -0.10 * right, atol=1e-12)
    # the camera's +x axis (OpenCV right) points where D goes
    assert np.allclose(START.pose()[:2, 0], right, atol=1e-12)


def test_j_yaws_left_three_degrees_and_l_right():
    assert math.degrees(step_keys(START, "J").yaw - START.yaw) == pytest.approx(3.0)
    assert math.degrees(step_keys(START, "L").yaw - START.yaw) == pytest.approx(-3.0)
    assert (step_keys(START, "J").x, step_keys(START, "J").y) == (START.x, START.y)


def test_i_and_k_pitch_and_pitch_is_clamped_to_60_degrees():
    assert math.degrees(step_keys(START, "I").pitch) == pytest.approx(3.0)
    assert math.degrees(step_keys(START, "K").pitch) == pytest.approx(-3.0)
    up = key_trajectory(START, ["I"] * 30)
    down = key_trajectory(START, ["K"] * 30)
    assert math.degrees(up[19].pitch) == pytest.approx(60.0)
    assert math.degrees(up[-1].pitch) == pytest.approx(60.0)
    assert math.degrees(down[-1].pitch) == pytest.approx(-60.0)
    low_limit = key_trajectory(START, ["I"] * 10, KeyMap(max_pitch_deg=20.0))
    assert math.degrees(low_limit[-1].pitch) == pytest.approx(20.0)


def test_opposite_keys_cancel_and_combos_compose():
    assert key_deltas("WS") == (0.0, 0.0, 0.0, 0.0)
    assert key_deltas("JL") == (0.0, 0.0, 0.0, 0.0)
    assert key_deltas("") == (0.0, 0.0, 0.0, 0.0)
    forward, right, yaw, pitch = key_deltas("wdji")  # case-insensitive
    assert (forward, right) == (0.10, 0.10) and yaw == pytest.approx(math.radians(3)) == pitch
    # W+J walks an arc: rotate first, then step along the new heading
    v = step_keys(START, "WJ")
    assert np.allclose([v.x - START.x, v.y - START.y], 0.10 * _heading(START.yaw + math.radians(3)))


def test_keymap_steps_are_configurable():
    keymap = KeyMap(move_step=0.25, yaw_step_deg=10.0)
    v = step_keys(START, "WJ", keymap)
    assert math.hypot(v.x - START.x, v.y - START.y) == pytest.approx(0.25)
    assert math.degrees(v.yaw - START.yaw) == pytest.approx(10.0)
    assert keymap.to_dict()["move_step"] == 0.25


def test_yaw_wraps_to_minus_pi_pi():
    v = Viewpoint(0, 0, 1, math.radians(179.0))
    assert math.degrees(step_keys(v, "J").yaw) == pytest.approx(-178.0)
    assert apply_deltas(v, 0, 0, 0, 0).yaw == pytest.approx(v.yaw)


def test_parse_keys_rejects_unknown_keys_and_names_them():
    assert parse_keys("wj") == "WJ"
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['Q', 'X'\].*W/A/S/D.*I/J/K/L"):
        parse_keys("WQx")
    with pytest.raises(ValueError, match="unknown key"):
        step_keys(START, "W ")


def test_key_trajectory_gives_one_viewpoint_per_frame():
    views = key_trajectory(START, ["W", "W", "J", ""])
    assert len(views) == 4
    assert views[1] == step_keys(step_keys(START, "W"), "W")
    assert views[3] == views[2]


def test_pose_is_camera_to_world_with_opencv_axes():
    pose = Viewpoint(1.0, 2.0, 1.5, 0.0, 0.0).pose()
    assert np.allclose(pose[:3, 3], [1.0, 2.0, 1.5])
    assert np.allclose(pose[:3, 2], [1, 0, 0])  # +z forward along yaw 0 = world +x
    assert np.allclose(pose[:3, 1], [0, 0, -1])  # +y down
    assert np.allclose(pose[:3, 0], [0, -1, 0])  # +x right
    rot = pose_from_yaw_pitch(np.zeros(3), 0.7, -0.4)[:3, :3]
    assert np.allclose(rot.T @ rot, np.eye(3)) and np.linalg.det(rot) == pytest.approx(1.0)
    # positive pitch looks up
    assert pose_from_yaw_pitch(np.zeros(3), 0.0, 0.3)[2, 2] == pytest.approx(math.sin(0.3))


@pytest.mark.parametrize("yaw_deg,pitch_deg", [(0, 0), (30, 10), (-170, -45), (95, 59)])
def test_viewpoint_from_pose_inverts_pose(yaw_deg, pitch_deg):
    v = Viewpoint(0.3, -2.0, 1.2, math.radians(yaw_deg), math.radians(pitch_deg))
    back = Viewpoint.from_pose(v.pose())
    assert np.allclose([back.x, back.y, back.z, back.yaw, back.pitch], [v.x, v.y, v.z, v.yaw, v.pitch])
    assert np.allclose(back.pose(), v.pose())


def test_invert_pose_undoes_a_pose():
    rng = np.random.default_rng(0)
    views = [
        Viewpoint(*rng.uniform(-3, 3, 3), rng.uniform(-math.pi, math.pi), rng.uniform(-1, 1))
        for _ in range(5)
    ]
    poses = np.stack([v.pose() for v in views])
    assert np.allclose(invert_pose(poses[0]) @ poses[0], np.eye(4))
    assert np.allclose(invert_pose(poses) @ poses, np.eye(4)[None])  # batched


def test_rotation_angle_deg():
    a = pose_from_yaw_pitch(np.zeros(3), 0.2, 0.0)[:3, :3]
    b = pose_from_yaw_pitch(np.zeros(3), 0.2 + math.radians(25), 0.0)[:3, :3]
    assert rotation_angle_deg(a, b) == pytest.approx(25.0)
    assert rotation_angle_deg(a, a) == pytest.approx(0.0, abs=1e-5)


def test_intrinsics_from_fov():
    intr = Intrinsics.from_fov(48, 64, 70.0)
    assert intr.fx == intr.fy == pytest.approx(24 / math.tan(math.radians(35)))
    assert (intr.cx, intr.cy, intr.width, intr.height) == (32.0, 24.0, 64, 48)
    assert np.allclose(intr.matrix, [[intr.fx, 0, 32], [0, intr.fy, 24], [0, 0, 1]])
    # the top and bottom image edges are half the field of view from the optical axis
    rays = pixel_rays(Intrinsics.from_fov(1000, 10, 90.0))
    assert rays.shape == (1000, 10, 3) and np.all(rays[..., 2] == 1)
    assert math.degrees(math.atan(-rays[0, 0, 1])) == pytest.approx(45.0, abs=0.1)
    with pytest.raises(ValueError, match="field of view"):
        Intrinsics.from_fov(64, 64, 0.5)
    with pytest.raises(ValueError, match="image size"):
        Intrinsics.from_fov(0, 64)


def test_project_and_unproject_round_trip():
    intr = Intrinsics.from_fov(24, 32, 70.0)
    pose = Viewpoint(1.0, -0.5, 1.1, 0.4, -0.2).pose()
    depth = np.random.default_rng(1).uniform(0.5, 8.0, (24, 32))
    points = unproject(depth, pose, intr)
    uv, z = project(points.reshape(-1, 3), pose, intr)
    uu, vv = np.meshgrid(np.arange(32) + 0.5, np.arange(24) + 0.5)
    assert np.allclose(uv, np.stack([uu.ravel(), vv.ravel()], 1), atol=1e-9)
    assert np.allclose(z, depth.ravel())
    # depth is z-depth along the optical axis, not distance along the ray
    corner = points[0, 0] - pose[:3, 3]
    assert np.linalg.norm(corner) > depth[0, 0]
    assert corner @ pose[:3, 2] == pytest.approx(depth[0, 0])
    # points behind the camera get negative depth
    behind = pose[:3, 3] - 2.0 * pose[:3, 2]
    assert project(behind[None], pose, intr)[1][0] == pytest.approx(-2.0)


def test_unproject_many_with_a_mask_is_each_frame_unprojected_at_its_masked_pixels():
    intr = Intrinsics.from_fov(24, 32, 70.0)
    rng = np.random.default_rng(2)
    depth = rng.uniform(0.5, 8.0, (4, 24, 32))
    poses = np.stack([Viewpoint(0.3 * b, -0.5, 1.1, 0.4 * b, -0.2).pose() for b in range(4)])
    mask = rng.random((4, 24, 32)) < 0.3
    mask[0] = False  # frames with no pixel at the start, in the middle and at the end
    mask[2] = False
    mask[3] = False
    mask[3, 23, 31] = True  # the very last pixel
    parts = unproject_many(depth, poses, intr, mask)
    assert [len(p) for p in parts] == [int(m.sum()) for m in mask]
    for b in range(4):
        np.testing.assert_array_equal(parts[b], unproject(depth[b], poses[b], intr, mask[b]))  # one call
        np.testing.assert_allclose(parts[b], unproject(depth[b], poses[b], intr)[mask[b]], rtol=1e-12)
    mask[3] = False
    assert [len(p) for p in unproject_many(depth, poses, intr, mask)] == [0, int(mask[1].sum()), 0, 0]


@pytest.mark.filterwarnings("error")  # sky pixels must not make nan warnings
def test_reproject_to_the_same_pose_is_the_identity():
    intr = Intrinsics.from_fov(24, 32)
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 5.0, (24, 32))
    depth[0, :4] = np.inf  # sky: nothing to warp
    pose = Viewpoint(0, 0, 1, 0.3).pose()
    out, out_depth, valid = reproject(rgb, depth, pose, pose, intr)
    assert out.dtype == np.uint8
    assert not valid[0, :4].any() and valid.sum() == 24 * 32 - 4
    assert np.array_equal(out[valid], rgb[valid]) and np.allclose(out_depth[valid], depth[valid])
    assert np.isinf(out_depth[~valid]).all()


def test_reproject_moves_content_the_right_way_and_keeps_the_nearest_surface():
    intr = Intrinsics.from_fov(32, 32, 90.0)
    src = Viewpoint(0, 0, 1, 0.0).pose()
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :, 0] = np.arange(32)[None] * 8  # red ramp along u
    depth = np.full((32, 32), 4.0)
    depth[12:20, 12:20] = 2.0  # a near square in front of a far wall
    # strafing right makes the scene slide left in the image; nearer things slide further
    keymap = KeyMap(strafe_step=0.5)
    dst = step_keys(Viewpoint(0, 0, 1, 0.0), "D", keymap).pose()
    out, out_depth, valid = reproject(rgb, depth, src, dst, intr)
    shift_far, shift_near = round(0.5 * intr.fx / 4.0), round(0.5 * intr.fx / 2.0)
    assert (shift_far, shift_near) == (2, 4)
    assert out_depth[16, 16 - shift_near] == pytest.approx(2.0)
    assert out[16, 16 - shift_near, 0] == rgb[16, 16, 0]
    assert out_depth[2, 2] == pytest.approx(4.0) and out[2, 2, 0] == rgb[2, 2 + shift_far, 0]
    assert not valid[:, -1].any()  # the right edge comes from outside the source view
    # the wall strip the near square uncovers was hidden in the source: a hole, not a smear
    hole = np.zeros_like(valid)
    hole[12:20, 20 - shift_near : 20 - shift_far] = True
    assert not valid[hole].any() and valid[:, :-shift_far][~hole[:, :-shift_far]].all()


def test_yaw_pitch_inverts_pose_from_yaw_pitch_one_pose_or_a_batch():
    rng = np.random.default_rng(1)
    yaws, pitches = rng.uniform(-math.pi, math.pi, 6), rng.uniform(-1.2, 1.2, 6)
    poses = np.stack([pose_from_yaw_pitch(np.zeros(3), a, b) for a, b in zip(yaws, pitches, strict=True)])
    got = yaw_pitch(poses.reshape(2, 3, 4, 4))
    assert got[0].shape == (2, 3)
    np.testing.assert_allclose(got[0].ravel(), yaws, atol=1e-12)
    np.testing.assert_allclose(got[1].ravel(), pitches, atol=1e-12)
    assert np.allclose(yaw_pitch(poses[0]), (yaws[0], pitches[0]))
