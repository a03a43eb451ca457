import numpy as np
import torch

from world_model.geometry import Intrinsics, pose_from_yaw_pitch, reproject
from world_model.model.reproject import splat

INTR = Intrinsics.from_fov(32, 32, 70.0)


def _scene():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 4.0, (32, 32)).astype(np.float32)
    depth[:4] = np.inf  # sky rows
    return rgb, depth


def _torch_splat(rgb, depth, src, dst):
    feats = torch.from_numpy(rgb).float().permute(2, 0, 1)[None]
    return splat(
        feats,
        torch.from_numpy(depth)[None],
        torch.from_numpy(src)[None],
        torch.from_numpy(dst)[None],
        torch.zeros(1, dtype=torch.long),
        1,
        INTR,
    )


def test_splat_into_its_own_camera_is_the_identity_on_seen_pixels():
    rgb, depth = _scene()
    pose = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.3, 0.0)
    warped, z, mask = _torch_splat(rgb, depth, pose, pose)
    seen = np.isfinite(depth)
    assert torch.equal(mask[0], torch.from_numpy(seen))
    assert np.array_equal(warped[0].permute(1, 2, 0).numpy()[seen], rgb[seen].astype(np.float32))
    assert np.allclose(z[0].numpy()[seen], depth[seen], rtol=1e-4)


def test_splat_matches_the_numpy_reference_after_a_move():
    rgb, depth = _scene()
    src = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.0, 0.0)
    dst = pose_from_yaw_pitch(np.array([0.2, 0.1, 1.0]), 0.05, 0.0)
    ref_rgb, ref_z, ref_mask = reproject(rgb, depth, src, dst, INTR)
    warped, z, mask = _torch_splat(rgb, depth, src, dst)
    assert np.array_equal(mask[0].numpy(), ref_mask)
    assert np.allclose(z[0].numpy()[ref_mask], ref_z[ref_mask], rtol=1e-3)
    same = (warped[0].permute(1, 2, 0).numpy()[ref_mask] == ref_rgb[ref_mask]).all(axis=1)
    assert same.mean() > 0.97  # z-ties may pick a different (equally near) source pixel


def test_splat_is_deterministic_and_nearest_surface_wins():
    rgb, depth = _scene()
    src = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.0, 0.0)
    dst = pose_from_yaw_pitch(np.array([0.5, 0.0, 1.0]), 0.2, 0.0)
    a = _torch_splat(rgb, depth, src, dst)
    b = _torch_splat(rgb, depth, src, dst)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # two sources into one target: a wall at 1 m in front of one at 3 m hides it
    near, far = np.full((32, 32), 1.0, np.float32), np.full((32, 32), 3.0, np.float32)
    feats = torch.stack([torch.ones(1, 32, 32), torch.zeros(1, 32, 32)])
    out, z, _ = splat(
        feats,
        torch.from_numpy(np.stack([far, near])),
        torch.from_numpy(np.stack([src, src])),
        torch.from_numpy(src)[None],
        torch.zeros(2, dtype=torch.long),
        1,
        INTR,
    )
    assert torch.all(out == 0) and torch.allclose(z, torch.ones_like(z), rtol=1e-3)


def test_priority_picks_the_preferred_source_for_the_same_surface_only():
    pose = np.eye(4)
    a, b = np.full((32, 32), 2.0, np.float32), np.full((32, 32), 2.02, np.float32)  # one surface, 1% apart
    feats = torch.stack([torch.ones(1, 32, 32), torch.zeros(1, 32, 32)])
    args = (
        torch.from_numpy(np.stack([a, b])),
        torch.from_numpy(np.stack([pose, pose])),
        torch.from_numpy(pose)[None],
        torch.zeros(2, dtype=torch.long),
        1,
        INTR,
    )
    assert torch.all(splat(feats, *args)[0] == 1)  # nearest wins without priorities
    assert torch.all(splat(feats, *args, priority=torch.tensor([1, 0]))[0] == 0)  # the preferred one
    far = torch.from_numpy(np.stack([a, np.full((32, 32), 3.0, np.float32)]))
    assert torch.all(splat(feats, far, *args[1:], priority=torch.tensor([1, 0]))[0] == 1)  # occlusion holds


def test_a_two_pixel_footprint_closes_the_cracks_of_an_approach():
    rgb, depth = _scene()
    depth[:] = 3.0  # a wall 3 m ahead; the camera walks 0.5 m towards it (magnified 1.2x)
    src = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.0, 0.0)
    dst = pose_from_yaw_pitch(np.array([0.5, 0.0, 1.0]), 0.0, 0.0)
    feats = torch.from_numpy(rgb).float().permute(2, 0, 1)[None]
    args = (
        torch.from_numpy(depth)[None],
        torch.from_numpy(src)[None],
        torch.from_numpy(dst)[None],
        torch.zeros(1, dtype=torch.long),
        1,
        INTR,
    )
    thin = splat(feats, *args)[2][0].numpy()
    wide = splat(feats, *args, footprint=2)[2][0].numpy()
    seen_cols = thin.any(axis=0)
    assert (~thin[:, seen_cols]).sum() > 0  # nearest-pixel splatting leaves cracks
    assert wide[:, seen_cols].all()  # the footprint closes them
