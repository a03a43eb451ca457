"""FLOPs of one network forward and the machine's fp32 matmul peak, in GFLOP/s (1 multiply-add = 2 FLOPs)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from world_model.bench.timing import synchronizer, time_calls
from world_model.model.network import IN_CHANNELS, STATE_DIM, WorldNet


def forward_flops(net: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of ``net(*inputs)`` as torch counts them: convolutions and matrix products only (norms and
    activations are left out, as they are in every published FLOP figure)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(*inputs)
    return int(counter.get_total_flops())


def worldnet_flops(net: WorldNet, batch: int, height: int, width: int) -> int:
    """FLOPs of one ``WorldNet`` pass over ``batch`` frames of ``height`` x ``width``; one frame of the
    learned backend costs ``sampler_steps`` such passes (the warp and splatting are not counted)."""
    dev = next(net.parameters()).device
    x = torch.zeros(batch, IN_CHANNELS, height, width, device=dev)
    return forward_flops(net, x, torch.zeros(batch, STATE_DIM, device=dev), torch.zeros(batch, device=dev))


def matmul_peak(device: torch.device | str, size: int, seconds: float) -> dict[str, float]:
    """The best rate of ``[size, size] @ [size, size]`` fp32 matmuls on ``device`` over ``seconds``, with
    the threads torch uses now (so the peak is that of the threads the model gets)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    times = time_calls(lambda: a @ b, seconds, synchronizer(device))
    return {
        "gflops": 2 * size**3 / float(times.seconds.min()) / 1e9,
        "matmul_size": size,
        "calls": times.calls,
    }
