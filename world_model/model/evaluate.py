"""``dreamx-eval``: the learned model against the MuJoCo ground truth on validation seeds.

    dreamx-eval                                   # 64 validation seeds, shipped weights -> reports/learned_v1
    dreamx-eval --seeds 100000 100004 --quick     # a smoke run

Every protocol runs the same trajectories through the engine (truth) and the model (started from the
truth's first frame, following the truth's poses, chunks of ``--chunk`` frames):

- fidelity: PSNR/SSIM at horizons 1, 4, 16, 64, 256 on random walks, beside copy-last-frame (frame 0) and
  ground-truth-depth reprojection of frame 0;
- camera control: OpenCV essential-matrix poses between consecutive generated frames vs the commanded ones,
  and the same estimator on ground-truth frames (its floor);
- revisit consistency: ΔPSNR/ΔSSIM of revisit pairs over non-revisit pairs on out-and-back, closed-loop and
  translate-rotate trajectories (model and truth);
- events: for each event of the menu, is the frame generated with the event closer to the truth than the
  one generated without it, after it settles and again on revisit.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from world_model.engine.dataset import render_trajectory
from world_model.engine.scenes import make_scene
from world_model.engine.trajectories import Trajectory, make_trajectory
from world_model.engine.world import ENGINE_REVISION, GroundTruthWorld, RenderConfig
from world_model.events import EVENT_MENU, parse_prompt
from world_model.geometry import Intrinsics, reproject
from world_model.metrics import (
    camera_error,
    estimate_relative_pose,
    event_mask,
    non_revisit_pairs,
    psnr,
    relative_depth_error,
    revisit_pairs,
    ssim,
)
from world_model.model.device import DEVICES
from world_model.model.learned import (
    PRECISIONS,
    LearnedConfig,
    LearnedWorldModel,
    add_weights_argument,
)
from world_model.splits import SPLITS

HORIZONS = (1, 4, 16, 64, 256)
REVISIT_KINDS = ("out_and_back", "closed_loop", "translate_rotate")
EVENT_FRAME = 5  # events apply before this frame (the start of the second chunk of 4)
SETTLE_FRAME = 16
# events that only show after their opposite: the prelude runs in every arm of the trial
PRELUDE = {"lights on": "lights off", "close the door": "open the door"}


@dataclass
class Rollout:
    truth: dict[str, np.ndarray]  # render_trajectory arrays
    model: np.ndarray  # [T,H,W,3] uint8
    depth: np.ndarray | None = None  # [T,H,W] the model's metric depth (frame 0: predicted from the truth's)


TRUTH_CACHE: Path | None = None  # set by --truth-cache: ground-truth rollouts kept on disk between runs


def _truth_key(seed: int, traj: Trajectory, render: RenderConfig) -> str:
    """A name for the rollout ``traj`` renders in scene ``seed``: a hash of everything that decides it."""
    events = {t: [e.to_dict() for e in evs] for t, evs in sorted(traj.events.items())}
    start = None if traj.start is None else repr(traj.start)
    decides = [seed, traj.kind, traj.keys, events, start, repr(render), ENGINE_REVISION]
    text = json.dumps(decides, sort_keys=True, default=str)
    return f"{seed}_{traj.kind}_{hashlib.sha1(text.encode()).hexdigest()[:16]}"


def truth(seed: int, traj: Trajectory, render: RenderConfig) -> dict[str, np.ndarray]:
    """The engine's rendering of ``traj`` in scene ``seed`` (from ``TRUTH_CACHE`` when it holds it: the same
    seed, trajectory and camera render the same arrays, so comparing weights need not render them again)."""
    path = None if TRUTH_CACHE is None else TRUTH_CACHE / f"{_truth_key(seed, traj, render)}.npz"
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}
    world = GroundTruthWorld(seed, render)
    try:
        arrays = render_trajectory(world, traj)
    finally:
        world.close()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # evaluations sharing a cache write apart
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return arrays


def run_model(
    model: LearnedWorldModel,
    seeds: list[int],
    truths: list[dict],
    events: list[dict[int, list]],
    chunk: int,
    depths: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Generate along each truth's poses from its first frame, all seeds batched in each call. Returns the
    frames; ``depths``, when given (a list), receives each rollout's predicted depth ``[T, H, W]``."""
    opened = [
        model.open(s, start_pose=tr["poses"][0].astype(np.float64))
        for s, tr in zip(seeds, truths, strict=True)
    ]
    sids = [sid for sid, _, _ in opened]
    n = len(truths[0]["poses"])
    out = [np.empty_like(tr["rgb"]) for tr in truths]
    depth = [np.empty(tr["rgb"].shape[:3], np.float32) for tr in truths]
    for o, d, tr, (_, first, _) in zip(out, depth, truths, opened, strict=True):
        o[0], d[0] = tr["rgb"][0], first.depth[0]
    for t0 in range(1, n, chunk):
        t1 = min(n, t0 + chunk)
        rel = np.stack(
            [
                np.linalg.inv(model.pose(sid)) @ tr["poses"][t0:t1].astype(np.float64)
                for sid, tr in zip(sids, truths, strict=True)
            ]
        )
        evs = [[e for t in range(t0, t1) for e in ev.get(t, [])] for ev in events]
        frames = model.generate(sids, rel, evs)
        for o, d, f in zip(out, depth, frames, strict=True):
            o[t0:t1], d[t0:t1] = f.rgb, f.depth
    for sid in sids:
        model.close(sid)
    if depths is not None:
        depths.extend(depth)
    return out


