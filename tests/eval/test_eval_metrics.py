"""Metrics shared by rewards and evaluation: PSNR/SSIM, the essential-matrix camera estimator, revisits."""

import math

import cv2
import numpy as np
import pytest

from world_model.engine.world import GroundTruthWorld, RenderConfig
from world_model.geometry import Intrinsics, Viewpoint, key_trajectory, project
from world_model.metrics import (
    PSNR_CAP_DB,
    camera_error,
    estimate_relative_pose,
    non_revisit_pairs,
    pose_from_matches,
    psnr,
    revisit_pairs,
    ssim,
)


def test_psnr_and_ssim_rank_degradations():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8), (5, 5), 2.0)
    mild = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    harsh = np.clip(img + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8)
    assert psnr(img, img) == PSNR_CAP_DB and ssim(img, img) == pytest.approx(1.0)
    assert psnr(img, mild) > psnr(img, harsh) + 10
    assert ssim(img, mild) > ssim(img, harsh) + 0.2
    assert 20 * math.log10(255 / 5) - 1 < psnr(img, mild) < 20 * math.log10(255 / 5) + 1
    mask = np.zeros((32, 32), bool)
    mask[:4] = True
    assert psnr(img, np.where(mask[..., None], img, 0), mask) == PSNR_CAP_DB


def test_pose_from_matches_recovers_the_camera_motion():
    """The estimator's conventions: correspondences of a known motion give that motion back."""
    intr = Intrinsics.from_fov(64, 64)
    rng = np.random.default_rng(0)
    p0 = Viewpoint(0, 0, 1, 0.3).pose()
    p1 = Viewpoint(0.3, 0.25, 1.05, 0.45, 0.05).pose()
    cam0 = np.c_[rng.uniform(-2, 2, 200), rng.uniform(-1, 1, 200), rng.uniform(3, 8, 200)]
    world = cam0 @ p0[:3, :3].T + p0[:3, 3]
    uv0, _ = project(world, p0, intr)
    uv1, _ = project(world, p1, intr)
    err = camera_error(pose_from_matches(uv0, uv1, intr), p0, p1)
    assert err.ok and err.rotation_deg < 0.1 and err.translation_deg < 1.0


def test_camera_estimator_runs_on_rendered_frames():
    render = RenderConfig(height=64, width=64)
    world = GroundTruthWorld(3, render)
    f0 = world.observe()
    f1 = world.step_keys("L")
    err = camera_error(estimate_relative_pose(f0.rgb, f1.rgb, render.intrinsics), f0.pose, f1.pose)
    assert err.ok and err.rotation_deg < 5.0  # a 3° turn at 64x64: the estimator's floor is coarse
    world.close()


def test_camera_error_is_zero_for_the_truth_and_flags_failures():
    p0 = Viewpoint(0, 0, 1, 0.0).pose()
    p1 = Viewpoint(0.5, 0.1, 1, 0.2).pose()
    rel = np.linalg.inv(p0) @ p1
    truth = (rel[:3, :3], rel[:3, 3] / np.linalg.norm(rel[:3, 3]))
    err = camera_error(truth, p0, p1)
    assert err.rotation_deg < 1e-5 and err.translation_deg < 1e-5
    assert not camera_error(None, p0, p1).ok
    flat = np.full((32, 32, 3), 128, np.uint8)
    assert estimate_relative_pose(flat, flat, Intrinsics.from_fov(32, 32)) is None


def test_revisit_pairs_follow_the_protocol():
    keys = ["W"] * 10 + ["J"] * 120 + ["S"] * 10  # out, a full turn in place, back facing the same way
    views = key_trajectory(Viewpoint(0, 0, 1, 0.0), keys)
    poses = np.stack([v.pose() for v in views])
    pairs = revisit_pairs(poses)
    assert pairs, "walking back along a path revisits nothing?"
    for i, j in pairs:
        assert j - i >= 0.2 * len(poses)
        assert np.linalg.norm(poses[i, :3, 3] - poses[j, :3, 3]) <= 0.1
    non = non_revisit_pairs(poses, 20, np.random.default_rng(0))
    assert len(non) == 20 and not set(non) & set(pairs)


def test_event_mask_and_relative_depth_error():
    from world_model.model.evaluate import event_mask, relative_depth_error

    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2, 0] = 1
    assert event_mask(a, b).sum() == 1 and event_mask(a, b)[1, 2]
    truth = np.array([[2.0, 4.0], [np.inf, 1.0]])
    pred = np.array([[2.2, 3.0], [5.0, np.nan]])
    assert np.allclose(np.sort(relative_depth_error(pred, truth)), [0.1, 0.25])


def test_the_report_table_shows_masked_event_success_and_depth_consistency():
    from world_model.model.report import markdown

    fid = {"model_psnr": 20.0, "copy_last_psnr": 18.0, "gt_depth_reprojection_psnr": 15.0}
    fid |= {"model_ssim": 0.6, "copy_last_ssim": 0.5, "model_depth_rel_error": 0.123}
    cam = {"rotation_deg": 1.0, "translation_deg": 10.0}
    rev = {"model_dpsnr": 5.0, "model_dssim": 0.12, "truth_dpsnr": 50.0, "truth_dssim": 0.4, "pairs": 10}
    rev |= {"depth_pair_rel_error": 0.05, "depth_pair_over_30pct": 0.02}
    report = {
        "fidelity": {"16": fid},
        "camera_control": {"model": cam, "truth": cam, "rotation_ratio": 1.0, "translation_ratio": 1.0},
        "revisit": {"out_and_back": rev, "mean": {**rev}},
        "events": {
            "drop a red ball": {"trials": 8, "success_rate": 0.5, "masked_success_rate": 0.875},
            "overall_success_rate": 0.5,
            "overall_masked_success_rate": 0.875,
        },
    }
    text = markdown(report)
    assert "| 16 | 20.00 | 18.00 | 15.00 | 0.600 | 0.500 | 12.3% |" in text
    assert "| out_and_back | 5.00 | 0.120 | 50.00 | 0.400 | 10 | 5.0% | 2.0% |" in text
    assert (
        "| drop a red ball | 8 | 88% | 50% |" in text and "| **all events** | | **88%** | **50%** |" in text
    )
