"""Uniform-random actions on GoalView (ground truth), played exactly as dreamx-eval-agent plays a policy.

python reports/sim2real/random_baseline.py --out outputs/sim2real/eval-random-strict.json
python reports/sim2real/random_baseline.py --relaxed --out outputs/sim2real/eval-random-relaxed.json
python reports/sim2real/random_baseline.py --scene-seed 0 --max-episode-steps 100 --out <json>
"""

import argparse
import json

import numpy as np

from agents.policies import run_episodes
from dreamx_env.sb3 import make_sb3_env


class Random:
    def __init__(self, space, n_envs):
        self.space, self.n_envs = space, n_envs
        space.seed(0)

    def predict(self, obs, deterministic=False):
        return np.stack([self.space.sample() for _ in range(self.n_envs)]), None


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--relaxed", action="store_true", help="success within 1 m and 45 degrees")
parser.add_argument("--success-dist-m", type=float, default=None, help="default: the env's 0.3 m")
parser.add_argument("--success-angle-deg", type=float, default=None, help="default: the env's 15 degrees")
parser.add_argument("--action-set", default="multi", help="multi (default) or discrete")
parser.add_argument("--scene-seed", type=int, default=None, help="one fixed scene (default: scenes 0-255)")
parser.add_argument("--max-episode-steps", type=int, default=None, help="default: the registered 200")
parser.add_argument("--episodes", type=int, default=40)
parser.add_argument("--out", required=True, help="JSON report")
args = parser.parse_args()

kw = dict(action_set=args.action_set, event_actions=False, resolution=64, backend="oracle")
kw |= dict(scene_seed=args.scene_seed) if args.scene_seed is not None else dict(scene_seed_range=[0, 256])
if args.max_episode_steps:
    kw["max_episode_steps"] = args.max_episode_steps
if args.relaxed:
    kw |= dict(success_dist_m=1.0, success_angle_deg=45)
if args.success_dist_m is not None:
    kw["success_dist_m"] = args.success_dist_m
if args.success_angle_deg is not None:
    kw["success_angle_deg"] = args.success_angle_deg
venv = make_sb3_env("DreamX/GoalView-v0", 4, **kw)
stats = run_episodes(Random(venv.action_space, venv.num_envs), venv, args.episodes, seed=0)
venv.close()
r = {
    "success_rate": float(np.mean(stats.successes)),
    "mean_return": float(np.mean(stats.returns)),
    "std_return": float(np.std(stats.returns)),
    "mean_length": float(np.mean(stats.lengths)),
    "episodes": args.episodes,
    "setup": {k: v for k, v in kw.items() if k != "backend"},
}
print(r)
with open(args.out, "w") as f:
    json.dump(r, f, indent=1)
