"""``dreamx-eval`` outputs: ``report.json``, a Markdown table (``report.md``, pasted into the README), PNG
plots (PSNR and SSIM vs horizon with the baselines, revisit gains) and a side-by-side GIF (truth | model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def markdown(report: dict) -> str:
    f = report["fidelity"]
    lines = [
        "| horizon (frames) | model PSNR | copy-last PSNR | GT-depth reprojection PSNR | model SSIM "
        "| copy-last SSIM | model depth error (median relative) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h, r in f.items():
        depth = r.get("model_depth_rel_error")
        lines.append(
            f"| {h} | {r['model_psnr']:.2f} | {r['copy_last_psnr']:.2f} "
            f"| {r['gt_depth_reprojection_psnr']:.2f} "
            f"| {r['model_ssim']:.3f} | {r['copy_last_ssim']:.3f} "
            f"| {'n/a' if depth is None else f'{100 * depth:.1f}%'} |"
        )
    c = report["camera_control"]
    lines += [
        "",
        "| camera control (median error) | model | ground truth (estimator floor) | ratio |",
        "|---|---:|---:|---:|",
        f"| rotation (deg) | {c['model']['rotation_deg']:.2f} | {c['truth']['rotation_deg']:.2f} "
        f"| {c['rotation_ratio']:.2f} |",
        f"| translation direction (deg) | {c['model']['translation_deg']:.1f} "
        f"| {c['truth']['translation_deg']:.1f} "
        f"| {c['translation_ratio']:.2f} |",
    ]
    lines += [
        "",
        "| revisit protocol | model ΔPSNR | model ΔSSIM | truth ΔPSNR | truth ΔSSIM | revisit pairs "
        "| depth, two predictions of a view: median relative difference | share > 30% |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    for kind, r in report["revisit"].items():
        if kind == "mean" or r.get("model_dpsnr") is None:
            continue
        lines.append(
            f"| {kind} | {r['model_dpsnr']:.2f} | {r['model_dssim']:.3f} | {r['truth_dpsnr']:.2f} "
            f"| {r['truth_dssim']:.3f} | {r['pairs']} | {pct(r.get('depth_pair_rel_error'))} "
            f"| {pct(r.get('depth_pair_over_30pct'))} |"
        )
    m = report["revisit"].get("mean") or {}
    if m:
        lines.append(
            f"| **mean** | **{m['model_dpsnr']:.2f}** | **{m['model_dssim']:.3f}** | {m['truth_dpsnr']:.2f} "
            f"| {m['truth_dssim']:.3f} | | {pct(m.get('depth_pair_rel_error'))} | |"
        )
    lines += [
        "",
        "| event | trials | success (changed pixels) | success (whole frame) |",
        "|---|---:|---:|---:|",
    ]

    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.0f}%"

    for name, r in report["events"].items():
        if name.startswith("overall_"):
            continue
        lines.append(
            f"| {name} | {r['trials']} | {rate(r.get('masked_success_rate'))} | {rate(r['success_rate'])} |"
        )
    ev = report["events"]
    lines.append(
        f"| **all events** | | **{rate(ev.get('overall_masked_success_rate'))}** "
        f"| **{rate(ev.get('overall_success_rate'))}** |"
    )
    return "\n".join(lines) + "\n"


def _plots(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = report["fidelity"]
    hs = [int(h) for h in f]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for key, label in (
        ("model", "learned model"),
        ("copy_last", "copy last frame"),
        ("gt_depth_reprojection", "GT-depth reprojection"),
    ):
        axes[0].plot(hs, [f[str(h)][f"{key}_psnr"] for h in hs], marker="o", label=label)
        axes[1].plot(hs, [f[str(h)][f"{key}_ssim"] for h in hs], marker="o", label=label)
    for ax, name in zip(axes[:2], ("PSNR (dB)", "SSIM"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("horizon (frames)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    kinds = [k for k, v in report["revisit"].items() if k != "mean" and v.get("model_dpsnr") is not None]
    x = np.arange(len(kinds))
    axes[2].bar(x - 0.2, [report["revisit"][k]["model_dpsnr"] for k in kinds], 0.4, label="model")
    axes[2].bar(x + 0.2, [report["revisit"][k]["truth_dpsnr"] for k in kinds], 0.4, label="ground truth")
    axes[2].set_xticks(x, kinds)
    axes[2].set_ylabel("ΔPSNR revisit - non-revisit (dB)")
    axes[2].legend()
    fig.suptitle(f"learned world model vs MuJoCo ground truth, validation seeds {report['seeds']}")
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=100)
    plt.close(fig)


def _video(rollouts: list, path: Path, scale: int = 2) -> None:
    """Truth (left) beside model (right), one row per rollout, every second frame, as a GIF at ``path``."""
    from PIL import Image

    frames = []
    n = min(len(r.model) for r in rollouts)
    for t in range(0, n, 2):
        rows = [
            np.concatenate(
                [r.truth["rgb"][t], np.full((r.model.shape[1], 2, 3), 255, np.uint8), r.model[t]], axis=1
            )
            for r in rollouts
        ]
        sheet = np.concatenate(
            [np.concatenate([row, np.full((2, row.shape[1], 3), 255, np.uint8)]) for row in rows]
        )
        frames.append(
            Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST)
        )
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)


def write_report(report: dict, rollouts: list, out: Path, long: list | None = None) -> None:
    """The report's files in ``out``: JSON, markdown, plots, ``side_by_side.gif`` of ``rollouts`` and, when
    given, ``long_rollout.gif`` of the ``long`` rollouts."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    _plots(report, out)
    _video(rollouts, out / "side_by_side.gif")
    if long:
        _video(long, out / "long_rollout.gif")