def fidelity(model, seeds, render, chunk, frames, rng_seed=7) -> tuple[dict, list[Rollout]]:
    trajs = [
        make_trajectory("random", np.random.default_rng([rng_seed, s]), frames, spec=make_scene(s))
        for s in seeds
    ]
    truths = [truth(s, tr, render) for s, tr in zip(seeds, tqdm(trajs, desc="fidelity: truth"), strict=True)]
    depths: list[np.ndarray] = []
    gens = run_model(model, seeds, truths, [{} for _ in seeds], chunk, depths)
    intr = render.intrinsics
    rows = {}
    for h in [h for h in HORIZONS if h < frames]:
        model_p, copy_p, rep_p, model_s, copy_s, rep_s, depth_err = [], [], [], [], [], [], []
        for tr, gen, dep in zip(truths, gens, depths, strict=True):
            err = relative_depth_error(dep[h], tr["depth"][h])
            if err.size:
                depth_err.append(float(np.median(err)))
            gt = tr["rgb"][h]
            warped, _, _ = reproject(
                tr["rgb"][0],
                tr["depth"][0].astype(np.float32),
                tr["poses"][0].astype(np.float64),
                tr["poses"][h].astype(np.float64),
                intr,
            )
            model_p.append(psnr(gen[h], gt))
            copy_p.append(psnr(tr["rgb"][0], gt))
            rep_p.append(psnr(warped, gt))
            model_s.append(ssim(gen[h], gt))
            copy_s.append(ssim(tr["rgb"][0], gt))
            rep_s.append(ssim(warped, gt))
        rows[str(h)] = {
            "model_psnr": float(np.mean(model_p)),
            "copy_last_psnr": float(np.mean(copy_p)),
            "gt_depth_reprojection_psnr": float(np.mean(rep_p)),
            "model_ssim": float(np.mean(model_s)),
            "copy_last_ssim": float(np.mean(copy_s)),
            "gt_depth_reprojection_ssim": float(np.mean(rep_s)),
            # the median over pixels of |predicted - true| / true, averaged over rollouts
            "model_depth_rel_error": float(np.mean(depth_err)) if depth_err else None,
        }
    return rows, [Rollout(tr, g, d) for tr, g, d in zip(truths, gens, depths, strict=True)]


