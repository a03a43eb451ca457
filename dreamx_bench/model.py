"""``dreamx-bench-model``: frames/s of the learned backend alone (no server), per batch size.

    dreamx-bench-model                       # batch 1, 8, 32; chunks of 4 frames; shipped weights
    dreamx-bench-model --batch 1 64 --sampler-steps 2
    dreamx-bench-model --precision fp32      # default auto: bf16 where native (AVX512-BF16, AMX, a GPU)
    dreamx-bench-model --cpu-compile         # torch.compile on the CPU (about a minute per batch size)
    dreamx-bench-model --device cuda --batch 1 32 256
    dreamx-bench-model --batch 32 --phases   # also where the time goes: retrieval, warp, network, ...

Sessions start from banked seeds and walk forward while turning (a circle of about 1 m radius every 120
frames), so memory retrieval and warping do their real work; each generates ``--warmup-frames`` frames
before it is timed, so its memory is as full as in a long episode. Prints frames/s (all sessions together)
and milliseconds per generate call (mean, median, p95). With ``--phases``, each batch size then runs as long
again with its phases timed (``dreamx_bench.phases``) and prints milliseconds per frame for each.
``dreamx-bench`` runs the same measurement next to the env path and a DIAMOND-size yardstick.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from dreamx_bench.phases import timed_phases
from dreamx_bench.timing import WARMUP_FRAMES, add_warmup_argument, time_calls
from world_model.model.device import DEVICES
from world_model.model.learned import (
    PRECISIONS,
    LearnedConfig,
    LearnedWorldModel,
    add_weights_argument,
)


def walk(batch: int, k: int) -> np.ndarray:
    """Relative poses [batch, k, 4, 4]: 5 cm forward and 3 degrees of turn per frame."""
    rel = np.tile(np.eye(4), (batch, k, 1, 1))
    for i in range(k):
        a = math.radians(3.0 * (i + 1))
        rel[:, i, [0, 0, 2, 2], [0, 2, 0, 2]] = [math.cos(a), math.sin(a), -math.sin(a), math.cos(a)]
        rel[:, i, 2, 3] = 0.05 * (i + 1)
    return rel


def bench(
    model: LearnedWorldModel,
    batch: int,
    chunk: int,
    seconds: float,
    warmup_frames: int = WARMUP_FRAMES,
    phases: bool = False,
) -> dict:
    """Frames/s of ``generate`` calls of ``chunk`` frames for ``batch`` sessions, and milliseconds per
    call (mean, median, 95th percentile), over ``seconds`` after ``warmup_frames`` untimed frames. With
    ``phases``, then as many calls again with their phases timed: ``phases_ms``, milliseconds per frame."""
    sids = [model.open(s % 256)[0] for s in range(batch)]
    rel = walk(batch, chunk)
    phases_ms = {}
    try:
        for _ in range(max(0, warmup_frames - chunk) // chunk):  # time_calls warms up with one more
            model.generate(sids, rel, [[] for _ in sids])
        times = time_calls(lambda: model.generate(sids, rel, [[] for _ in sids]), seconds)
        if phases:
            with timed_phases(model) as phase_times:
                for _ in range(times.calls):
                    model.generate(sids, rel, [[] for _ in sids])
            phases_ms = {"phases_ms": phase_times.per_frame_ms()}
    finally:
        for sid in sids:
            model.close(sid)
    stats = times.summary()
    return {
        "batch": batch,
        "chunk": chunk,
        "warmup_frames": warmup_frames,
        "frames_per_s": stats["calls"] * chunk * batch / times.elapsed_s,
        **stats,
        **phases_ms,
    }


def format_phases(phases_ms: dict[str, float]) -> str:
    """The phases of ``bench(..., phases=True)`` as indented lines: ms per frame and share of the total."""
    total = phases_ms["total"]
    return "\n".join(
        f"{'':>6}{name:<20} {ms:>8.4f} ms/frame {100 * ms / total:>5.1f}%" for name, ms in phases_ms.items()
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="dreamx-bench-model", description=__doc__.split("\n\n")[0])
    add_weights_argument(p)
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8, 32], help="sessions per call")
    p.add_argument("--chunk", type=int, default=4, help="frames per call (default 4)")
    p.add_argument("--sampler-steps", type=int, default=1)
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="network precision (default auto: bf16 where the device has it natively and, on a CPU, it "
        "measured faster; else fp32)",
    )
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA if any (default)")
    p.add_argument("--cpu-compile", action="store_true", help="torch.compile the network on the CPU")
    p.add_argument(
        "--no-triton-norm",
        action="store_true",
        help="GPU: the network blocks' normalisation in torch ops, not the Triton kernel (to compare)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="measurement time per batch size")
    add_warmup_argument(p, "session")
    p.add_argument(
        "--phases",
        action="store_true",
        help="then time each batch size's phases too (retrieval, warp, network, ...): ms per frame",
    )
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    model = LearnedWorldModel(
        LearnedConfig(
            weights=args.weights,
            sampler_steps=args.sampler_steps,
            precision=args.precision,
            device=args.device,
            cpu_compile=args.cpu_compile,
            triton_norm=not args.no_triton_norm,
        )
    )
    compiled = ", compiled" if args.cpu_compile and model.device.type == "cpu" else ""
    norm = f", Triton norm {'off' if args.no_triton_norm else 'on'}" if model.device.type == "cuda" else ""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, weights {model.checkpoint}, "
        f"{model.config.precision}{compiled} on {model.device}{norm}"
    )
    print(f"{'batch':>5} {'chunk':>5} {'frames/s':>10} {'ms/call':>9} {'median':>8} {'p95':>8}")
    rows = []
    for b in args.batch:
        r = bench(model, b, args.chunk, args.seconds, args.warmup_frames, args.phases)
        rows.append(r)
        r |= {  # what ran, beside each figure (auto resolved)
            "weights": model.checkpoint,
            "precision": model.config.precision,
            "cpu_compile": bool(compiled),
            "device": str(model.device),
            "threads": torch.get_num_threads(),
        }
        print(
            f"{r['batch']:>5} {r['chunk']:>5} {r['frames_per_s']:>10.1f} {r['ms_per_call']:>9.1f}"
            f" {r['median_ms']:>8.1f} {r['p95_ms']:>8.1f}"
        )
        if args.phases:
            print(format_phases(r["phases_ms"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
