"""Triton kernel for a FiLM block's normalisation and modulation: ``silu(group_norm(x) * (1 + scale) + shift
+ skip)`` in one launch (used on CUDA for the network's eager passes and CUDA graphs, see
``network.FiLMBlock``; ``TRITON_INTERPRET=1`` runs it on CPU for tests). The plain form it replaces is five
to seven launches (the norm's statistics and affine, the modulation, the residual, the activation), each
reading and writing the whole activation. One program normalises one (frame, group): it reads the group
twice, for the mean and then the variance of the centred values (steadier than a difference of two means
where the mean is large against the spread), and a third time to write the result, all in float32.
``network_forms.film_norm_torch`` is the reference it is tested against.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

ELEMENTS = 2048  # a program's block: about this many elements of its group at a time

# Only builtins of triton.language in the kernel (full, exp, reduce with a combine of its own), not its
# @jit library functions (zeros, sum, sigmoid): those are decorated when triton is first imported, so under
# TRITON_INTERPRET set later (the tests) they would not run.


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _total(x):
    """The sum of all elements of a 2-D block."""
    return tl.reduce(tl.reduce(x, 1, _add), 0, _add)


@triton.jit
def _film_norm_kernel(
    x_ptr,
    skip_ptr,
    weight_ptr,
    bias_ptr,
    film_ptr,
    out_ptr,
    pixels,
    channels,
    eps,
    x_frame,
    x_channel,
    x_pixel,
    skip_frame,
    skip_channel,
    skip_pixel,
    out_frame,
    out_channel,
    out_pixel,
    film_frame,
    PER_GROUP: tl.constexpr,
    PER_GROUP_POW2: tl.constexpr,
    BLOCK: tl.constexpr,
    FILM: tl.constexpr,
    SKIP: tl.constexpr,
):
    frame, group = tl.program_id(0), tl.program_id(1)
    lane = tl.arange(0, PER_GROUP_POW2)
    channel = group * PER_GROUP + lane
    in_group = lane < PER_GROUP
    rows = tl.arange(0, BLOCK)
    x_base = x_ptr + frame * x_frame + channel[None, :] * x_channel
    count = pixels * PER_GROUP

    total = tl.full([BLOCK, PER_GROUP_POW2], 0.0, tl.float32)
    for start in range(0, pixels, BLOCK):
        pixel = start + rows
        ok = (pixel < pixels)[:, None] & in_group[None, :]
        total += tl.load(x_base + pixel[:, None] * x_pixel, mask=ok, other=0.0).to(tl.float32)
    mean = _total(total) / count

    total = tl.full([BLOCK, PER_GROUP_POW2], 0.0, tl.float32)
    for start in range(0, pixels, BLOCK):
        pixel = start + rows
        ok = (pixel < pixels)[:, None] & in_group[None, :]
        x = tl.load(x_base + pixel[:, None] * x_pixel, mask=ok, other=0.0).to(tl.float32)
        centred = tl.where(ok, x - mean, 0.0)
        total += centred * centred
    rstd = 1.0 / tl.sqrt_rn(_total(total) / count + eps)

    # the norm's affine and the modulation folded into one per-channel scale and shift
    weight = tl.load(weight_ptr + channel, mask=in_group, other=0.0).to(tl.float32)
    scale = rstd * weight
    shift = tl.load(bias_ptr + channel, mask=in_group, other=0.0).to(tl.float32) - mean * scale
    if FILM:  # film [B, 2C]: the modulation's scale, then its shift
        film_base = film_ptr + frame * film_frame + channel
        gain = 1.0 + tl.load(film_base, mask=in_group, other=0.0).to(tl.float32)
        scale = scale * gain
        shift = shift * gain + tl.load(film_base + channels, mask=in_group, other=0.0).to(tl.float32)

    for start in range(0, pixels, BLOCK):
        pixel = start + rows
        ok = (pixel < pixels)[:, None] & in_group[None, :]
        x = tl.load(x_base + pixel[:, None] * x_pixel, mask=ok, other=0.0).to(tl.float32)
        y = x * scale[None, :] + shift[None, :]
        if SKIP:
            at = skip_ptr + frame * skip_frame + channel[None, :] * skip_channel + pixel[:, None] * skip_pixel
            y += tl.load(at, mask=ok, other=0.0).to(tl.float32)
        y = y / (1.0 + tl.exp(-y))  # silu
        at = out_ptr + frame * out_frame + channel[None, :] * out_channel + pixel[:, None] * out_pixel
        tl.store(at, y, mask=ok)


def _pixel_strides(t: torch.Tensor, name: str) -> tuple[int, int, int]:
    """Frame, channel and pixel strides of ``t [B, C, H, W]``, whose H and W must flatten into one pixel
    axis (contiguous or channels last, as the network's activations are)."""
    if t.stride(2) != t.shape[3] * t.stride(3):
        raise ValueError(f"{name} must be contiguous or channels last, got strides {t.stride()}")
    return t.stride(0), t.stride(1), t.stride(3)


def film_norm_triton(
    x: torch.Tensor,
    norm: nn.GroupNorm,
    film: torch.Tensor | None = None,
    skip: torch.Tensor | None = None,
) -> torch.Tensor:
    """``silu(norm(x) * (1 + scale) + shift + skip)`` for ``x [B, C, H, W]``, ``film [B, 2C]`` (scale, then
    shift; ``None``: no modulation) and ``skip`` like ``x`` (``None``: no residual), in float32 (as the plain
    form returns under autocast, where the norm runs in float32), laid out as ``x`` is. Inference only: no
    gradient."""
    b, c, h, w = x.shape
    if c % norm.num_groups:
        raise ValueError(f"{c} channels do not split into {norm.num_groups} groups")
    if film is not None and (film.shape != (b, 2 * c) or film.stride(1) != 1):
        raise ValueError(f"film must be [{b}, {2 * c}] with unit channel stride, got {list(film.shape)}")
    if skip is not None and skip.shape != x.shape:
        raise ValueError(f"skip must be shaped as x {list(x.shape)}, got {list(skip.shape)}")
    out = torch.empty_like(x, dtype=torch.float32)  # keeps x's layout
    per_group = c // norm.num_groups
    pow2 = triton.next_power_of_2(per_group)
    _film_norm_kernel[(b, norm.num_groups)](
        x, x if skip is None else skip, norm.weight, norm.bias, x if film is None else film, out,
        h * w, c, norm.eps,
        *_pixel_strides(x, "x"), *_pixel_strides(x if skip is None else skip, "skip"),
        *_pixel_strides(out, "out"), 0 if film is None else film.stride(0),
        PER_GROUP=per_group, PER_GROUP_POW2=pow2, BLOCK=max(16, ELEMENTS // pow2),
        FILM=film is not None, SKIP=skip is not None,
    )  # fmt: skip
    return out
