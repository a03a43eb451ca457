"""How ``dreamx-bench`` shows its figures: one table line per measured point, the ratio table, the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEADER = (
    f"{'measured':<32} {'device':>6} {'batch':>5} {'frames/s':>10} {'ms/call':>9} {'median':>8} "
    f"{'p95':>8} {'GFLOP/s':>8} {'% peak':>7}"
)


def _num(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def point_line(label: str, point: dict[str, Any]) -> str:
    """One table line; ``point`` holds ``device``, ``batch``, ``frames_per_s``, ``ms_per_call`` and,
    where measured, ``median_ms``, ``p95_ms``, ``gflops``, ``share_of_peak``."""
    share = point.get("share_of_peak")
    return (
        f"{label:<32} {point['device']:>6} {point['batch']:>5} {point['frames_per_s']:>10.1f} "
        f"{point['ms_per_call']:>9.1f} {_num(point.get('median_ms'), 8)} {_num(point.get('p95_ms'), 8)} "
        f"{_num(point.get('gflops'), 8)} {_num(None if share is None else 100 * share, 7, 2)}"
    )


def ratio_lines(ratios: list[dict[str, Any]]) -> list[str]:
    """``ratios``: one dict per batch size, ``batch`` plus one ``<what>`` -> frames/s ratio per column."""
    if not ratios:
        return []
    columns = [k for k in ratios[0] if k != "batch"]
    width = max(22, *(len(c) for c in columns))
    lines = [f"{'batch':>5} " + " ".join(f"{c:>{width}}" for c in columns)]
    for r in ratios:
        cells = " ".join(f"{'-':>{width}}" if r[c] is None else f"{r[c]:>{width - 1}.3g}x" for c in columns)
        lines.append(f"{r['batch']:>5} {cells}")
    return lines


def plot_frames_per_s(series: dict[str, list[dict[str, Any]]], path: str | Path, title: str) -> None:
    """Log-log frames/s against batch size, one line per entry of ``series`` (label -> points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    batches: set[int] = set()
    for label, points in series.items():
        if points:
            xs = [p["batch"] for p in points]
            batches.update(xs)
            ax.plot(xs, [p["frames_per_s"] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted(batches), [str(b) for b in sorted(batches)])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("batch size (sessions per call / envs)")
    ax.set_ylabel("frames/s (all sessions together)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
