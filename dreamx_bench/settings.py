"""Which precision and compile setting is fastest on this CPU: every setting timed in interleaved rounds.

    python -m dreamx_bench.settings                                  # learned_v1, batch 1 and 32
    python -m dreamx_bench.settings --weights learned_fast --settings auto:eager fp32:compiled
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python -m dreamx_bench.settings                              # as if the CPU had AVX2 only

This machine's speed drifts by tens of percent from minute to minute, so separate ``dreamx-bench-model``
runs cannot tell settings 10% apart. Here one model per setting is built in one process, each with its own
sessions (warmed as in a long episode), and the settings take turns: each round times a few ``generate``
calls of every setting, and the figure is the median over rounds. Prints frames/s per setting and batch
size, with the CPU's instruction sets; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from dreamx_bench.machine import describe_machine
from dreamx_bench.model import walk
from world_model.model.learned import LearnedConfig, LearnedWorldModel, add_weights_argument
from world_model.options import PRECISIONS

CHUNK = 4  # frames per generate call, as the benchmarks
WARMUP_CALLS = 40  # untimed calls per setting and batch size: memories fill, compiles are done
FRAMES_PER_TURN = 256  # frames each setting generates per round (at least 2 calls)


def parse_setting(text: str) -> tuple[str, bool]:
    """``"fp32:compiled"`` -> ``("fp32", True)``; the precision is one of ``PRECISIONS``."""
    precision, _, form = text.partition(":")
    if precision not in PRECISIONS or form not in ("eager", "compiled"):
        raise argparse.ArgumentTypeError(
            f"a setting is PRECISION:FORM with PRECISION one of {list(PRECISIONS)} and FORM eager or "
            f"compiled, e.g. fp32:compiled; got {text!r}"
        )
    return precision, form == "compiled"


def setting_argument(text: str) -> str:
    """``--settings``' type: the text, once :func:`parse_setting` accepts it."""
    parse_setting(text)
    return text


def compare(
    weights: str, settings: list[str], batch_sizes: list[int], rounds: int, warmup_calls: int = WARMUP_CALLS
) -> dict[str, Any]:
    """Median ms a frame of each setting at each batch size, over ``rounds`` interleaved rounds, after
    ``warmup_calls`` untimed calls of each."""
    models = {}
    for name in settings:
        precision, compiled = parse_setting(name)
        models[name] = LearnedWorldModel(
            LearnedConfig(weights=weights, precision=precision, cpu_compile=compiled)
        )
    results: dict[str, dict[str, float]] = {name: {} for name in settings}
    for batch in batch_sizes:
        rel, none = walk(batch, CHUNK), [[] for _ in range(batch)]
        sessions = {name: [m.open(s % 256)[0] for s in range(batch)] for name, m in models.items()}
        for name, m in models.items():
            for _ in range(warmup_calls):
                m.generate(sessions[name], rel, none)
        calls = max(2, FRAMES_PER_TURN // (CHUNK * batch))
        times: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(rounds):
            for name, m in models.items():
                start = time.perf_counter()
                for _ in range(calls):
                    m.generate(sessions[name], rel, none)
                times[name].append((time.perf_counter() - start) / (calls * CHUNK * batch))
        for name, m in models.items():
            ms = 1e3 * statistics.median(times[name])
            results[name][str(batch)] = ms
            label = f"{Path(weights).stem:>14} batch {batch:>3}  {name:<14}"
            print(f"{label} {ms:8.3f} ms a frame  {1e3 / ms:8.1f} frames/s")
            for sid in sessions[name]:
                m.close(sid)
    return {"weights": weights, "rounds": rounds, "ms_per_frame": results}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m dreamx_bench.settings",
        description=__doc__.split("\n\n")[0],
        epilog="Settings are PRECISION:FORM, e.g. auto:eager (the default), fp32:compiled, bf16:eager.",
    )
    add_weights_argument(p)
    p.add_argument(
        "--settings",
        nargs="+",
        default=["auto:eager", "fp32:compiled", "bf16:eager", "bf16:compiled"],
        type=setting_argument,
        help="the settings to compare (default: %(default)s)",
    )
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32], help="sessions per call")
    p.add_argument("--rounds", type=int, default=12, help="interleaved rounds (default: %(default)s)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    machine = describe_machine()
    print(
        f"{machine['cpu_model']}: {', '.join(machine['cpu_instruction_sets']) or 'no AVX2'}; torch's kernels "
        f"{machine['torch_cpu_capability']}; {machine['torch_threads']} torch threads"
    )
    result = compare(args.weights, args.settings, args.batch_sizes, args.rounds) | {"machine": machine}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
