"""FLOPs of one network forward and the machine's fp32 matmul peak, in GFLOP/s (1 multiply-add = 2 FLOPs)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dreamx_bench.timing import synchronizer, time_calls
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
    """The best rate of a ``[size, size] @ [size, size]`` fp32 product on ``device`` over ``seconds``, with
    the threads torch uses now (so the peak is that of the threads the model gets), computed two ways:
    ``torch.matmul`` (BLAS) and the same product as a channels-last 1x1 convolution (oneDNN / cuDNN, the
    libraries convolutions run on). ``gflops`` is the better of the two: on an AMD CPU, MKL's matmul ran
    at half the rate oneDNN's convolutions reach, and a peak below what convolutions do is no peak. On CUDA,
    cuDNN runs fp32 convolutions on TF32 tensor cores unless ``torch.backends.cudnn.allow_tf32`` is off
    (``conv_tf32``): the network's convolutions too, so that rate is their ceiling (on an H100, 370 TFLOP/s
    against the matmul's strict-fp32 52)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    sync = synchronizer(device)
    matmul = time_calls(lambda: a @ b, seconds / 2, sync)
    # a [1, size, rows, cols] image (rows * cols = size pixels) through [size, size, 1, 1] weights
    rows = 2 ** (max(size.bit_length() - 1, 0) // 2)
    image = torch.randn(1, size, rows, size // rows, device=device).contiguous(
        memory_format=torch.channels_last
    )
    weight = b[:, :, None, None].contiguous(memory_format=torch.channels_last)
    conv = time_calls(lambda: torch.conv2d(image, weight), seconds / 2, sync)
    flops = 2 * size * (rows * (size // rows)) * size
    rates = {"matmul_gflops": 2 * size**3 / float(matmul.seconds.min()) / 1e9}
    rates["conv1x1_gflops"] = flops / float(conv.seconds.min()) / 1e9
    return {
        "gflops": max(rates.values()),
        **rates,
        "conv_tf32": torch.device(device).type == "cuda" and torch.backends.cudnn.allow_tf32,
        "matmul_size": size,
        "calls": matmul.calls + conv.calls,
    }
