"""What the figures were measured on: CPU model and instruction sets, threads, torch version, CUDA device,
CPU warp kernel."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from world_model.model.device import NATIVE_BF16, cpu_bf16_faster, cpu_features, cpu_model
from world_model.model.native import available as native_available

# the instruction sets the CPU figures hinge on: AVX2 / AVX-512 fp32, and native bf16 (x86 AVX512_BF16 or
# AMX, Arm BF16), without which bf16 is emulated at several times fp32's cost
CPU_INSTRUCTION_SETS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "bf16")


def describe_machine() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "cpu_model": cpu_model(),
        "cpu_instruction_sets": [f for f in CPU_INSTRUCTION_SETS if f in cpu_features()],
        # the widest code torch's CPU kernels use here (lower where ATEN_CPU_CAPABILITY caps it)
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # where bf16 is native: whether it measured faster than fp32 (so precision "auto" picks it)
        "cpu_bf16_faster": cpu_bf16_faster() if cpu_features() & NATIVE_BF16 else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_warp": "C kernel" if native_available() else "torch",  # reproject.splat on the CPU
    }
