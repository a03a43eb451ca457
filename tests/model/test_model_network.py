"""The eval-mode forms of ``WorldNet``'s operations compute what the training forms compute, and a warmed-up
pass takes nothing from the host (as a CUDA graph needs)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from world_model.model import network, network_forms
from world_model.model.conditioning import HINT_CHANNELS, Warp, assemble, current_estimate
from world_model.model.learned import LearnedWorldModel
from world_model.model.network import WorldNet
from world_model.model.network_forms import (
    group_norm,
    group_norm_by_sums,
    upsampled_kernel,
    upsampled_kernel_by_sums,
)


def _randomised(net: nn.Module) -> nn.Module:
    """Every parameter random (FiLM starts at zero, GroupNorm at the identity: both would hide a mistake)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net


@pytest.mark.parametrize("offset", [0.0, 5.0])
def test_group_norm_by_sums_matches_group_norm(offset):
    norm = _randomised(nn.GroupNorm(4, 16))
    x = (torch.randn(3, 16, 12, 10) * 2 + offset).contiguous(memory_format=torch.channels_last)
    want = F.group_norm(x, 4, norm.weight, norm.bias, norm.eps)
    assert torch.allclose(group_norm_by_sums(x, norm), want, rtol=1e-4, atol=1e-4)


def test_group_norm_by_sums_keeps_fp32_statistics_under_autocast():
    norm = _randomised(nn.GroupNorm(4, 16))
    x = (torch.randn(2, 16, 8, 8) + 3.0).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = group_norm_by_sums(x, norm)
    assert got.dtype == torch.float32
    want = F.group_norm(x.float(), 4, norm.weight, norm.bias, norm.eps)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)


def test_group_norm_is_the_module_itself_outside_compiled_eval():
    norm = _randomised(nn.GroupNorm(4, 16)).eval()
    x = torch.randn(2, 16, 6, 6)
    assert torch.equal(group_norm(x, norm), norm(x))


@pytest.mark.parametrize("kernel", [upsampled_kernel, upsampled_kernel_by_sums])
@pytest.mark.parametrize("size", [(5, 7), (8, 8)])
def test_upsampled_kernel_is_a_convolution_of_the_upsampled_input(size, kernel):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    want = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, padding=1)
    got = F.conv_transpose2d(x, kernel(weight), stride=2, padding=1)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_bfloat16_input_with_its_estimate_beside_it_gives_the_autocast_outputs(tiny_widths):
    """The backend assembles the input in bfloat16 (``assemble(..., dtype=torch.bfloat16)``) and passes
    the estimate in fp32 beside it: the outputs are those of the fp32 input under autocast, bit for bit.
    Taken from the rounded input instead, the colour would be off by up to a bfloat16 step."""
    net = _randomised(WorldNet(tiny_widths, patch=2)).eval()
    gen = torch.Generator().manual_seed(3)
    feats = torch.rand(2, 5, 64, 64, generator=gen) * 2 - 1
    mask = torch.rand(2, 64, 64, generator=gen) > 0.2
    warp = Warp(feats, torch.rand(2, 64, 64, generator=gen) * 4 + 0.3, mask)
    state, step = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), torch.zeros(2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = net(assemble(warp, None), state, step)
        x = assemble(warp, None, dtype=torch.bfloat16)
        got = net(x, state, step, current_estimate(warp, None))
        rounded = net(x, state, step)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert not torch.equal(rounded["rgb"], want["rgb"])


@pytest.mark.parametrize("compiled", [False, True])  # the forms compiled eval adds, run eagerly here
@pytest.mark.parametrize("patch", [1, 2, 4])
@pytest.mark.parametrize("upsampled_conv_from", [1, 64])  # the decoder's transposed convolution, or not
def test_eval_mode_patch_network_computes_the_training_form(
    tiny_widths, patch, upsampled_conv_from, compiled, monkeypatch
):
    """Eval mode folds the patches into a strided stem, unfolds them with a transposed head and never lays
    out a decoder block's upsampled input; under ``torch.compile`` also GroupNorm by sums, every FiLM in one
    fp32 matmul and the upsampling kernel by sums. The outputs are those of ``pixel_unshuffle`` -> stem ...
    upsample, concatenate ... head -> ``pixel_shuffle`` (what training runs)."""
    monkeypatch.setattr(network, "UPSAMPLED_CONV_MIN_BATCH", upsampled_conv_from)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiled)
    norms, by_sums = [], network_forms.group_norm_by_sums
    monkeypatch.setattr(network_forms, "group_norm_by_sums", lambda *a: norms.append(1) or by_sums(*a))
    merged, forward_upsampled = [], network.FiLMBlock.forward_upsampled
    monkeypatch.setattr(
        network.FiLMBlock, "forward_upsampled", lambda *a: merged.append(1) or forward_upsampled(*a)
    )
    net = _randomised(WorldNet(tiny_widths, patch=patch))
    x = torch.randn(2, 18, 64, 96).contiguous(memory_format=torch.channels_last)
    state, step = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), torch.tensor([0.0, 1.0])
    with torch.no_grad():
        trained = net.train()(x, state, step)
        served = net.eval()(x, state, step)
    assert len(merged) == (len(tiny_widths) - 1 if upsampled_conv_from == 1 else 0)
    assert len(norms) == (4 * len(tiny_widths) - 2 if compiled else 0)  # the compiled forms did run
    for key in trained:
        assert served[key].shape == trained[key].shape
        # logits reach ~100; GroupNorm by sums takes the variance as a difference of fp32 means
        rtol = 1e-3 if compiled else 1e-4
        assert torch.allclose(served[key], trained[key], rtol=rtol, atol=2e-4), key


