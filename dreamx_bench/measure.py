"""The three measurements of ``dreamx-bench``, each a section of its report: the learned backend alone,
the env + server path, the DIAMOND-size yardstick. Each prints one table line per point as it goes."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import torch

from dreamx_bench.diamond_ref import DiamondRefConfig, DiamondRefUNet, sample_next_frame
from dreamx_bench.flops import forward_flops, worldnet_flops
from dreamx_bench.model import bench as bench_learned
from dreamx_bench.report import HEADER, point_line
from dreamx_bench.serve import bench_env, failure_reason
from dreamx_bench.timing import WARMUP_FRAMES, synchronizer, time_calls
from world_model.model.acceleration import CompiledForward
from world_model.model.device import resolve_precision
from world_model.model.learned import LearnedConfig, LearnedWorldModel

YARDSTICK_NOTE = "randomly initialised DIAMOND-size UNet: a speed yardstick only, its frames are noise"


def with_flops(point: dict[str, Any], flops_per_frame: float, peak_gflops: float) -> dict[str, Any]:
    """``point`` plus ``gflops`` (achieved by its frames/s) and ``share_of_peak`` (of ``peak_gflops``)."""
    gflops = point["frames_per_s"] * flops_per_frame / 1e9
    return dict(point, gflops=gflops, share_of_peak=gflops / peak_gflops)


def measure_learned(
    batch_sizes: list[int],
    chunk: int,
    seconds: float,
    peaks: dict[str, float],
    config: LearnedConfig,
    devices: list[str],
    warmup_frames: int = WARMUP_FRAMES,
) -> dict[str, Any]:
    """``LearnedWorldModel.generate`` of ``chunk`` frames for each batch of sessions, on each device of
    ``devices`` (``peaks``: device -> GFLOP/s), after ``warmup_frames`` untimed frames per session."""
    points: dict[str, list[dict[str, Any]]] = {}
    precision: dict[str, str] = {}  # what ran on each device (config.precision may be auto)
    for dev in devices:
        model = LearnedWorldModel(dataclasses.replace(config, device=dev))
        cfg = model.config
        precision[dev] = cfg.precision
        flops = worldnet_flops(model.net, 1, cfg.height, cfg.width) * cfg.sampler_steps
        if not points:
            print(f"learned backend: {flops / 1e9:.3f} GFLOP/frame, one call = {chunk} frame(s) per session")
            print(HEADER)
        points[dev] = []
        for b in batch_sizes:
            point = dict(bench_learned(model, b, chunk, seconds, warmup_frames), device=dev)
            points[dev].append(with_flops(point, flops, peaks[dev]))
            print(point_line(f"learned backend alone, {cfg.precision}", points[dev][-1]), flush=True)
        model.shutdown()
    return {
        "weights": model.checkpoint,
        "sampler_steps": cfg.sampler_steps,
        "precision": precision,
        "cpu_compile": cfg.cpu_compile,
        "patch": model.net.patch,
        "resolution": [cfg.height, cfg.width],
        "flops_per_frame": flops,
        "frames_per_call": chunk,
        "points": points,
    }


def measure_env(
    backends: list[str],
    batch_sizes: list[int],
    chunk: int,
    seconds: float,
    resolution: int,
    learned_flops: float,
    peaks: dict[str, float],
    learned_options: dict[str, Any] | None = None,
    warmup_frames: int = WARMUP_FRAMES,
    lanes: list[int] | None = None,
) -> dict[str, Any]:
    """``dreamx-bench-serve``'s env path with as many envs as each batch size; frames/s = env-steps/s x
    ``chunk`` (frames per step) after ``warmup_frames`` untimed frames per env; ``learned_options``
    configure the learned backend (device, precision). For each of ``lanes`` (default [1]) > 1, the same
    with the envs in that many lanes (``dreamx_env.lanes``), listed as "<backend>, <n> lanes".
    A backend that fails is reported and left out."""
    learned_options = learned_options or {}
    print(f"env + server path: frames/s = env-steps/s x {chunk} frame(s) per step; ms/call = per vector step")
    print(HEADER)
    points: dict[str, list[dict[str, Any]]] = {}
    for backend, laned in itertools.product(backends, lanes or [1]):
        key = backend if laned == 1 else f"{backend}, {laned} lanes"
        points[key] = []
        for n in batch_sizes:
            label = f"env + server, {key}"
            try:
                options = learned_options if backend == "learned" else {}
                r = bench_env(backend, n, seconds, resolution, chunk, options, warmup_frames, laned)
            except Exception as exc:  # e.g. a backend that is not installed: the other figures still count
                print(f"{label:<32} {'cpu':>6} {n:>5}  failed: {failure_reason(exc)}", flush=True)
                continue
            rate, ms = r["env_steps_per_s"] * chunk, r["ms_per_vector_step"]
            device = learned_options.get("device", "cpu") if backend == "learned" else "cpu"
            point = dict(r, device=device, batch=n, frames_per_s=rate, ms_per_call=ms)
            if backend == "learned":
                point = with_flops(point, learned_flops, peaks[device])
            points[key].append(point)
            print(point_line(label, point), flush=True)
    return {"frames_per_step": chunk, "points": points}


def bench_yardstick(
    net: DiamondRefUNet,
    batch: int,
    seconds: float,
    steps: int,
    size: int,
    precision: str = "fp32",
    forward: Any = None,
) -> dict[str, Any]:
    """Frames/s of ``sample_next_frame`` for ``batch`` sessions at ``size`` x ``size`` (one frame per call,
    ``steps`` network passes), on the device ``net`` is on, in channels-last layout as the learned network
    runs, under bfloat16 autocast when ``precision`` is bf16, through ``forward`` (e.g. ``net`` compiled)
    when given."""
    cfg, dev = net.cfg, next(net.parameters()).device
    gen = torch.Generator().manual_seed(0)
    past = torch.rand(batch, cfg.num_steps_conditioning * cfg.img_channels, size, size, generator=gen)
    past = (2 * past - 1).to(dev).contiguous(memory_format=torch.channels_last)
    actions = torch.randint(0, cfg.num_actions, (batch, cfg.num_steps_conditioning), generator=gen).to(dev)

    def call():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return sample_next_frame(net, past, actions, steps, forward)

    times = time_calls(call, seconds, synchronizer(dev))
    stats = times.summary()
    return {
        "device": dev.type,
        "batch": batch,
        "frames_per_s": stats["calls"] * batch / times.elapsed_s,
        **stats,
    }


def measure_yardstick(
    batch_sizes: list[int],
    devices: list[str],
    seconds: float,
    steps: int,
    size: int,
    peaks: dict[str, float],
    precision: str = "fp32",
    cpu_compile: bool = False,
) -> dict[str, Any]:
    """The DIAMOND-size yardstick at each batch size on each device; ``peaks``: device -> GFLOP/s. It gets
    what the learned model gets: ``precision`` (``auto`` resolved per device as the model resolves it), and
    ``torch.compile`` on the CPU with ``cpu_compile``."""
    net = DiamondRefUNet(DiamondRefConfig()).eval()
    params = sum(p.numel() for p in net.parameters())
    c, t = net.cfg.img_channels, net.cfg.num_steps_conditioning
    one = (
        torch.zeros(1, c, size, size),
        torch.zeros(1),
        torch.zeros(1, t * c, size, size),
        torch.zeros(1, t).long(),
    )
    flops = forward_flops(net, *one) * steps
    print(
        f"yardstick: {params / 1e6:.2f} M parameters, {flops / 1e9:.3f} GFLOP per frame ({steps} passes), "
        f"one call = 1 frame per session; {YARDSTICK_NOTE}"
    )
    print(HEADER)
    points: dict[str, list[dict[str, Any]]] = {}
    ran: dict[str, str] = {}
    for dev in devices:
        net.to(dev, memory_format=torch.channels_last)
        forward = CompiledForward(net, cpp_wrapper=True) if cpu_compile and dev == "cpu" else None
        ran[dev] = resolve_precision(precision, torch.device(dev))
        points[dev] = []
        for b in batch_sizes:
            point = bench_yardstick(net, b, seconds, steps, size, ran[dev], forward)
            points[dev].append(with_flops(point, flops, peaks[dev]))
            print(point_line(f"DIAMOND-size yardstick, {ran[dev]}", points[dev][-1]), flush=True)
    return {
        "params": params,
        "resolution": [size, size],
        "denoising_steps": steps,
        "precision": ran,
        "cpu_compile": cpu_compile,
        "flops_per_frame": flops,
        "frames_per_call": 1,
        "note": YARDSTICK_NOTE,
        "points": points,
    }


def frame_rate_ratios(
    columns: dict[str, list[dict[str, Any]]], yardstick: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per batch size of ``yardstick``: each column's frames/s over the yardstick's (None where missing)."""
    rates = {name: {p["batch"]: p["frames_per_s"] for p in points} for name, points in columns.items()}
    return [
        {"batch": y["batch"]}
        | {
            name: (col[y["batch"]] / y["frames_per_s"] if y["batch"] in col else None)
            for name, col in rates.items()
        }
        for y in yardstick
    ]
