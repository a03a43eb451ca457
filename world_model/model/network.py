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

In eval mode some operations take a form that computes the same function faster; those forms, and the
blocks' normalisation, are in ``network_forms``. Training keeps the plain forms the shipped weights were
trained with.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from world_model.model.network_forms import (
    compiled_eval,
    film_norm_torch,
    fused_norm_works,
    strided_stem,
    transposed_head,
    upsampled_kernel,
    upsampled_kernel_by_sums,
)
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
