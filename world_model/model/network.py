"""``WorldNet``: a small UNet that turns reprojected memory into the next frame (RGB, depth, semantics).

Inputs (``IN_CHANNELS`` at H x W), built by ``conditioning.py``:

=====  ==========================================================================================
0-2    warped memory colour in [-1, 1] (0 where nothing landed)
3      warped inverse depth (``inverse_depth``)
4      validity mask of the warp
5      lights state when the warped pixel was seen (±1, 0 where empty)
6      door pixels in the warp (1 where the memory saw the door)
7      depth known (0 only when encoding a user's first frame: colour given, depth to predict)
8-10   current estimate of the frame (step 1: the warp; later steps: the previous step's output)
11     refinement step flag (0 on the first step, 1 after)
12-17  event hints (``world_state.WorldState.hints``): prop colour, object mask, paint mask, inverse depth
18     with ``floor``: the floor plane's inverse depth along each pixel's ray (``reproject.floor_depth``:
       from the target camera's known height and pitch; 0 where the ray never meets it)
=====  ==========================================================================================

The floor channel gives the network the absolute scale a single image lacks: where the floor is, its depth
is known from the camera, and every surface standing on it meets it there.

Global conditioning (FiLM on every block): world state ``[lights, door]``. Outputs: colour as a correction
of the estimate, inverse depth, semantic logits over ``semantics.SEMANTIC_CLASSES``.

``patch`` > 1 makes the cheap variant: the input is folded into ``patch`` x ``patch`` pixel patches
(space-to-depth) so the UNet runs at 1/``patch`` of the resolution, and the head unfolds its outputs back
to full resolution (a 2x2 patch costs about a quarter of the FLOPs at the same widths).

In eval mode some operations take a form that computes the same function faster (the same values up to
float rounding): the patch fold and the stem become one strided convolution, the head and the unfold one
transposed convolution, from ``UPSAMPLED_CONV_MIN_BATCH`` frames on a decoder block's upsampling and
concatenation are never laid out (its first convolution runs on the upsampled half as a transposed
convolution of the low-resolution input, ``upsampled_kernel``: 4 taps a pixel instead of 9), and under
``torch.compile`` (``compiled_eval``) GroupNorm's statistics become per-channel sums and a matmul
(``group_norm``), every block's FiLM one fp32 matmul (``WorldNet.films``) and the upsampling kernel sums of
taps (``upsampled_kernel_by_sums``). On CUDA, outside ``torch.compile``, each block's normalisation,
modulation, residual and activation run as one Triton kernel (``film_norm_triton``). Training keeps the plain
forms the shipped weights were trained with.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from world_model.model.device import triton_available
from world_model.semantics import SEMANTIC_CLASSES

IN_CHANNELS = 18
OUT_CHANNELS = 3 + 1 + len(SEMANTIC_CLASSES)  # colour correction, inverse depth, semantic logits
STATE_DIM = 2
# eval batches at least this large take the decoder's upsampling as a transposed convolution (``FiLMBlock.
# forward_upsampled``); below, its extra convolutions cost more than the FLOPs they save (docs/speed.md)
UPSAMPLED_CONV_MIN_BATCH = 8
NEAREST_M = 0.25  # inverse depth is NEAREST_M / depth, clipped to [0, 1]: 1 at 0.25 m, 0 for the sky


def inverse_depth(depth):
    """Metric z-depth -> the network's inverse-depth code in [0, 1] (numpy or torch)."""
    if isinstance(depth, torch.Tensor):
        return (NEAREST_M / depth.clamp_min(NEAREST_M)).nan_to_num(0.0)
    with np.errstate(divide="ignore"):
        return np.clip(NEAREST_M / np.maximum(depth, NEAREST_M), 0.0, 1.0)


def depth_from_inverse(code: torch.Tensor, far_m: float = 1e3) -> torch.Tensor:
    """Inverse of :func:`inverse_depth`; codes below ``NEAREST_M / far_m`` are sky (inf)."""
    depth = NEAREST_M / code.clamp_min(1e-6)
    return torch.where(code < NEAREST_M / far_m * 10, torch.full_like(depth, float("inf")), depth)


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


class FiLMBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm, modulated by the world state, residual."""

    fused: bool | None = None  # the Triton normalisation: None on CUDA in inference (_fused), True, False

    def __init__(self, cin: int, cout: int, state_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, cout)
        self.film = nn.Linear(state_dim, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """``film``: ``self.film`` of the conditioning (``WorldNet.films`` computes every block's)."""
        return self._rest(self.conv1(x), self.skip(x), film)

    def forward_upsampled(self, low: torch.Tensor, high: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """``forward(cat([upsample_nearest_2x(low), high]))`` without laying out either: the convolutions
        split over the two inputs, the upsampled half's 3x3 one as a transposed convolution of ``low``, its
        1x1 skip at ``low``'s resolution, upsampled after."""
        if isinstance(self.skip, nn.Identity):
            raise ValueError("forward_upsampled needs a block whose input and output widths differ")
        n = low.shape[1]
        w, b = self.conv1.weight, self.conv1.bias
        kernel = upsampled_kernel_by_sums(w[:, :n]) if compiled_eval(self) else upsampled_kernel(w[:, :n])
        h = F.conv_transpose2d(low, kernel, stride=2, padding=1)
        h = h + F.conv2d(high, w[:, n:], b, padding=1)
        sw, sb = self.skip.weight, self.skip.bias
        skip = F.interpolate(F.conv2d(low, sw[:, :n]), scale_factor=2, mode="nearest")
        return self._rest(h, skip + F.conv2d(high, sw[:, n:], sb), film)

    def _rest(self, h: torch.Tensor, skip: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """The block after its first convolution ``h``, given its skip path ``skip``."""
        norm = film_norm_torch
        if self._fused(h):
            from world_model.model.film_norm_triton import film_norm_triton as norm
        return norm(self.conv2(norm(h, self.norm1)), self.norm2, film, skip)

    def _fused(self, h: torch.Tensor) -> bool:
        """Whether this pass normalises with the Triton kernel (``film_norm_triton``): in inference (eval
        mode, no gradient) outside ``torch.compile`` (inductor fuses these passes itself), on CUDA where
        the kernel works (:func:`fused_norm_works`). ``fused`` True forces it (the tests, under
        ``TRITON_INTERPRET=1`` on the CPU), False never."""
        if self.training or torch.is_grad_enabled() or torch.compiler.is_compiling() or self.fused is False:
            return False
        return self.fused is True or (h.is_cuda and fused_norm_works(h.device))


class WorldNet(nn.Module):
    """UNet over ``len(widths)`` resolutions with channel widths ``widths``, the first at 1/``patch`` of the
    image resolution (``patch=1``: full resolution)."""

    def __init__(
        self, widths: tuple[int, ...] = (32, 64, 96, 128), patch: int = 1, floor: bool = False
    ) -> None:
        super().__init__()
        if patch < 1:
            raise ValueError(f"patch must be >= 1, got {patch}")
        self.widths = tuple(widths)
        self.patch = patch
        self.floor = floor
        self.in_channels = IN_CHANNELS + int(floor)
        self.state_mlp = nn.Sequential(nn.Linear(STATE_DIM + 1, 64), nn.SiLU(), nn.Linear(64, 64))
        self.stem = nn.Conv2d(self.in_channels * patch * patch, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        prev = widths[0]
        for i, w in enumerate(widths):
            self.down.append(nn.Identity() if i == 0 else nn.Conv2d(prev, w, 3, stride=2, padding=1))
            self.enc.append(FiLMBlock(w, w, 64))
            prev = w
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(widths) - 2, -1, -1):
            self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
            self.dec.append(FiLMBlock(widths[i + 1] + widths[i], widths[i], 64))
        self.head = nn.Conv2d(widths[0], OUT_CHANNELS * patch * patch, 1)

    def films(self, state: torch.Tensor, step: torch.Tensor) -> list[torch.Tensor]:
        """Every block's FiLM output ``[B, 2 * width]`` (encoder blocks, then decoder) for world state
        ``state`` at refinement step ``step``. In compiled eval (see :func:`compiled_eval`) in fp32 and one
        matmul for all blocks: 3 small matmuls a pass instead of 9, each in fp32 a fraction of what it takes
        in bf16 under autocast (4-9 against 17-18 us on the 2-core CPU)."""
        blocks = [*self.enc, *self.dec]
        cond = torch.cat([state, step[:, None].float()], dim=1)
        if not compiled_eval(self):
            s = self.state_mlp(cond)
            return [block.film(s) for block in blocks]
        with torch.autocast(cond.device.type, enabled=False):
            weight = torch.cat([block.film.weight for block in blocks])
            bias = torch.cat([block.film.bias for block in blocks])
            both = F.linear(self.state_mlp(cond.float()), weight, bias)
            return list(both.split([block.film.out_features for block in blocks], dim=1))

    def forward(
        self, x: torch.Tensor, state: torch.Tensor, step: torch.Tensor, estimate: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``x [B, in_channels, H, W]``, ``state [B, STATE_DIM]``, ``step [B]`` (0 first step, 1 refine);
        ``estimate [B, 3, H, W]``: channels 8-10 of ``x`` in full precision, where ``x`` comes rounded to
        bfloat16 (the colour is a correction of it). Returns ``rgb [B,3,H,W]`` in [-1, 1], ``inv_depth
        [B,H,W]`` in [0, 1], ``semantic`` logits."""
        films = iter(self.films(state, step))
        p = self.patch
        if p == 1:
            h = self.stem(x)
        else:
            h = self.stem(F.pixel_unshuffle(x, p)) if self.training else strided_stem(self.stem, x, p)
        skips = []
        for down, block in zip(self.down, self.enc, strict=True):
            h = block(down(h), next(films))
            skips.append(h)
        skips.pop()
        for up, block in zip(self.up, self.dec, strict=True):
            if self.training or x.shape[0] < UPSAMPLED_CONV_MIN_BATCH:
                h = block(torch.cat([up(h), skips.pop()], dim=1), next(films))
            else:
                h = block.forward_upsampled(h, skips.pop(), next(films))
        if p == 1:
            out = self.head(h)
        else:
            out = F.pixel_shuffle(self.head(h), p) if self.training else transposed_head(self.head, h, p)
        estimate = x[:, 8:11] if estimate is None else estimate
        return {
            "rgb": (estimate + out[:, 0:3]).clamp(-1.0, 1.0),
            "inv_depth": torch.sigmoid(out[:, 3]),
            "semantic": out[:, 4:],
        }
