"""The forms of ``network.WorldNet``'s operations: each block's normalisation (``film_norm_torch``, the
reference of the Triton kernel), and the eval-only forms that compute the same functions faster.

In eval mode some of ``network.WorldNet``'s operations take a form that computes the same function faster (the
same values up to float rounding): the patch fold and the stem become one strided convolution, the head and
the unfold one transposed convolution, from ``network.UPSAMPLED_CONV_MIN_BATCH`` frames on a decoder block's
upsampling and concatenation are never laid out (its first convolution runs on the upsampled half as a
transposed convolution of the low-resolution input, ``upsampled_kernel``: 4 taps a pixel instead of 9), and
under ``torch.compile`` (``compiled_eval``) GroupNorm's statistics become per-channel sums and a matmul
(``group_norm``), every block's FiLM one fp32 matmul (``WorldNet.films``) and the upsampling kernel sums of
taps (``upsampled_kernel_by_sums``). On CUDA, outside ``torch.compile``, each block's normalisation,
modulation, residual and activation run as one Triton kernel (``film_norm_triton``). Training keeps the plain
forms the shipped weights were trained with.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from world_model.model.device import triton_available


def compiled_eval(module: nn.Module) -> bool:
    """Whether ``module`` runs in eval mode under ``torch.compile``, where some operations take a form that
    inductor makes faster (the same function, other rounding); eager and training keep the plain forms."""
    return not module.training and torch.compiler.is_compiling()


def group_norm(x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm(x)``, in eval mode under ``torch.compile`` as :func:`group_norm_by_sums` (inductor reduces a
    group of a few channels-last channels one pixel at a time with a Welford update per element; the sums
    vectorise across all channels: the compiled network runs 5-15% faster). Eager and training: ``norm``."""
    if not compiled_eval(norm):
        return norm(x)
    return group_norm_by_sums(x, norm)


