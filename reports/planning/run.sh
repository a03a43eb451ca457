#!/usr/bin/env bash
# CEM on GoalView, validation scenes 100000-100099, 16 episodes of at most 50 steps, default (strict) success
# (0.3 m, 15 degrees), default planner (4-step horizon, 16 sequences, 2 iterations):
#   1. imagine in the ground truth and act in it;
#   2. imagine in the learned model (default precision: bf16 only where the CPU has it natively) and act in
#      the ground truth, closed loop (resync, the default);
#   3. the same, open loop (resync=false: the planning env only replays the actions taken).
#   bash reports/planning/run.sh [out_dir]     # from the repository root; ~10 + 2 x 30 min on 2 CPU cores
set -euo pipefail
out=${1:-reports/planning}
common=(planner=cem episodes=16 max_steps=50 "+env_kwargs.scene_seed_range=[100000,100100]")
learned=(plan_backend=learned act_backend=oracle)
dreamx-plan backend=oracle "${common[@]}" out="$out/cem-oracle-on-oracle.json"
dreamx-plan "${learned[@]}" "${common[@]}" out="$out/cem-learned-on-oracle.json"
dreamx-plan "${learned[@]}" "${common[@]}" resync=false out="$out/cem-learned-on-oracle-open-loop.json"
