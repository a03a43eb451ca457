"""``ObjectFinder``: a small learned segmenter that finds the scene's objects in a frame, by shape.

Targeted events ("push the nearest object", "paint the nearest ball red") must find their object in what
the camera shows. ``WorldNet``'s semantic head is trained for whole frames, where floor and walls dominate
the loss, and it misses most objects (1.6% of door pixels, a 185-pixel ball labelled floor). The finder is
trained for this one job on the engine's frames, with the object classes weighted up, and runs only when a
targeted event needs it, so it costs nothing per frame.

Input: colour ``[B, 3, H, W]`` in [-1, 1]. Output: logits over ``FINDER_CLASSES`` (nothing, then the object
shapes). ``find`` turns one frame into semantic class ids (``semantics.CLASS_ID``; 0 where no object).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from world_model.semantics import CLASS_ID, OBJECT_SHAPES

FINDER_CLASSES = ("none", *OBJECT_SHAPES)
# finder class -> semantic class id (0, "sky", stands for "no object": callers only look for objects)
TO_SEMANTIC = np.array([0, *(CLASS_ID[s] for s in OBJECT_SHAPES)], np.uint8)
TO_FINDER = np.zeros(256, np.int64)  # semantic class id -> finder class (0, "none", for all but objects)
TO_FINDER[TO_SEMANTIC[1:]] = np.arange(1, len(FINDER_CLASSES))
DEFAULT_FINDER = Path(__file__).parent / "weights" / "object_finder.safetensors"
WIDTHS = (16, 32, 64)
FORMAT = "dreamx-object-finder"


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.GroupNorm(4, c_out),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.GroupNorm(4, c_out),
        nn.SiLU(),
    )


class ObjectFinder(nn.Module):
    """A three-level UNet (``WIDTHS`` channels, 16x16 at the bottom for 64x64 frames)."""

    def __init__(self) -> None:
        super().__init__()
        a, b, c = WIDTHS
        self.enc = nn.ModuleList([_block(3, a), _block(a, b), _block(b, c)])
        self.dec = nn.ModuleList([_block(c + b, b), _block(b + a, a)])
        self.head = nn.Conv2d(a, len(FINDER_CLASSES), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc[0](x)
        e2 = self.enc[1](F.max_pool2d(e1, 2))
        e3 = self.enc[2](F.max_pool2d(e2, 2))
        d2 = self.dec[0](torch.cat([F.interpolate(e3, scale_factor=2.0), e2], 1))
        d1 = self.dec[1](torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        return self.head(d1)

    @torch.no_grad()
    def object_labels(self, colour: torch.Tensor) -> torch.Tensor:
        """Semantic class ids ``[B, H, W]`` (uint8, on ``colour``'s device) of the objects in a batch of
        frames ``colour [B, 3, H, W]`` in [-1, 1]; 0 where the finder sees no object."""
        to_semantic = torch.from_numpy(TO_SEMANTIC).to(colour.device)
        x = colour.float().contiguous(memory_format=torch.channels_last)
        return to_semantic[self(x).argmax(1)]

    @torch.no_grad()
    def find(self, rgb: np.ndarray) -> np.ndarray:
        """Semantic class ids ``[H, W]`` (uint8) of the objects in one frame ``rgb [H, W, 3]`` (uint8, or
        float in [0, 1]); 0 where the finder sees no object."""
        x = torch.from_numpy(np.ascontiguousarray(rgb)).float()
        x = x / 255.0 if rgb.dtype == np.uint8 else x
        x = x.to(self.head.weight.device)
        return self.object_labels(x.permute(2, 0, 1)[None] * 2 - 1)[0].cpu().numpy()


def save_finder(path: str | Path, finder: ObjectFinder, meta: dict[str, str]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in finder.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": FORMAT, "widths": json.dumps(WIDTHS), **meta})


def load_finder(path: str | Path = DEFAULT_FINDER) -> ObjectFinder:
    """The finder with its shipped (or given) weights, in eval mode; ``ValueError`` if the file is not a
    finder of this architecture."""
    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata() or {})
    if header.get("format") != FORMAT or json.loads(header.get("widths", "null")) != list(WIDTHS):
        raise ValueError(f"{path} is not {FORMAT} weights with widths {WIDTHS}")
    finder = ObjectFinder()
    finder.load_state_dict(load_file(str(path)))
    return finder.eval()
