"""Where the world model's tensors live: one rule for training, inference and benchmarks."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else the CPU; ``cpu``; ``cuda`` (or ``cuda:N``), which must
    be available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"device must be one of {list(DEVICES)} (or cuda:N), got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but torch sees no CUDA GPU; use device=cpu or auto")
    return torch.device(name)
