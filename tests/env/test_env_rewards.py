"""Reward modules: revisit detection and scoring, coverage, and the sign of the revisit weight."""

import math

import numpy as np
import pytest

from dreamx_env.envs.task import Frame, RewardConfig, Task, new_episode, score_step
from dreamx_env.rewards import CoverageConfig, CoverageTracker, RevisitConfig, RevisitTracker, psnr
from world_model.backend import SceneInfo
from world_model.geometry import Viewpoint

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8)


def pose(x=0.0, y=0.0, yaw_deg=0.0):
    return Viewpoint(x, y, 1.2, math.radians(yaw_deg)).pose()


def test_revisit_needs_the_same_place_heading_and_a_gap():
    tracker = RevisitTracker(RevisitConfig(min_gap_steps=5))
    assert tracker.observe(0, pose(), IMG) is None
    assert tracker.observe(2, pose(), IMG) is None  # too soon
    assert tracker.observe(6, pose(0.5), IMG) is None  # too far
    assert tracker.observe(7, pose(yaw_deg=10), IMG) is None  # facing elsewhere
    hit = tracker.observe(8, pose(0.05, 0, 2.0), IMG)
    assert hit is not None and hit.gap_steps == 8 and hit.similarity == 1.0 and hit.psnr_db == 99.0
    assert tracker.observe(19, pose(2.0), IMG) is None  # away ...
    noisy = np.clip(IMG.astype(int) + RNG.integers(-60, 60, IMG.shape), 0, 255).astype(np.uint8)
    worse = tracker.observe(20, pose(), noisy)  # ... and back
    assert worse is not None and worse.similarity < 1.0 and tracker.count == 2


def test_standing_still_is_not_a_revisit_and_an_arrival_counts_once():
    tracker = RevisitTracker(RevisitConfig(min_gap_steps=5))
    assert not any(tracker.observe(step, pose(0.01 * (step % 2)), IMG) for step in range(50))
    tracker.observe(50, pose(3.0), IMG)  # walk away, come back and stay
    hits = [tracker.observe(step, pose(), IMG) for step in range(51, 80)]
    assert hits[0] is not None and hits[0].gap_steps == 51 and not any(hits[1:]) and tracker.count == 1
    assert tracker.observe(80, pose(yaw_deg=20), IMG) is None  # turning away and back is coming back
    assert tracker.observe(81, pose(), IMG) is not None and tracker.count == 2


def test_history_is_bounded():
    tracker = RevisitTracker(RevisitConfig(max_history=8, min_gap_steps=1))
    for step in range(20):
        tracker.observe(step, pose(x=step * 1.0), IMG)
    assert tracker.observe(100, pose(x=0.0), IMG) is None  # forgotten
    assert tracker.observe(101, pose(x=19.0), IMG) is not None


def test_coverage_counts_new_cells_and_headings():
    cov = CoverageTracker(CoverageConfig(cell_m=0.5, yaw_bins=8))
    assert cov.observe(np.stack([pose(0.1), pose(0.2)])) == 1
    assert cov.observe(np.stack([pose(0.1)])) == 0
    assert cov.observe(np.stack([pose(0.1, yaw_deg=90)])) == 1
    assert cov.observe(np.stack([pose(0.7), pose(1.2)])) == 2


@pytest.mark.parametrize("weight", [1.0, -1.0])
def test_revisit_weight_sign(weight):
    scene = SceneInfo(0, "test", pose(), np.zeros((0, 4, 4)))
    rc = RevisitConfig(min_gap_steps=1)
    st = new_episode(Task(None, 64, 64), scene, Frame(IMG, pose()[None]), None, {}, RNG, rc, CoverageConfig())
    weights = RewardConfig(revisit=weight)
    score_step(Task(None, 64, 64), st, Frame(IMG[::-1], pose(3.0)[None]), weights)
    reward, terminated, info = score_step(Task(None, 64, 64), st, Frame(IMG, pose()[None]), weights)
    assert info["is_revisit"] and not terminated
    assert reward == pytest.approx(
        weight * 0.5
    )  # similarity 1 - neutral 0.5: adversaries pay for consistency


def test_psnr():
    assert psnr(IMG, IMG) == 99.0
    assert 3 < psnr(IMG, 255 - IMG) < 10
