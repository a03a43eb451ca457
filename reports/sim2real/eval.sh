#!/bin/bash
# usage: eval.sh <run>   (ppo-oracle | ppo-learned): the policy on the ground truth, stochastic, strict and relaxed success
set -e
run=$1; p=outputs/sim2real/$run/policy.zip
dreamx-eval-agent policy=$p backend=oracle episodes=40 deterministic=false progress=false out=outputs/sim2real/eval-$run-stochastic.json
dreamx-eval-agent policy=$p backend=oracle episodes=40 deterministic=false progress=false +env_kwargs.success_dist_m=1.0 +env_kwargs.success_angle_deg=45 out=outputs/sim2real/eval-$run-relaxed.json
