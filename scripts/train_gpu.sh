#!/usr/bin/env bash
# On a lent GPU host: trains the world model there for the minutes it is lent. Installs what is missing (as
# bench_gpu.sh does), renders the training data on the host's cores unless data/engine/train has it (the
# shipped weights' recipe, world_model/model/weights/README.md), then runs dreamx-train on CUDA with the
# shipped recipe's options and any given after them (Hydra overrides: later ones win). Resumable: rerun it
# and it continues from $OUT/train/train_state.safetensors. Weights, TensorBoard logs and sample sheets go
# to $OUT/train (default outputs/train); try them with `dreamx-eval --weights $OUT/train/weights.safetensors`.
#
#   bash scripts/train_gpu.sh                          # the shipped recipe on CUDA
#   bash scripts/train_gpu.sh steps=6000 batch_size=8  # longer, other options
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-outputs}

WHO=train_gpu
source scripts/gpu_env.sh
$PY -c "import torch; print('train_gpu:', torch.__version__, torch.cuda.get_device_name(0))"
# rendered once: a rerun skips the shards already there
dreamx-generate output_dir=data/engine/train seed_start=0 seed_stop=600 trajectories_per_seed=2 \
  frames=128 seeds_per_shard=20 workers="$(nproc)"
# the recipe of the shipped fine-tune (world_model/model/weights/README.md), on CUDA
RECIPE=(init_weights=learned_v1 floor=true steps=1500 batch_size=8 rollout_rows=8 lr=0.0002 warmup_steps=100
  rollout_seen_weight=0.0 warp_rules=generation event_prob=0.3 aux_weight_start=1.0 aux_weight_end=1.0)
dreamx-train data_dir=data/engine/train out_dir="$OUT/train" device=cuda "${RECIPE[@]}" "$@"