def test_compiled_eval_computes_every_blocks_film_at_once_in_fp32(tiny_widths, monkeypatch):
    net = _randomised(WorldNet(tiny_widths)).eval()
    state, step = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]), torch.tensor([0.0, 1.0, 1.0])
    with torch.no_grad():
        plain = net.films(state, step)
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            merged = net.films(state, step)
    assert (
        [f.shape for f in merged]
        == [f.shape for f in plain]
        == [(3, 2 * w) for w in (*tiny_widths, *tiny_widths[-2::-1])]
    )
    assert all(
        f.dtype == torch.float32 and torch.allclose(f, p, rtol=1e-5, atol=1e-5)
        for f, p in zip(merged, plain, strict=True)
    )


class _HostTensorsSeen(torch.overrides.TorchFunctionMode):
    """Records every torch call given a tensor on the host (the CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if any(t.device.type == "cpu" for t in tensors):
            self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


@pytest.mark.parametrize("floor", [False, True])
def test_a_warmed_up_pass_reads_nothing_from_the_host(tiny_widths, monkeypatch, floor):
    """A CUDA graph captures ``LearnedWorldModel._forward`` (assembly, network, outputs) after warm-up passes
    and may not copy from the host then: a later pass on a device (``meta`` here) takes no host tensor, such
    as a module constant (the upsampling taps did, every pass: on a GPU the default backend failed at every
    graphed batch of ``UPSAMPLED_CONV_MIN_BATCH`` sessions or more)."""
    monkeypatch.setattr(network, "UPSAMPLED_CONV_MIN_BATCH", 1)  # the decoder's transposed convolution
    net = WorldNet(tiny_widths, floor=floor).to("meta").eval()
    # _forward reads the model's net, precision and device type (for autocast, off in fp32)
    model = SimpleNamespace(net=net, device=torch.device("cpu"), config=SimpleNamespace(precision="fp32"))

    def meta(*shape, dtype=torch.float32):
        return torch.empty(*shape, dtype=dtype, device="meta")

    b, h, w = 2, 64, 64
    warp = (meta(b, 5, h, w), meta(b, h, w), meta(b, h, w, dtype=torch.bool))
    inputs = (
        *warp,
        meta(b, HINT_CHANNELS, h, w),
        meta(b),
        None,
        meta(b, 2),
        meta(b),
        meta(b, h, w) if floor else None,
    )
    with torch.no_grad():
        LearnedWorldModel._forward(model, *inputs)  # warm-up
        with _HostTensorsSeen() as seen:
            out = LearnedWorldModel._forward(model, *inputs)
    assert seen.calls == []
    assert out["colour"].shape == (b, h, w, 3) and out["planes"].shape == (b, 5, h, w)