def group_norm_by_sums(x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm from per-channel sums of ``x`` and ``x**2`` and a group-averaging matmul, in fp32 (also
    under autocast: the variance is a difference of two means, which bf16 would not resolve)."""
    b, c, h, w = x.shape
    per_group = c // norm.num_groups
    with torch.autocast(x.device.type, enabled=False):
        xf = x.float()
        sums = torch.cat([xf.sum((2, 3)), xf.square().sum((2, 3))])  # [2B, C]
        group = torch.arange(c, device=x.device) // per_group
        average = (group[:, None] == group[None, :]).float() / (h * w * per_group)
        mean, mean_sq = (sums @ average).split(b)  # each channel's group mean of x and x**2, [B, C]
        scale = torch.rsqrt((mean_sq - mean.square()).clamp_min(0.0) + norm.eps) * norm.weight.float()
        shift = norm.bias.float() - mean * scale
        return xf * scale[:, :, None, None] + shift[:, :, None, None]


def film_norm_torch(
    x: torch.Tensor, norm: nn.GroupNorm, film: torch.Tensor | None = None, skip: torch.Tensor | None = None
) -> torch.Tensor:
    """A FiLM block's normalisation: ``silu(norm(x) * (1 + scale) + shift + skip)``, ``film [B, 2C]`` the
    modulation's scale and shift (``None``: none), ``skip`` the residual (``None``: none). The plain form
    (training, the CPU, ``torch.compile``), and the reference of the Triton kernel ``film_norm_triton``."""
    h = group_norm(x, norm)
    if film is not None:
        scale, shift = film[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
    return F.silu(h if skip is None else h + skip)


@functools.cache
def fused_norm_works(device: torch.device) -> bool:
    """Whether ``film_norm_triton`` runs on ``device`` and matches :func:`film_norm_torch` there, checked
    once per device on a small input (on a GPU: at the first pass, before any CUDA graph is captured).
    Where it cannot compile or launch there, or disagrees, one warning, and the plain form from then on."""
    if not triton_available():
        return False
    from world_model.model.film_norm_triton import film_norm_triton  # Triton: imported only where used

    make = torch.Generator().manual_seed(0)
    x, skip = (torch.randn(2, 24, 6, 5, generator=make).to(device) for _ in range(2))
    film = torch.randn(2, 48, generator=make).to(device)
    norm = nn.GroupNorm(2, 24).to(device)
    try:
        got = film_norm_triton(x, norm, film, skip)
    except Exception as err:  # whatever stops Triton here (compiler, driver) stops only this kernel
        warnings.warn(f"the Triton FiLM normalisation fails on {device}, using torch: {err}", stacklevel=2)
        return False
    if not torch.allclose(got, film_norm_torch(x, norm, film, skip), rtol=1e-4, atol=1e-5):
        warnings.warn(f"the Triton FiLM normalisation is off on {device}, using torch", stacklevel=2)
        return False
    return True


def strided_stem(stem: nn.Conv2d, x: torch.Tensor, patch: int) -> torch.Tensor:
    """``stem(pixel_unshuffle(x, patch))`` as one convolution of stride ``patch`` with the kernel unfolded
    to ``patch`` times its size (no gather of the input into patches)."""
    w = stem.weight
    out, cin, k = w.shape[0], w.shape[1] // (patch * patch), w.shape[2]
    kernel = w.view(out, cin, patch, patch, k, k).permute(0, 1, 4, 2, 5, 3)  # -> [out, cin, ky, dy, kx, dx]
    kernel = kernel.reshape(out, cin, k * patch, k * patch)
    return F.conv2d(x, kernel, stem.bias, stride=patch, padding=stem.padding[0] * patch)


def transposed_head(head: nn.Conv2d, h: torch.Tensor, patch: int) -> torch.Tensor:
    """``pixel_shuffle(head(h), patch)`` (``head`` a 1x1 convolution) as one transposed convolution of
    stride ``patch``, plus the bias of each pixel's place in its patch."""
    w = head.weight
    out = w.shape[0] // (patch * patch)
    kernel = w.view(out, patch, patch, w.shape[1]).permute(3, 0, 1, 2)
    bias = head.bias.view(out, patch, patch).repeat(1, h.shape[2], h.shape[3])
    return F.conv_transpose2d(h, kernel, stride=patch) + bias


# a 3-tap kernel applied to a 2x nearest-upsampled signal, as the 4 taps of a stride-2 transposed kernel:
# outputs 2m take input m-1 (tap 3) and m (tap 1), outputs 2m+1 take m (tap 2) and m+1 (tap 0)
_UPSAMPLED_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
_UPSAMPLED_ROWS = [[a for a in range(3) if _UPSAMPLED_TAPS[y, a]] for y in range(4)]  # the taps, as indices


def upsampled_kernel(weight: torch.Tensor) -> torch.Tensor:
    """For a 3x3 ``weight [out, in, 3, 3]``: the ``[in, out, 4, 4]`` kernel ``k`` such that
    ``conv_transpose2d(x, k, stride=2, padding=1)`` is
    ``conv2d(upsample_nearest_2x(x), weight, padding=1)``."""
    taps = _upsampled_taps(weight.device, weight.dtype)
    return torch.einsum("ya,xb,oiab->ioyx", taps, taps, weight)


@functools.cache
def _upsampled_taps(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``_UPSAMPLED_TAPS`` on ``device``, copied there once: a CUDA graph's capture may not copy from the
    host, and its warm-up passes run first, so the capture finds the taps already there."""
    return _UPSAMPLED_TAPS.to(device, dtype)


def upsampled_kernel_by_sums(weight: torch.Tensor) -> torch.Tensor:
    """:func:`upsampled_kernel` as sums of the weight's taps (the 0/1 ``_UPSAMPLED_TAPS`` say which): one
    fused loop under ``torch.compile``, where the einsum is a batched matmul call of its own (41 us a
    pass)."""

    def four(w: torch.Tensor, dim: int) -> torch.Tensor:
        taps = w.unbind(dim)
        return torch.stack([sum(taps[a] for a in row) for row in _UPSAMPLED_ROWS], dim)

    return four(four(weight, 2), 3).permute(1, 0, 2, 3)
