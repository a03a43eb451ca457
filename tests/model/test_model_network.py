"""The eval-mode forms of ``WorldNet``'s operations compute what the training forms compute."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from world_model.model.network import WorldNet, group_norm, group_norm_by_sums


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


@pytest.mark.parametrize("patch", [2, 4])
def test_eval_mode_patch_network_computes_the_training_form(tiny_widths, patch):
    """Eval mode folds the patches into a strided stem and unfolds them with a transposed head; the outputs
    are those of ``pixel_unshuffle`` -> stem ... head -> ``pixel_shuffle`` (what training runs)."""
    net = _randomised(WorldNet(tiny_widths, patch=patch))
    x = torch.randn(2, 18, 64, 96).contiguous(memory_format=torch.channels_last)
    state, step = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), torch.tensor([0.0, 1.0])
    with torch.no_grad():
        trained = net.train()(x, state, step)
        served = net.eval()(x, state, step)
    for key in trained:
        assert served[key].shape == trained[key].shape
        assert torch.allclose(served[key], trained[key], rtol=1e-4, atol=2e-4), key  # logits reach ~100
