"""The learned backend on a GPU: the compiled Triton z-buffer and CUDA generation against the CPU.

Skipped where torch sees no CUDA device (CI); on a GPU machine: ``pytest tests/model/test_model_cuda.py``.
"""

import numpy as np
import pytest
import torch

from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.metrics import psnr
from world_model.model.learned import LearnedConfig, LearnedWorldModel
from world_model.model.memory import select_many
from world_model.model.network import UPSAMPLED_CONV_MIN_BATCH
from world_model.model.network_forms import film_norm_torch, fused_norm_works
from world_model.model.reproject import splat

from .helpers import straight_poses, turning_poses

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
INTR = Intrinsics.from_fov(64, 64, 70.0)


def _poses(rng: np.random.Generator, n: int) -> torch.Tensor:
    return torch.from_numpy(
        np.stack(
            [
                pose_from_yaw_pitch(rng.uniform(-0.5, 0.5, 3) + [0, 0, 1.0], rng.uniform(-0.6, 0.6), 0.1)
                for _ in range(n)
            ]
        )
    )


@pytest.mark.parametrize("footprint", [1, 2])
@pytest.mark.parametrize("prefer", [False, True])
def test_compiled_triton_zbuffer_matches_the_torch_reference(footprint, prefer):
    rng = np.random.default_rng(10 + footprint + 2 * prefer)
    n, groups_n = 128, 32  # 4 memories into each of 32 targets, as batch 32 with memory_k=4
    depth = torch.from_numpy(rng.uniform(0.5, 8.0, (n, 64, 64)).astype(np.float32))
    depth[rng.random((n, 64, 64)) < 0.1] = float("inf")  # sky
    feats = torch.from_numpy(rng.random((n, 5, 64, 64)).astype(np.float32))
    groups = torch.from_numpy(np.repeat(np.arange(groups_n), n // groups_n))
    src, dst = _poses(rng, n), _poses(rng, groups_n)
    priority = torch.from_numpy(rng.permutation(n)) if prefer else None
    args = (groups, groups_n, INTR, priority)
    ref = splat(feats, depth, src, dst, *args, footprint=footprint, use_triton=False)
    cuda = [t.cuda() if t is not None else None for t in (feats, depth, src, dst, groups, priority)]
    got = splat(*cuda[:4], cuda[4], groups_n, INTR, cuda[5], footprint=footprint, use_triton=True)
    got = [t.cpu() for t in got]
    assert ref[2].float().mean() > 0.5  # the random views overlap: over half the target pixels filled
    assert (ref[2] == got[2]).float().mean() > 0.999
    both = ref[2] & got[2]
    assert (ref[0] == got[0]).all(dim=1)[both].float().mean() > 0.995
    assert torch.allclose(ref[1][both], got[1][both], rtol=1e-4)


@pytest.fixture(scope="module")
def cpu_and_cuda():
    # fp32 (the default, auto, is bf16 on the GPU and on CPUs with it): bf16 is compared with it below
    return [
        LearnedWorldModel(LearnedConfig(device=d, collide=False, precision="fp32")) for d in ("cpu", "cuda")
    ]


@pytest.mark.parametrize("channels", [32, 96])  # 4 and 12 channels a group, as learned_v1's widths have
def test_triton_film_norm_on_the_gpu_matches_the_torch_form(channels):
    from world_model.model.film_norm_triton import film_norm_triton

    assert fused_norm_works(torch.device("cuda"))  # so the network's eager passes and CUDA graphs use it
    make = torch.Generator().manual_seed(channels)
    x, skip = (torch.randn(32, channels, 32, 32, generator=make) * 3 + 1 for _ in range(2))
    x, skip = (t.cuda().contiguous(memory_format=torch.channels_last) for t in (x, skip))
    film = torch.randn(32, 2 * channels, generator=make).cuda()
    norm = torch.nn.GroupNorm(8, channels).cuda()
    with torch.no_grad():
        torch.nn.init.normal_(norm.weight, 1.0, 0.3)
        ref = film_norm_torch(x, norm, film, skip)
        got = film_norm_triton(x, norm, film, skip)
    assert got.stride() == x.stride()
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4)


def _rollout(model: LearnedWorldModel, seeds: list[int]) -> np.ndarray:
    sessions = [model.open(s)[0] for s in seeds]
    frames = []
    for rel in (straight_poses(4, 0.1), turning_poses(4, 10.0), turning_poses(4, -10.0)):
        out = model.generate(sessions, np.repeat(rel, len(seeds), 0), [[] for _ in seeds])
        frames.append(np.stack([f.rgb for f in out]))
    return np.concatenate(frames, axis=1)  # [B, 12, H, W, 3]


def test_cuda_generates_the_cpu_frames(cpu_and_cuda):
    cpu, cuda = cpu_and_cuda
    assert cuda.info().extra["device"].startswith("cuda")
    a, b = _rollout(cpu, [12, 20, 31]), _rollout(cuda, [12, 20, 31])
    # fp32 on both, but cuDNN's convolutions (TF32 allowed) round differently: close, not identical
    assert psnr(a[:, :4], b[:, :4]) > 35.0
    assert psnr(a, b) > 28.0


def test_cuda_bf16_stays_close_to_fp32(cpu_and_cuda):
    fp32 = cpu_and_cuda[1]
    bf16 = LearnedWorldModel(LearnedConfig(device="cuda", precision="bf16", collide=False))
    a, b = _rollout(fp32, [12, 20]), _rollout(bf16, [12, 20])
    assert psnr(a[:, :4], b[:, :4]) > 28.0


def test_cuda_graphs_replay_the_eager_frames(cpu_and_cuda):
    graphed = cpu_and_cuda[1]
    eager = LearnedWorldModel(
        LearnedConfig(device="cuda", cuda_graphs=False, collide=False, precision="fp32")
    )
    # one graph per batch size, each replayed on later frames; from UPSAMPLED_CONV_MIN_BATCH sessions the
    # decoder's transposed convolution runs too (its taps were once copied from the host inside the capture)
    for seeds in ([12], [12, 20, 31], list(range(10, 10 + UPSAMPLED_CONV_MIN_BATCH))):
        assert np.array_equal(_rollout(graphed, seeds), _rollout(eager, seeds))


def test_batched_retrieval_on_the_gpu_picks_the_cpu_memories(cpu_and_cuda):
    rng = np.random.default_rng(3)
    b, e = 64, 40
    points = torch.from_numpy(rng.normal(0, 3, (b, e, 64, 3)))
    valid = torch.from_numpy(rng.random((b, e)) < 0.8)
    valid[:, 0] = True
    ages = torch.from_numpy(rng.integers(0, 200, (b, e)).astype(np.float64))
    poses = _poses(rng, b)
    ref = select_many(points, valid, ages, poses, INTR, 4)
    got = select_many(*(t.cuda() for t in (points, valid, ages, poses)), INTR, 4)
    assert (ref[0] >= 0).sum() > 2 * b  # most cameras find more than the latest frame
    assert torch.equal(ref[0], got[0].cpu())
    assert torch.equal(ref[1], got[1].cpu())


def test_compiled_network_for_large_batches_stays_close_to_eager(cpu_and_cuda):
    compiled = cpu_and_cuda[1]  # compile is on by default, used above 64 sessions
    eager = LearnedWorldModel(LearnedConfig(device="cuda", compile=False, collide=False, precision="fp32"))
    seeds = list(range(72))
    a, b = _rollout(compiled, seeds), _rollout(eager, seeds)
    assert psnr(a[:, :4], b[:, :4]) > 35.0  # fused kernels round differently: close, not identical
    assert psnr(a, b) > 28.0
