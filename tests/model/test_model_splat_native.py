"""The C splat kernel against the torch reference: the same keys, so the same frames bit for bit."""

import dataclasses

import numpy as np
import pytest
import torch

import world_model.model.native as kernels
import world_model.model.reproject as reproject
import world_model.model.splat_native as native
from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.model.learned import LearnedConfig, LearnedWorldModel
from world_model.model.memory import coverage, coverage_torch
from world_model.model.reproject import splat

from .helpers import turning_poses

INTR = Intrinsics.from_fov(32, 32, 70.0)
needs_compiler = pytest.mark.skipif(kernels._compiler() is None, reason="no C compiler on this machine")


def _random_warp(rng, n=6, g=3, size=(32, 32)):
    """``n`` random sources (sky, empty pixels and near points included) into ``g`` random targets."""
    depth = torch.from_numpy(rng.uniform(0.3, 8.0, (n, *size)).astype(np.float32))
    depth[0, :5] = float("inf")
    depth[1, :, :3] = 0.0
    depth[2, 10:12] = 0.0005  # lands behind MIN_Z in most targets
    feats = torch.from_numpy(rng.random((n, 5, *size)).astype(np.float32))
    poses = [
        pose_from_yaw_pitch(rng.normal(0, 0.3, 3), rng.normal(0, 0.3), rng.normal(0, 0.05))
        for _ in range(n + g)
    ]
    src, dst = torch.from_numpy(np.stack(poses[:n])), torch.from_numpy(np.stack(poses[n:]))
    groups = torch.from_numpy(rng.integers(0, g, n))
    return feats, depth, src, dst, groups, g


@needs_compiler
@pytest.mark.parametrize("footprint", [1, 2])
@pytest.mark.parametrize("prefer", [False, True])
def test_native_splat_is_the_torch_reference_bit_for_bit(footprint, prefer):
    assert kernels.available(), "a C compiler is here, but the kernels did not build (see the warning)"
    rng = np.random.default_rng(footprint + 2 * prefer)
    filled = []
    for _ in range(4):
        feats, depth, src, dst, groups, g = _random_warp(rng)
        priority = torch.from_numpy(rng.integers(0, 4, len(groups))) if prefer else None
        args = (feats, depth, src, dst, groups, g, INTR, priority)
        ref = splat(*args, footprint=footprint, use_native=False)
        got = splat(*args, footprint=footprint, use_native=True)
        for a, b in zip(ref, got, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
        filled.append(ref[2].float().mean().item())
    assert 0.2 < np.mean(filled) < 0.95  # neither empty nor trivially full


@needs_compiler
def test_native_splat_matches_on_a_wide_image_with_a_target_left_empty():
    """Rows of another width than columns, and a target no source warps into (all empty)."""
    feats, depth, src, dst, groups, _ = _random_warp(np.random.default_rng(5), n=5, g=2, size=(20, 36))
    wide = Intrinsics.from_fov(20, 36, 60.0)
    groups = torch.tensor([0, 2, 0, 2, 2])  # target 1 gets nothing
    dst = torch.cat([dst, dst[:1]])
    for priority in (None, torch.tensor([3, 0, 1, 1, 2])):
        ref = splat(feats, depth, src, dst, groups, 3, wide, priority, footprint=2, use_native=False)
        got = splat(feats, depth, src, dst, groups, 3, wide, priority, footprint=2, use_native=True)
        assert all(torch.equal(a, b) for a, b in zip(ref, got, strict=True))
        assert not got[2][1].any() and got[2][0].any() and got[2][2].any()


@needs_compiler
def test_native_splat_rejects_inputs_it_would_read_out_of_bounds():
    feats, depth, src, dst, groups, g = _random_warp(np.random.default_rng(2))
    rel = torch.linalg.solve(dst[groups], src).float()
    with pytest.raises(ValueError, match="groups must lie in"):
        native.splat_native(feats, depth, rel, groups + g, g, INTR, None, 0.05, 2)
    with pytest.raises(ValueError, match="need rel"):  # one group short: refused, not read past the end
        native.splat_native(feats, depth, rel, groups[:-1], g, INTR, None, 0.05, 2)
    with pytest.raises(ValueError, match="depth must be"):
        native.splat_native(feats, depth[:-1], rel, groups, g, INTR, None, 0.05, 2)


@needs_compiler
def test_native_splat_uses_the_given_threads():
    """Targets split among threads give the frames one thread gives."""
    feats, depth, src, dst, groups, g = _random_warp(np.random.default_rng(7), n=9, g=5)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(splat(feats, depth, src, dst, groups, g, INTR, groups, footprint=2, use_native=True))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*outs, strict=True))


