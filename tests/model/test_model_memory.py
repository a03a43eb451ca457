import numpy as np
import pytest
import torch

import world_model.model.native as kernels
from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.model.memory import (
    MemoryBank,
    MemoryEntry,
    _greedy_native,
    add_many,
    coverage,
    coverage_torch,
    greedy_torch,
    retrieve_many,
)
from world_model.model.reproject import view_points

INTR = Intrinsics.from_fov(64, 64, 70.0)


def _entry(t, x, yaw, version=0, depth_m=3.0):
    """A keyframe seen at time ``t``; each world-state version toggles the lights (version 1: off)."""
    pose = pose_from_yaw_pitch(np.array([x, 0.0, 1.0]), yaw, 0.0)
    depth = np.full((64, 64), depth_m, np.float32)
    return MemoryEntry(
        torch.zeros(3, 64, 64),
        torch.from_numpy(depth),
        torch.zeros(64, 64),
        pose,
        t,
        version % 2 == 0,
        False,
        version,
        view_points(depth, pose, INTR),
    )


def _retrieve(bank, pose, k, now):
    """The latest frame and the keyframes of ``bank`` that best cover the view from ``pose``."""
    return retrieve_many([bank], pose[None], INTR, k, [now])[0][0]


def test_a_revisit_retrieves_the_frame_seen_there_long_ago():
    bank = MemoryBank(capacity=16)
    bank.add(_entry(0, 0.0, 0.0), INTR)  # looking along +x at the start
    for t in range(1, 61):  # turn around (180 degrees) and walk away along -x
        bank.add(_entry(t, -0.05 * max(0, t - 30), np.pi * min(t, 30) / 30), INTR)
    start_pose = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.0, 0.0)
    got = _retrieve(bank, start_pose, k=3, now=61)
    assert got[0].time == 60  # the latest frame always comes first
    assert 0 in [e.time for e in got[1:]]  # and the old view of this place is brought back


def test_memory_stays_bounded_and_skips_redundant_views():
    bank = MemoryBank(capacity=8)
    for t in range(20):  # standing still: one keyframe is enough
        bank.add(_entry(t, 0.0, 0.0), INTR)
    assert len(bank.keyframes) == 1 and bank.latest.time == 19
    assert len(bank) == 2  # the keyframe, and the latest frame beside it
    for t in range(20, 220):  # spinning around while walking: many distinct views
        bank.add(_entry(t, 0.02 * t, 0.4 * t), INTR)
    assert len(bank.keyframes) == 8