def camera_control(rollouts: list[Rollout], intr: Intrinsics, stride: int = 4) -> dict:
    errs = {"model": ([], []), "truth": ([], [])}
    for r in tqdm(rollouts, desc="camera control"):
        poses = r.truth["poses"].astype(np.float64)
        for t in range(1, len(poses), stride):
            for name, frames in (("model", r.model), ("truth", r.truth["rgb"])):
                e = camera_error(
                    estimate_relative_pose(frames[t - 1], frames[t], intr), poses[t - 1], poses[t]
                )
                errs[name][0].append(e.rotation_deg if e.ok else np.nan)
                errs[name][1].append(e.translation_deg)
    out = {}
    for name, (rot, trans) in errs.items():
        rot, trans = np.asarray(rot), np.asarray(trans)
        out[name] = {
            "rotation_deg": float(np.nanmedian(rot)),
            "translation_deg": float(np.nanmedian(trans)),
            "estimated_share": float(np.mean(np.isfinite(rot))),
        }
    out["rotation_ratio"] = out["model"]["rotation_deg"] / max(out["truth"]["rotation_deg"], 1e-9)
    out["translation_ratio"] = out["model"]["translation_deg"] / max(out["truth"]["translation_deg"], 1e-9)
    return out


def _pair_stats(frames: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[float, float]:
    if not pairs:
        return float("nan"), float("nan")
    return (
        float(np.mean([psnr(frames[i], frames[j]) for i, j in pairs])),
        float(np.mean([ssim(frames[i], frames[j]) for i, j in pairs])),
    )


LONG_KINDS = ("closed_loop", "out_and_back")  # the long side-by-side: walks that turn and come back


def long_rollouts(model, seeds, render, chunk, frames=257) -> list[Rollout]:
    """One long rollout per seed (``frames`` frames, each a walk of ``LONG_KINDS`` in turn) beside its
    ground truth: the report's ``long_rollout.gif``, where a person can see whether the room persists."""
    kinds = [LONG_KINDS[i % len(LONG_KINDS)] for i in range(len(seeds))]
    trajs = [
        make_trajectory(k, np.random.default_rng([17, s]), frames, spec=make_scene(s))
        for k, s in zip(kinds, seeds, strict=True)
    ]
    shown = tqdm(trajs, desc="long rollouts: truth")
    truths = [truth(s, tr, render) for s, tr in zip(seeds, shown, strict=True)]
    gens = run_model(model, seeds, truths, [{} for _ in seeds], chunk)
    return [Rollout(tr, gen) for tr, gen in zip(truths, gens, strict=True)]


def revisit(model, seeds, render, chunk, frames) -> tuple[dict, list[Rollout]]:
    out, shown = {}, []
    for kind in REVISIT_KINDS:
        trajs = [
            make_trajectory(kind, np.random.default_rng([11, s]), frames, spec=make_scene(s)) for s in seeds
        ]
        truths = [
            truth(s, tr, render)
            for s, tr in zip(seeds, tqdm(trajs, desc=f"revisit {kind}: truth"), strict=True)
        ]
        depths: list[np.ndarray] = []
        gens = run_model(model, seeds, truths, [{} for _ in seeds], chunk, depths)
        keys = ("model_dpsnr", "model_dssim", "truth_dpsnr", "truth_dssim", "pairs")
        acc = {k: [] for k in (*keys, "depth_pair_rel_error", "depth_pair_over_30pct")}
        for i, (tr, gen, dep) in enumerate(zip(truths, gens, depths, strict=True)):
            poses = tr["poses"].astype(np.float64)
            rev = revisit_pairs(poses)
            non = non_revisit_pairs(poses, max(len(rev), 16), np.random.default_rng([13, i]))
            if not rev or not non:
                continue
            for name, fr in (("model", gen), ("truth", tr["rgb"])):
                (rp, rs), (nps, nss) = _pair_stats(fr, rev), _pair_stats(fr, non)
                acc[f"{name}_dpsnr"].append(rp - nps)
                acc[f"{name}_dssim"].append(rs - nss)
            acc["pairs"].append(len(rev))
            # the two predictions of one view: how far apart the model's depths are at the revisit pairs
            errs = [relative_depth_error(dep[j], dep[i]) for i, j in rev]
            errs = np.concatenate(errs) if errs else np.zeros(0)
            if errs.size:
                acc["depth_pair_rel_error"].append(float(np.median(errs)))
                acc["depth_pair_over_30pct"].append(float(np.mean(errs > 0.3)))
        out[kind] = {
            k: (float(np.mean(v)) if k != "pairs" else int(np.sum(v))) if v else None for k, v in acc.items()
        }
        shown.append(Rollout(truths[0], gens[0]))
    vals = [out[k] for k in REVISIT_KINDS if out[k]["model_dpsnr"] is not None]
    out["mean"] = (
        {
            k: float(np.mean([v[k] for v in vals]))
            for k in ("model_dpsnr", "model_dssim", "truth_dpsnr", "truth_dssim", "depth_pair_rel_error")
            if all(v[k] is not None for v in vals)
        }
        if vals
        else {}
    )
    return out, shown


def _event_traj(start, prompt: str) -> tuple[Trajectory, Trajectory]:
    keys = [""] + [""] * (SETTLE_FRAME - 1) + ["J"] * 30 + ["L"] * 30
    pre = {1: parse_prompt(PRELUDE[prompt])} if prompt in PRELUDE else {}
    with_ev = dict(pre)
    with_ev[EVENT_FRAME] = parse_prompt(prompt)
    return Trajectory(list(keys), with_ev, "event", start), Trajectory(list(keys), dict(pre), "event", start)


def events(model, seeds, render, chunk) -> dict:
    """Per event of the menu: in how many trials the frame generated with the event is closer to the truth
    than the one generated without it, after it settles and again on revisit (the camera turns away and
    back). Two measures: over the whole frame (``success_rate``), and over the pixels the event changes in
    the truth (``masked_success_rate``, the stricter test: a small prop is a few dozen pixels of 4,096);
    a trial succeeds when every check it has (settled, revisit) does."""
    from world_model.engine.navigation import random_start

    results = {}
    for prompt in tqdm([p for p in EVENT_MENU if p], desc="events"):
        trials = []
        for s in seeds:
            start = random_start(np.random.default_rng([17, s]), make_scene(s))
            tw, to = _event_traj(start, prompt)
            gt_w, gt_o = truth(s, tw, render), truth(s, to, render)
            if not gt_w["events"][EVENT_FRAME]:
                continue  # the engine could not do it here (nothing to push or paint)
            try:
                m_w, m_o = run_model(model, [s, s], [gt_w, gt_o], [tw.events, to.events], chunk)
            except ValueError:  # the model saw nothing to target: it cannot show the event
                trials.append({"seed": s, "success": False, "masked_success": False, "note": "no target"})
                continue
            last = len(gt_w["rgb"]) - 1
            checks, masked = {}, {}
            for name, t in (("settled", SETTLE_FRAME - 1), ("revisit", last)):
                mask = event_mask(gt_w["rgb"][t], gt_o["rgb"][t])
                if not mask.any():
                    continue  # the truth itself does not show the event in this frame
                checks[name] = psnr(m_w[t], gt_w["rgb"][t]) > psnr(m_o[t], gt_w["rgb"][t])
                masked[name] = psnr(m_w[t], gt_w["rgb"][t], mask) > psnr(m_o[t], gt_w["rgb"][t], mask)
            if not checks:
                continue
            trials.append(
                {
                    "seed": s,
                    "success": all(checks.values()),
                    "masked_success": all(masked.values()),
                    "checks": checks,
                    "masked_checks": masked,
                }
            )
        results[prompt] = {"trials": len(trials)}
        for key in ("success", "masked_success"):
            ok = [t[key] for t in trials]
            results[prompt][f"{key}_rate"] = float(np.mean(ok)) if ok else None
    per_event = list(results.values())
    for key in ("success", "masked_success"):
        rates = [r[f"{key}_rate"] for r in per_event if r[f"{key}_rate"] is not None]
        results[f"overall_{key}_rate"] = float(np.mean(rates)) if rates else None
    return results


# LearnedConfig fields dreamx-eval sets itself: its own flags, or fixed (the eval follows the given poses)
OWN_FLAGS = {
    "weights": "--weights",
    "sampler_steps": "--sampler-steps",
    "device": "--device",
    "precision": "--precision",
    "cpu_compile": "--cpu-compile",
    "collide": None,
}


def _options(pairs: list[str]) -> dict:
    """``--option KEY=VALUE`` pairs as LearnedConfig fields (values read as JSON where they parse)."""
    fields = {f.name for f in dataclasses.fields(LearnedConfig)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--option {pair!r}: need KEY=VALUE with KEY one of {sorted(fields)}")
        if key in OWN_FLAGS:
            flag = OWN_FLAGS[key]
            why = f"use {flag}" if flag else "the evaluation follows the truth's poses, so collision is off"
            raise SystemExit(f"--option {pair!r}: dreamx-eval sets {key} itself ({why})")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    lo, _ = SPLITS["validation"]
    p = argparse.ArgumentParser(
        prog="dreamx-eval",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Writes report.json, report.md, PNG plots, side_by_side.gif and long_rollout.gif (256 "
        "frames of walks that turn and come back, truth beside model) to --out.",
    )
    add_weights_argument(p)
    p.add_argument(
        "--seeds",
        nargs=2,
        type=int,
        default=[lo, lo + 64],
        metavar=("START", "STOP"),
        help=f"validation scene seeds [START, STOP) (default: {lo} {lo + 64})",
    )
    p.add_argument(
        "--frames", type=int, default=257, help="frames per fidelity rollout (default 257: horizon 256)"
    )
    p.add_argument("--revisit-frames", type=int, default=160, help="frames per revisit rollout (default 160)")
    p.add_argument("--event-seeds", type=int, default=None, help="seeds per event (default: all the --seeds)")
    p.add_argument("--chunk", type=int, default=4, help="frames per generate call (default 4)")
    p.add_argument("--sampler-steps", type=int, default=1, help="network passes per frame (default 1)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA if any (default)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="network precision (default fp32, as the shipped reports; auto: bf16 where the device has it "
        "natively and, on a CPU, it measured faster)",
    )
    p.add_argument(
        "--cpu-compile",
        action="store_true",
        help="torch.compile the network on the CPU, as dreamx-bench --cpu-compile serves it",
    )
    p.add_argument(
        "--truth-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the ground-truth rollouts in DIR (.npz) and reuse them: comparing weights renders once",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a LearnedConfig field for the model, e.g. same_surface=0.05 near_k=0 (the settings before "
        "the v2 memory rules); repeatable",
    )
    p.add_argument("--quick", action="store_true", help="short rollouts, for a smoke test")
    p.add_argument("--out", type=Path, default=Path("reports/learned_v1"), help="output folder")
    args = p.parse_args()
    from world_model.model.report import write_report

    global TRUTH_CACHE
    TRUTH_CACHE = args.truth_cache
    seeds = list(range(*args.seeds))
    if any(not SPLITS["validation"][0] <= s < SPLITS["validation"][1] for s in seeds):
        raise SystemExit(f"dreamx-eval reports on validation seeds {SPLITS['validation']}; got {args.seeds}")
    frames, rev_frames = (33, 130) if args.quick else (args.frames, args.revisit_frames)
    options = _options(args.option)
    model = LearnedWorldModel(
        LearnedConfig(
            weights=args.weights,
            collide=False,
            sampler_steps=args.sampler_steps,
            device=args.device,
            precision=args.precision,
            cpu_compile=args.cpu_compile,
            **options,
        )
    )
    render = RenderConfig(model.config.height, model.config.width, model.config.vfov_deg)
    started = time.time()
    report = {
        "weights": args.weights,
        "checkpoint": model.checkpoint,
        "seeds": args.seeds,
        "chunk": args.chunk,
        "sampler_steps": args.sampler_steps,
        "device": str(model.device),
        "precision": model.config.precision,  # what ran (auto resolved)
        "cpu_compile": args.cpu_compile,
        "trained_steps": model.header.get("step"),
        "options": options,
    }
    report["fidelity"], rollouts = fidelity(model, seeds, render, args.chunk, frames)
    report["camera_control"] = camera_control(rollouts, render.intrinsics)
    report["revisit"], shown = revisit(model, seeds, render, args.chunk, rev_frames)
    report["events"] = events(model, seeds[: args.event_seeds or len(seeds)], render, args.chunk)
    long = long_rollouts(model, seeds[:3], render, args.chunk, 130 if args.quick else 257)
    report["seconds"] = time.time() - started
    write_report(report, rollouts[:2] + shown, args.out, long)  # two fidelity rollouts, one per revisit kind
    print(json.dumps({k: report[k] for k in ("fidelity", "camera_control")}, indent=1))
    print(f"wrote {args.out}/report.json, report.md, plots, side_by_side.gif and long_rollout.gif")


if __name__ == "__main__":
    main()
