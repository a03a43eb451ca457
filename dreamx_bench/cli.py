"""``dreamx-bench``: frames/s of the learned world model, alone and behind the env + server, against the
machine's matmul peak and a DIAMOND-size diffusion yardstick, all in one run.

    dreamx-bench                                                  # batch 1, 8, 32, 128; 3 s per point
    dreamx-bench --batch-sizes 1 8 32 --seconds 2 --out bench_out  # + bench_out/bench.json, bench.png
    dreamx-bench --backends learned oracle --no-cuda
    dreamx-bench --batch-sizes 1 32 256                           # on a GPU: also CUDA (in bf16 there)
    dreamx-bench --devices cuda --batch-sizes 1 32 256            # the GPU alone
    dreamx-bench --weights learned_fast --cpu-compile   # the cheap network, compiled (bf16 if native)
    dreamx-bench --lanes 1 2      # the env + server path also in 2 lanes (a broker, 2 one-thread workers)

It first prints the machine: the CPU's model and instruction sets (avx2, avx512f, and avx512_bf16, amx_bf16
or Arm's bf16: native bf16, without which --precision auto runs fp32), threads, torch, the GPU.
At each batch size B it measures:
  learned alone  LearnedWorldModel(LearnedConfig()).generate for B sessions, --frames-per-step frames per
                 call (as dreamx-bench-model): frames/s, ms per call (mean, median, p95), after
                 --warmup-frames untimed frames per session (its memory full, as in a long episode)
  env + server   a B-env DreamX/Explore-v0 vector env -> client -> server -> backend (as dreamx-bench-serve):
                 frames/s = env-steps/s x frames per step, ms per vector step, after as many untimed
                 frames per env; with --lanes N, also the envs in N lanes on a broker and N workers
  yardstick      a randomly initialised DIAMOND-size diffusion UNet (about 4.4 M parameters, 64x64, 3 Euler
                 denoising passes per frame; dreamx_bench.diamond_ref), one next frame per call. A
                 speed yardstick only: its frames are noise. It runs as the learned network does: channels-
                 last, in --precision, compiled with --cpu-compile.
GFLOP/s counts each network's convolutions and matmuls (torch's FlopCounterMode; the learned backend's
warping and splatting are not counted); % peak divides it by the best fp32 rate of a large matrix product
measured on the same device with the same threads, as a matmul and as a 1x1 convolution (on this
project's AMD CPU, MKL's matmul reaches half of what oneDNN's convolutions do). Everything runs on the
CPU, and with CUDA available (unless --no-cuda) the learned backend, the yardstick and the peak are
measured on the GPU too, the env + server path on the GPU only; the model/yardstick ratios compare the
two on the same device. Benchmarks, not tests: the figures depend on the machine and on what else runs
on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from dreamx_bench.flops import matmul_peak
from dreamx_bench.machine import describe_machine
from dreamx_bench.measure import frame_rate_ratios, measure_env, measure_learned, measure_yardstick
from dreamx_bench.report import plot_frames_per_s, ratio_lines
from dreamx_bench.timing import add_warmup_argument
from world_model.host_memory import keep_freed_memory
from world_model.model.learned import PRECISIONS, LearnedConfig, add_weights_argument

# large enough to run near the peak, small enough to take well under a second per matmul
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="dreamx-bench",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--batch-sizes",
        nargs="+",
        type=int,
        default=[1, 8, 32, 128],
        metavar="B",
        help="sessions per call / number of envs / yardstick batch (default: 1 8 32 128)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="measurement time per point, after one warm-up call (default: 3)",
    )
    add_warmup_argument(p, "session / env (alone / behind the server)")
    p.add_argument(
        "--backends",
        nargs="+",
        default=["learned"],
        help="backends for the env + server path: learned | oracle | constant | constant-flat "
        "(default: learned)",
    )
    p.add_argument(
        "--lanes",
        nargs="+",
        type=int,
        default=[1],
        metavar="N",
        help="env + server path: also with the envs in N lanes on a broker and N workers, each with "
        "cores / N threads (dreamx_env.lanes; default: 1, one server)",
    )
    p.add_argument(
        "--frames-per-step",
        type=int,
        default=4,
        help="frames per generate call and per env step (default: 4)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="the learned network's precision, alone and behind the server, and the yardstick's (default: "
        "auto, bf16 where the device has it natively and, on a CPU, it measured faster; else fp32)",
    )
    add_weights_argument(p, whose="the learned backend's ")
    p.add_argument(
        "--cpu-compile",
        action="store_true",
        help="torch.compile the learned network and the yardstick on the CPU (and the z-buffer where its C "
        "kernel cannot be built; about a minute per batch size)",
    )
    p.add_argument("--denoising-steps", type=int, default=3, help="yardstick passes per frame (default: 3)")
    p.add_argument(
        "--matmul-size",
        type=int,
        default=None,
        help="side of the square fp32 matmul for the peak (default: 2048 on CPU, 8192 on CUDA)",
    )
    p.add_argument(
        "--devices",
        nargs="+",
        choices=("cpu", "cuda"),
        help="where to measure (default: cpu, and cuda when torch sees a GPU)",
    )
    p.add_argument(
        "--no-cuda", action="store_true", help="measure everything on the CPU only (--devices cpu)"
    )
    p.add_argument(
        "--out", metavar="DIR", help="write DIR/bench.json (machine, settings, figures) and DIR/bench.png"
    )
    args = p.parse_args(argv)
    if min(args.lanes) < 1:
        p.error("--lanes must be >= 1")
    if min(args.batch_sizes) < 1 or args.seconds <= 0 or args.frames_per_step < 1 or args.denoising_steps < 1:
        p.error("--batch-sizes, --frames-per-step and --denoising-steps must be >= 1, --seconds > 0")
    cuda = torch.cuda.is_available()
    if args.devices and args.no_cuda:
        p.error("--devices and --no-cuda together: give one")
    if args.devices and "cuda" in args.devices and not cuda:
        p.error("--devices cuda: torch sees no CUDA device here")
    args.devices = list(
        dict.fromkeys(args.devices or ["cpu"] + (["cuda"] if cuda and not args.no_cuda else []))
    )
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of ``dreamx-bench`` (``args`` from ``parse_args``), printed as it goes; returns
    what ``--out`` writes to ``bench.json``."""
    devices = args.devices
    kept = keep_freed_memory()  # as the CPU backend does, here for every measurement alike (yardstick too)
    machine = describe_machine() | {"malloc": "freed memory kept" if kept else "default"}
    print(
        ", ".join(
            f"{k} {(' '.join(v) or 'none') if isinstance(v, list) else v}"
            for k, v in machine.items()
            if v is not None
        )
    )
    peak = {d: matmul_peak(d, args.matmul_size or MATMUL_SIZE[d], args.seconds) for d in devices}
    print(
        "fp32 peak, the better of a matmul and the same product as a 1x1 convolution: "
        + ", ".join(
            f"{d} {p['gflops']:.1f} GFLOP/s (matmul {p['matmul_gflops']:.1f}, 1x1 convolution "
            f"{p['conv1x1_gflops']:.1f}{', TF32 tensor cores' if p['conv_tf32'] else ''})"
            for d, p in peak.items()
        )
    )
    config = LearnedConfig(weights=args.weights, precision=args.precision, cpu_compile=args.cpu_compile)
    chunk = args.frames_per_step
    gflops = {d: p["gflops"] for d, p in peak.items()}
    learned = measure_learned(
        args.batch_sizes, chunk, args.seconds, gflops, config, devices, args.warmup_frames
    )
    env = measure_env(
        args.backends,
        args.batch_sizes,
        chunk,
        args.seconds,
        config.height,
        learned["flops_per_frame"],
        gflops,
        learned_options={
            "device": devices[-1],
            "precision": args.precision,
            "weights": args.weights,
            "cpu_compile": args.cpu_compile,
        },
        warmup_frames=args.warmup_frames,
        lanes=args.lanes,
    )
    yardstick = measure_yardstick(
        args.batch_sizes,
        devices,
        args.seconds,
        args.denoising_steps,
        config.height,
        gflops,
        args.precision,
        args.cpu_compile,
    )
    ratios = {}
    for dev in devices:
        columns = {"alone/yardstick": learned["points"][dev]}
        columns |= {f"env:{k}/yardstick": v for k, v in env["points"].items() if v and v[0]["device"] == dev}
        ratios[dev] = frame_rate_ratios(columns, yardstick["points"][dev])
        print(f"\nframes/s ratio, model / yardstick (both on {dev}):")
        print("\n".join(ratio_lines(ratios[dev])))
    results = {
        "machine": machine,
        "settings": vars(args),
        "peak": peak,
        "learned": learned,
        "env": env,
        "yardstick": yardstick,
        "ratios": ratios,
    }
    if args.out:
        write_outputs(results, Path(args.out))
    return results


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """``out/bench.json`` (``results``) and ``out/bench.png`` (frames/s against batch size, log-log)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=1))
    series = {f"learned backend alone ({d})": v for d, v in results["learned"]["points"].items()}
    series |= {f"env + server, {k} ({v[0]['device']})": v for k, v in results["env"]["points"].items() if v}
    series |= {f"DIAMOND-size yardstick ({d})": v for d, v in results["yardstick"]["points"].items()}
    m = results["machine"]
    title = f"{m['cpu_model']}, torch threads: {m['torch_threads']}" + (
        f", {m['cuda_device']}" if "cuda" in results["yardstick"]["points"] else ""
    )
    plot_frames_per_s(series, out / "bench.png", title)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