def test_the_kept_overlap_matrix_matches_one_computed_whole():
    rng = np.random.default_rng(0)
    bank = MemoryBank(capacity=6)
    for t in range(80):  # wandering, with events now and then: keyframes are added, replaced and dropped
        x, yaw = rng.uniform(-1, 1), rng.uniform(-np.pi, np.pi)
        bank.add(_entry(t, x, yaw, version=t // 20, depth_m=rng.uniform(1, 6)), INTR)
        fork = bank.copy()
        fork.add(_entry(t, -x, -yaw), INTR)  # a fork's additions leave the original alone
        if t % 7 == 0:
            points = torch.as_tensor(np.stack([k.points for k in bank.keyframes]))
            poses = torch.as_tensor(np.stack([k.pose for k in bank.keyframes]))
            whole = coverage(points[None].expand(len(poses), -1, -1, -1), poses, INTR)[1].numpy()
            np.testing.assert_array_equal(bank._views_now(INTR), whole)
            np.testing.assert_array_equal(bank.arrays()[0], points.numpy())
    assert len(bank.keyframes) == 6


def test_adding_to_many_banks_at_once_is_adding_to_each_alone():
    rng = np.random.default_rng(5)
    # banks of different sizes (empty, small and overflowing, a wider same-place radius) in one batch: the
    # padding of the smaller ones must not change what any of them keeps
    make = [lambda: MemoryBank(capacity=3), lambda: MemoryBank(capacity=40), lambda: MemoryBank(8, 3.0, 0.5)]
    batched, alone = [f() for f in make], [f() for f in make]
    for t in range(60):
        entries = [
            _entry(t, rng.uniform(-1, 1), rng.uniform(-0.6, 0.6), version=t // 15, depth_m=rng.uniform(1, 6))
            for _ in make
        ]
        live = [b for b in range(len(make)) if t >= 10 * b]  # the later banks start empty, later
        add_many([batched[b] for b in live], [entries[b] for b in live], INTR)
        for b in live:
            alone[b].add(entries[b], INTR)
    for one, other in zip(batched, alone, strict=True):
        assert [k.time for k in one.keyframes] == [k.time for k in other.keyframes]
        assert (one.latest.time, one.latest_at) == (other.latest.time, other.latest_at)
        np.testing.assert_array_equal(one._views_now(INTR), other._views_now(INTR))
    assert len(batched[0].keyframes) == 3 and len({k.version for k in batched[1].keyframes}) > 1
    with pytest.raises(ValueError, match="one entry"):
        add_many(batched, [entries[0]], INTR)


@pytest.mark.skipif(kernels._compiler() is None, reason="no C compiler on this machine")
def test_the_c_coverage_kernel_matches_torch_bit_for_bit():
    rng = np.random.default_rng(3)
    points = torch.from_numpy(rng.normal(0, 3, (5, 7, 64, 3)))  # many behind or beside the cameras
    points[0, 0, :8, 2] = 1e-7  # on the camera's plane
    poses = torch.from_numpy(
        np.stack([pose_from_yaw_pitch(rng.normal(0, 1, 3), rng.normal(), 0.2) for _ in range(5)])
    )
    assert kernels.available()
    hits, seen = coverage(points, poses, INTR)
    ref_hits, ref_seen = coverage_torch(points, poses, INTR)
    assert torch.equal(hits, ref_hits) and torch.equal(seen, ref_seen)
    assert 0 < seen.mean() < 1 and hits.any(dim=2).float().mean() > 0.3  # a real mix of in and out of view
    broadcast = coverage(points[:1].expand(5, -1, -1, -1), poses, INTR)  # a view laid out in full first
    assert torch.equal(broadcast[1], coverage_torch(points[:1].expand(5, -1, -1, -1), poses, INTR)[1])
    shared = coverage(points[:1], poses, INTR)  # one set of footprints for every camera, read in place
    assert torch.equal(shared[0], broadcast[0]) and torch.equal(shared[1], broadcast[1])
    assert torch.equal(shared[1], coverage_torch(points[:1], poses, INTR)[1])
    with pytest.raises(ValueError, match=r"need a \[5, 4, 4\] camera pose"):
        coverage(points, poses[:3], INTR)


@pytest.mark.skipif(kernels._compiler() is None, reason="no C compiler on this machine")
def test_the_c_greedy_choice_of_memories_matches_torch():
    """Ties (few cells, ages in whole frames), padding, candidates that land nowhere, cameras with only the
    latest frame, and k beyond what is worth taking: the C kernel chooses as the torch reference does."""
    rng = np.random.default_rng(5)
    b, e, cells = 64, 12, 16
    hits = torch.from_numpy(rng.random((b, e, cells)) < rng.choice([0.0, 0.05, 0.3], (b, e, 1)))
    seen = torch.from_numpy(rng.choice([0.0, 0.25, 0.5, 1.0], (b, e)))
    ages = torch.from_numpy(rng.integers(0, 4, (b, e)).astype(np.float64))
    valid = torch.from_numpy(rng.random((b, e)) < 0.8)
    valid[:, 0] = True
    valid[:4, 1:] = False  # only the latest frame
    assert kernels.available()
    for k in (1, 2, 4, 9):
        got = _greedy_native(hits, seen, valid, ages, k, 0.002)
        assert torch.equal(got, greedy_torch(hits, seen, valid, ages, k, 0.002)), k
    chosen = _greedy_native(hits, seen, valid, ages, 4, 0.002)
    assert (chosen[:4, 1:] == -1).all() and (chosen[:, 0] == 0).all()
    assert (chosen[4:, 1] >= 1).float().mean() > 0.5 and (chosen[:, 3] == -1).any()  # both kinds of rows
    bank = MemoryBank()
    bank.add(_entry(0, 0.0, 0.0), INTR)
    with pytest.raises(ValueError, match="k must be at least 1"):  # refused, not written past the end
        _retrieve(bank, np.eye(4), 0, 1)


def test_a_view_of_another_look_is_kept_and_current_again_when_the_world_returns_to_it():

    bank = MemoryBank(capacity=8)
    bank.add(_entry(0, 0.0, 0.0, version=0), INTR)
    bank.add(_entry(1, 0.0, 0.0, version=1), INTR)  # same place, lights off: a new keyframe beside it
    assert [(e.time, e.lights) for e in bank.keyframes] == [(0, True), (1, False)]
    assert len(bank) == 2  # the latest frame is the second keyframe
    for t in range(2, 12):
        bank.add(_entry(t, 0.0, 0.0, version=1), INTR)
    here = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.0, 0.0)
    near = {"near_gate": 0.5, "near_k": 1}
    dark, _ = retrieve_many([bank], here[None], INTR, 2, [12], **near, looks=[(False, False)])
    assert [e.lights for e in dark[0]] == [False, False]  # only views of the dark room are taken as near
    bank.add(_entry(12, 0.0, 0.0, version=2), INTR)  # the lights back on: the settled lit view is current
    assert [(e.time, e.lights) for e in bank.keyframes][0] == (0, True) and len(bank.keyframes) == 2
    lit, _ = retrieve_many([bank], here[None], INTR, 2, [13], **near, looks=[(True, False)])
    assert [e.time for e in lit[0]] == [12, 0]


def test_fork_copies_are_independent():
    bank = MemoryBank(capacity=4)
    bank.add(_entry(0, 0.0, 0.0), INTR)
    fork = bank.copy()
    fork.add(_entry(1, 0.0, 2.0), INTR)
    assert len(bank.keyframes) == 1 and len(fork.keyframes) == 2


def test_retrieving_from_an_empty_memory_is_an_error():
    with pytest.raises(RuntimeError, match="empty memory"):
        _retrieve(MemoryBank(), np.eye(4), 2, 0)


def test_camera_distance_adds_metres_and_degrees_over_thirty():
    from world_model.model.memory import camera_distance

    a = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.0, 0.0)
    b = pose_from_yaw_pitch(np.array([0.3, 0.4, 1.0]), np.radians(15.0), 0.0)
    assert camera_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert camera_distance(a, b) == pytest.approx(0.5 + 15.0 / 30.0)
    assert camera_distance(np.stack([a, b]), a[None]) == pytest.approx([0.0, 1.0], abs=1e-6)


def test_back_at_a_place_the_views_taken_there_come_right_after_the_latest():

    bank = MemoryBank(capacity=32)
    for t in range(40):  # walk out along +x looking ahead, then keep looking ahead while walking back
        x = 0.05 * t if t < 20 else 0.05 * (39 - t)
        bank.add(_entry(t, x, 0.0, depth_m=6.0), INTR)
    start = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.0, 0.0)
    plain, _ = retrieve_many([bank], start[None], INTR, 3, [40])
    near, _ = retrieve_many([bank], start[None], INTR, 3, [40], near_gate=0.5, near_k=2)
    assert near[0][0].time == 39  # the latest first, always
    assert near[0][1].time == 0  # then the view taken at this very place
    assert [e.time for e in plain[0]][0] == 39 and len(near[0]) == 3
    far = pose_from_yaw_pitch(np.array([9.0, 9.0, 1.0]), 0.0, 0.0)  # nothing within the gate: coverage only
    gated, _ = retrieve_many([bank], far[None], INTR, 3, [40], near_gate=0.5, near_k=2)
    ungated, _ = retrieve_many([bank], far[None], INTR, 3, [40])
    assert [e.time for e in gated[0]] == [e.time for e in ungated[0]]


def test_views_made_while_the_look_settles_after_an_event_are_replaced_by_later_ones():
    bank = MemoryBank(capacity=16)
    bank.add(_entry(0, 0.0, 0.0), INTR)
    for t in range(1, 4):  # standing still: the opened frame stays the keyframe of this place
        bank.add(_entry(t, 0.0, 0.0), INTR)
    assert [e.time for e in bank.keyframes] == [0]
    bank.add(_entry(4, 0.0, 0.0, version=1), INTR)  # the lights went off: a view of the new look
    assert [(e.time, e.version) for e in bank.keyframes] == [(0, 0), (4, 1)]
    for t in range(5, 20):  # while the look settles (8 frames), later views replace it; then it stays
        bank.add(_entry(t, 0.0, 0.0, version=1), INTR)
    assert [e.time for e in bank.keyframes] == [0, 12]
