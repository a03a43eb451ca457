"""``dreamx-bench-engine``: frames/s of the MuJoCo ground truth per process, for 1..N processes at once.

    dreamx-bench-engine                                   # 64x64, 1 and 2 processes
    dreamx-bench-engine --resolutions 64x64 128x128 --processes 1 2 4 --frames 1000 --seeds 0 1 2 3

Each process builds the worlds of the scene seeds (timed: ``build_s``, per world), walks a random walk
in each that keeps clear of walls (``trajectories.random_walk``) and renders every frame, with all
outputs (RGB + depth + segmentation) and with RGB + depth only. The processes start timing together (a
barrier), so the per-process rate with N processes shows how rendering shares the machine. Scenes differ
a lot in cost (open courtyards show much sky), hence several. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from dataclasses import dataclass

import numpy as np

_barrier = None


@dataclass(frozen=True)
class BenchCase:
    seeds: tuple[int, ...]
    height: int
    width: int
    segmentation: bool
    frames: int


def _init(barrier) -> None:
    global _barrier
    _barrier = barrier


def _run_case(case: BenchCase) -> tuple[float, float]:
    """(mean build seconds, frames per second) of one process walking ``case.frames`` frames, split
    evenly between the scenes of ``case.seeds``."""
    from world_model.engine.navigation import free_space
    from world_model.engine.trajectories import random_walk
    from world_model.engine.world import GroundTruthWorld, RenderConfig

    render = RenderConfig(case.height, case.width, segmentation=case.segmentation)
    worlds, builds, walks = [], [], []
    for seed in case.seeds:
        start = time.perf_counter()
        worlds.append(GroundTruthWorld(seed, render))
        builds.append(time.perf_counter() - start)
        n = case.frames // len(case.seeds) + 1
        walk = random_walk(
            np.random.default_rng(seed), n, start=worlds[-1].spec.start, is_free=free_space(worlds[-1].spec)
        )
        walks.append(walk.keys[1:])
        for k in walks[-1][:5]:  # warm-up: the first draws compile shaders and upload textures
            worlds[-1].step_keys(k)
    if _barrier is not None:
        _barrier.wait()
    start = time.perf_counter()
    for world, keys in zip(worlds, walks, strict=True):
        for k in keys:
            world.step_keys(k)
    fps = sum(map(len, walks)) / (time.perf_counter() - start)
    for world in worlds:
        world.close()
    return float(np.mean(builds)), fps


def bench(
    height: int, width: int, segmentation: bool, processes: int, frames: int, seeds: tuple[int, ...]
) -> dict[str, float]:
    """Per-process frames/s (mean over ``processes`` processes, each walking the same scenes), total
    frames/s and mean world build time in seconds."""
    ctx = mp.get_context("spawn")
    cases = [BenchCase(seeds, height, width, segmentation, frames)] * processes
    with ctx.Pool(processes, initializer=_init, initargs=(ctx.Barrier(processes),)) as pool:
        results = pool.map(_run_case, cases)
    builds, rates = zip(*results, strict=True)
    return {
        "per_process": float(np.mean(rates)),
        "total": float(np.sum(rates)),
        "build_s": float(np.mean(builds)),
    }


def _resolution(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"resolution must be HEIGHTxWIDTH such as 64x64, got {text!r}"
        ) from None
    return h, w


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dreamx-bench-engine",
        description="Frames/s of the MuJoCo ground-truth engine per process (random walk, all outputs vs "
        "RGB+depth), for several processes rendering at once, plus the world build time.",
    )
    parser.add_argument(
        "--resolutions",
        nargs="+",
        type=_resolution,
        default=[(64, 64)],
        metavar="HxW",
        help="image sizes (default: 64x64)",
    )
    parser.add_argument(
        "--processes",
        nargs="+",
        type=int,
        default=[1, 2],
        metavar="N",
        help="numbers of processes rendering at once (default: 1 2)",
    )
    parser.add_argument("--frames", type=int, default=500, help="frames timed per process (default: 500)")
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2, 3],
        metavar="SEED",
        help="scenes walked by every process, frames split between them (default: 0 1 2 3)",
    )
    args = parser.parse_args(argv)
    if min(args.processes) < 1 or args.frames < 1:
        parser.error("--processes and --frames must be >= 1")
    print(
        f"{'resolution':>10}  {'outputs':<16} {'procs':>5}  {'frames/s/proc':>13}  {'frames/s total':>14}  "
        f"{'build_s':>7}"
    )
    for height, width in args.resolutions:
        for segmentation, outputs in ((True, "rgb+depth+seg"), (False, "rgb+depth")):
            for n in args.processes:
                r = bench(height, width, segmentation, n, args.frames, tuple(args.seeds))
                print(
                    f"{f'{height}x{width}':>10}  {outputs:<16} {n:>5}  {r['per_process']:>13.1f}  "
                    f"{r['total']:>14.1f}  {r['build_s']:>7.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