@needs_compiler
def test_the_learned_backend_warps_with_the_kernel_and_gets_the_torch_frames(tiny_weights, monkeypatch):
    calls = []
    kernel = native.splat_native
    monkeypatch.setattr(reproject, "splat_native", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    cfg = LearnedConfig(weights=str(tiny_weights), device="cpu")
    frames = {}
    for use in (True, False):
        monkeypatch.setattr(reproject, "_native_available", lambda use=use: use)
        model = LearnedWorldModel(cfg)
        sids = [model.open(seed)[0] for seed in (3, 5)]
        rel = np.stack([turning_poses(3, 6.0)[0]] * 2)
        frames[use] = model.generate(sids, rel, [[], []]) + model.generate(sids, rel, [[], []])
        if use:
            assert len(calls) == 6, "the learned backend did not use the C kernel"
    assert len(calls) == 6, "the torch run used the C kernel"
    for a, b in zip(frames[True], frames[False], strict=True):
        for field in dataclasses.fields(a):
            assert np.array_equal(getattr(a, field.name), getattr(b, field.name)), field.name


@needs_compiler
def test_sources_read_in_place_warp_as_the_stacked_tensors():
    """``splat_native`` given planes where they lie (sky at a far plane) against ``splat_native`` on the
    stacked tensors with the sky replaced, including planes that need converting first; and ``splat``'s
    torch path, which stacks such sources, against both."""
    feats, depth, src, dst, groups, g = _random_warp(np.random.default_rng(11))
    rel = reproject.relative_poses(src, dst, groups)
    priority = torch.arange(len(groups)).flip(0)
    far = torch.where(torch.isinf(depth), torch.full_like(depth, 50.0), depth)
    ref = native.splat_native(feats, far, rel, groups, g, INTR, priority, 0.05, 2)
    sources = [(f[0:2], f[2].double(), f[3:5].transpose(1, 2).contiguous().transpose(1, 2)) for f in feats]
    got = native.splat_native(sources, list(depth), rel, groups, g, INTR, priority, 0.05, 2, far=50.0)
    assert all(torch.equal(a, b) for a, b in zip(ref, got, strict=True))
    stacked = splat(
        sources, list(depth), src, dst, groups, g, INTR, priority, 0.05, 2, use_native=False, far=50.0
    )
    assert all(torch.equal(a, b) for a, b in zip(ref, stacked, strict=True))
    dropped = native.splat_native(sources, list(depth), rel, groups, g, INTR, priority, 0.05, 2)
    assert dropped[2].sum() < got[2].sum()  # far=inf: the sky lands nowhere, as in splat
    with pytest.raises(ValueError, match="planes must be"):
        native.splat_native([(f[:, :4],) for f in feats], list(depth), rel, groups, g, INTR, None, 0.05, 2)


def test_without_a_working_compiler_splat_and_retrieval_keep_to_torch(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing built yet
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    kernels.load.cache_clear()
    try:
        with pytest.warns(UserWarning, match="did not build"):
            assert not kernels.available()
        feats, depth, src, dst, groups, g = _random_warp(np.random.default_rng(0))
        assert splat(feats, depth, src, dst, groups, g, INTR)[2].any()  # the torch path, unharmed
        points, cams = torch.rand(2, 3, 64, 3) * 4, torch.eye(4, dtype=torch.float64).expand(2, 4, 4)
        assert torch.equal(coverage(points, cams, INTR)[1], coverage_torch(points, cams, INTR)[1])
        with pytest.raises(RuntimeError, match="not available"):
            splat(feats, depth, src, dst, groups, g, INTR, use_native=True)
        monkeypatch.setenv(kernels.ENV_DISABLE, "1")
        kernels.load.cache_clear()
        assert not kernels.available()
    finally:
        kernels.load.cache_clear()  # later tests build (or load) the real kernel again


@needs_compiler
def test_the_kernel_refuses_tensors_off_the_cpu():
    feats, depth, src, dst, groups, g = _random_warp(np.random.default_rng(1))
    rel = torch.linalg.solve(dst[groups], src).float()
    with pytest.raises(ValueError, match="CPU tensors only"):
        native.splat_native(feats.to("meta"), depth, rel, groups, g, INTR, None, 0.05, 2)
