"""The figure of this report: training curves (TensorBoard logs in outputs/sim2real1/) and
ground-truth success (the JSONs here). From the repository root, after run.sh:

    python reports/sim2real/one_scene/plot.py
"""

import glob
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def curve(run, tag):
    pts = {}
    for f in sorted(glob.glob(f"outputs/sim2real1/{run}/tb/**/events*", recursive=True)):
        ea = EventAccumulator(f)
        ea.Reload()
        for e in ea.Scalars(tag):
            pts[e.step] = e.value
    steps = sorted(pts)
    return steps, [pts[s] for s in steps]


fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
for run, label in (
    ("v2-oracle", "trained on the ground truth"),
    ("v2-learned", "trained in the learned simulator"),
):
    for i, tag in enumerate(("rollout/success_rate", "rollout/ep_rew_mean")):
        s, v = curve(run, tag)
        ax[i].plot(s, v, label=label)
ax[0].set(title="success while training (own simulator)", xlabel="env steps", ylabel="success rate")
ax[1].set(title="return while training (own simulator)", xlabel="env steps", ylabel="episode return")
ax[0].legend(fontsize=8)
d = "reports/sim2real/one_scene/"
bars = [
    ("GT policy\ngreedy", "eval-v2-oracle-det_true"),
    ("learned policy\ngreedy", "eval-v2-learned-det_true"),
    ("GT policy\nsampled", "eval-v2-oracle-det_false"),
    ("learned policy\nsampled", "eval-v2-learned-det_false"),
    ("random", "eval-random"),
]
vals = [json.load(open(d + f + ".json"))["success_rate"] for _, f in bars]
ax[2].bar(range(len(bars)), vals, color=["C0", "C1", "C0", "C1", "grey"])
ax[2].set_xticks(range(len(bars)), [b for b, _ in bars], fontsize=7)
for i, v in enumerate(vals):
    ax[2].text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
ax[2].set(title="success on the ground truth (100 episodes)", ylim=(0, 0.5))
fig.tight_layout()
fig.savefig(d + "sim2real.png", dpi=90)
