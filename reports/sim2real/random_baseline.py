"""Uniform-random actions on GoalView (oracle), played exactly as dreamx-eval-agent plays a policy."""
import json
import sys

import numpy as np

from agents.policies import run_episodes
from dreamx_env.sb3 import make_sb3_env


class Random:
    def __init__(self, space):
        self.space = space
        space.seed(0)

    def predict(self, obs, deterministic=False):
        return np.stack([self.space.sample() for _ in range(4)]), None


relaxed = sys.argv[1] == "relaxed"
kw = dict(action_set="multi", event_actions=False, scene_seed_range=[0, 256], resolution=64, backend="oracle")
if relaxed:
    kw |= dict(success_dist_m=1.0, success_angle_deg=45)
venv = make_sb3_env("DreamX/GoalView-v0", 4, **kw)
stats = run_episodes(Random(venv.action_space), venv, 40, seed=0)
venv.close()
r = {"success_rate": float(np.mean(stats.successes)), "mean_return": float(np.mean(stats.returns)),
     "std_return": float(np.std(stats.returns)), "mean_length": float(np.mean(stats.lengths))}
print(sys.argv[1], r)
json.dump(r, open(f"outputs/sim2real/eval-random-{sys.argv[1]}.json", "w"))
