"""The Triton FiLM normalisation kernel against the torch form, run by Triton's interpreter on CPU."""

import importlib

import pytest
import torch
from torch import nn

from world_model.model.learned import LearnedConfig, LearnedWorldModel
from world_model.model.network import FiLMBlock, WorldNet
from world_model.model.network_forms import film_norm_torch, fused_norm_works


@pytest.fixture(scope="module")
def interpreted():
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITON_INTERPRET", "1")  # read when the kernels are decorated: (re)load the module under it
    import world_model.model.film_norm_triton as kernels

    kernels = importlib.reload(kernels)
    # small blocks: the interpreter's reductions cost per element, and a group then spans several blocks
    # (the loops run more than once)
    mp.setattr(kernels, "ELEMENTS", 64)
    yield kernels
    mp.undo()
    importlib.reload(kernels)  # compiled kernels again for whatever runs next (a GPU machine's CUDA tests)


def _norm(channels: int, groups: int, make: torch.Generator) -> nn.GroupNorm:
    norm = nn.GroupNorm(groups, channels)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(channels, generator=make))
        norm.bias.copy_(0.2 * torch.randn(channels, generator=make))
    return norm


@pytest.mark.parametrize(
    "channels, groups, film, skip, channels_last",  # 4 channels a group, and 12 (not a power of 2)
    [
        (32, 8, False, False, False),
        (32, 8, True, True, True),
        (24, 2, True, False, True),
        (24, 2, False, True, False),
    ],
)
def test_triton_film_norm_matches_the_torch_form(interpreted, channels, groups, film, skip, channels_last):
    make = torch.Generator().manual_seed(channels + groups + 2 * film + skip)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = (3 * torch.randn(2, channels, 9, 7, generator=make) + 1).contiguous(memory_format=layout)
    modulation = torch.randn(2, 2 * channels, generator=make) if film else None
    residual = torch.randn(2, channels, 9, 7, generator=make) if skip else None
    norm = _norm(channels, groups, make)
    with torch.no_grad():
        ref = film_norm_torch(x, norm, modulation, residual)
        got = interpreted.film_norm_triton(x, norm, modulation, residual)
    assert got.dtype == torch.float32 and got.stride() == x.stride()  # laid out as its input
    assert ref.abs().mean() > 0.3  # a real activation, not zeros
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_triton_film_norm_reads_bf16_and_strided_modulation(interpreted):
    """Under autocast the convolutions hand it bfloat16, and ``WorldNet.films`` one split of a wide FiLM
    output."""
    make = torch.Generator().manual_seed(5)
    x = (
        torch.randn(2, 16, 8, 8, generator=make)
        .to(torch.bfloat16)
        .contiguous(memory_format=torch.channels_last)
    )
    both = torch.randn(2, 3 * 32, generator=make)
    film = both[:, 32:64]  # a view: frame stride 96
    norm = _norm(16, 4, make)
    with torch.no_grad():
        ref = film_norm_torch(x.float(), norm, film)
        got = interpreted.film_norm_triton(x, norm, film)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_triton_film_norm_refuses_a_wrong_modulation(interpreted):
    x, norm = torch.zeros(2, 16, 4, 4), nn.GroupNorm(4, 16)
    with pytest.raises(ValueError, match="film must be"):
        interpreted.film_norm_triton(x, norm, torch.zeros(2, 16))
    with pytest.raises(ValueError, match="do not split"):
        interpreted.film_norm_triton(x, nn.GroupNorm(3, 15))


def _fused(net: nn.Module, on: bool | None) -> None:
    for block in net.modules():
        if isinstance(block, FiLMBlock):
            block.fused = on


def test_the_network_with_the_kernel_gives_the_plain_outputs(interpreted):
    torch.manual_seed(0)
    net = WorldNet(widths=(8, 16), patch=1).eval()
    for block in net.modules():  # trained FiLM, not the zero initialisation: the modulation is used
        if isinstance(block, FiLMBlock):
            nn.init.normal_(block.film.weight, std=0.5)
    x, state, step = torch.randn(2, 18, 16, 16), torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), torch.zeros(2)
    with torch.no_grad():
        _fused(net, False)
        plain = net(x, state, step)
        _fused(net, True)
        fused = net(x, state, step)
    for key in plain:
        assert torch.allclose(fused[key], plain[key], rtol=1e-3, atol=1e-4), key
    assert not torch.equal(fused["rgb"], plain["rgb"])  # the kernel ran: it rounds differently

    out = net(x, state, step)  # with gradients the plain form runs, forced or not (the kernel has none)
    assert out["rgb"].requires_grad and torch.equal(out["rgb"], plain["rgb"])


def test_the_kernel_is_not_used_on_the_cpu_unless_forced():
    net = WorldNet(widths=(8, 16), patch=1).eval()
    block = next(m for m in net.modules() if isinstance(m, FiLMBlock))
    with torch.no_grad():
        assert not block._fused(torch.zeros(1, 8, 4, 4))
        block.fused = True
        assert block._fused(torch.zeros(1, 8, 4, 4))
        block.train()
        assert not block._fused(torch.zeros(1, 8, 4, 4))  # training keeps the plain forms


def test_the_kernel_is_checked_before_use_and_left_aside_if_it_fails(interpreted, monkeypatch):
    check = fused_norm_works.__wrapped__  # uncached: each case below checks afresh
    cpu = torch.device("cpu")
    assert check(cpu)  # interpreted, it runs and matches

    def broken(*args):
        raise RuntimeError("no compiler for this device")

    monkeypatch.setattr(interpreted, "film_norm_triton", broken)
    with pytest.warns(UserWarning, match="fails on cpu, using torch: no compiler"):
        assert not check(cpu)
    monkeypatch.setattr(interpreted, "film_norm_triton", lambda x, *rest: x.float())
    with pytest.warns(UserWarning, match="is off on cpu"):
        assert not check(cpu)


def test_the_backend_option_leaves_the_kernel_aside(tiny_weights, monkeypatch):
    import world_model.model.film_norm_triton as kernels

    calls = []

    def kernel(x, *rest):  # stands in for the kernel: counts its launches
        calls.append(x.shape)
        return x.float()

    monkeypatch.setattr(kernels, "film_norm_triton", kernel)
    monkeypatch.setattr(FiLMBlock, "fused", True)  # forced for every block, as on a GPU where it works
    LearnedWorldModel(LearnedConfig(weights=str(tiny_weights))).open(3)
    assert calls  # the network's pass went through it
    calls.clear()
    off = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), triton_norm=False))
    off.open(3)
    assert not calls and off.info().extra["triton_norm"] is False
