#!/bin/bash
# Sim-to-real on one scene (scene 0, its four goal views): PPO trained 100k steps in the learned simulator and
# on the ground truth, both evaluated on the ground truth, next to uniform-random actions.
#   bash reports/sim2real/one_scene/run.sh            # from the repository root; results in outputs/sim2real1/
# On 2 CPU cores: ~20 min for the ground-truth run, ~60 min for the learned one (its server is the bottleneck:
# give it both cores), ~1-2 min per evaluation on the ground truth.
set -e
out=outputs/sim2real1
setup=(+env_kwargs.scene_seed=0 max_episode_steps=50 +env_kwargs.success_dist_m=0.5
       +env_kwargs.success_angle_deg=30 agent.env_kwargs.action_set=discrete)
train() {  # train <backend> <name> [extra options]
  local backend=$1 name=$2; shift 2
  dreamx-train-agent agent=ppo env=GoalView backend=$backend total_steps=100000 \
    eval_every=0 checkpoint_every=10000 out_dir=$out/$name "${setup[@]}" "$@"
}
train oracle v2-oracle
train learned v2-learned +env_kwargs.backend_options.precision=bf16
for run in v2-oracle v2-learned; do
  for det in true false; do
    dreamx-eval-agent policy=$out/$run/policy.zip backend=oracle episodes=100 deterministic=$det \
      progress=false out=$out/eval-$run-det_$det.json
  done
done
python reports/sim2real/random_baseline.py --episodes 100 --scene-seed 0 --max-episode-steps 50 \
  --action-set discrete --success-dist-m 0.5 --success-angle-deg 30 --out $out/eval-random.json
python reports/sim2real/one_scene/plot.py
