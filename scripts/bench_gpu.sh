#!/usr/bin/env bash
# On a GPU host: installs what is missing (offline, from .wheels/ made by scripts/offline_wheels.sh, when
# there is one; else from the package index), runs the CUDA tests, then benchmarks the GPU: the learned
# backend alone and behind the env + server in 1, 2 and 4 lanes (a broker and one worker per lane, all on
# the one GPU, each with its share of the host's cores), against the yardstick; then where the backend's
# time goes at batch 32 and 256 (dreamx-bench-model --phases), and the backend at batch 1, 8 and 32 with and
# without the Triton FiLM normalisation. Writes bench.json, bench.txt, bench.png, phases.json, phases.txt
# and triton_norm.txt under $OUT/bench_cuda (default outputs/bench_cuda).
#
#   bash scripts/bench_gpu.sh                                   # the default run (a few minutes)
#   bash scripts/bench_gpu.sh --batch-sizes 256 --lanes 1 8     # other dreamx-bench options
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-outputs}

WHO=bench_gpu
source scripts/gpu_env.sh
$PY -c "import torch; print('bench_gpu:', torch.__version__, torch.cuda.get_device_name(0))"
# a failing test does not stop the figures (a lent GPU's time is short), but the script then exits 1
TESTS=0
$PY -m pytest -q tests/model/test_model_cuda.py tests/model/test_model_splat_triton.py \
    tests/model/test_model_film_norm_triton.py || TESTS=$?
ARGS=("$@")
if [ ${#ARGS[@]} -eq 0 ]; then
  ARGS=(--batch-sizes 1 8 32 128 256 --lanes 1 2 4 --seconds 3)
fi
mkdir -p "$OUT/bench_cuda"
$PY -m dreamx_bench.cli --devices cuda "${ARGS[@]}" --out "$OUT/bench_cuda" | tee "$OUT/bench_cuda/bench.txt"
$PY -m dreamx_bench.model --device cuda --batch 32 256 --seconds 3 --phases \
  --json "$OUT/bench_cuda/phases.json" | tee "$OUT/bench_cuda/phases.txt"
# the Triton FiLM normalisation against torch's ops, at the graphed batch sizes where it runs
for flag in "" --no-triton-norm; do
  $PY -m dreamx_bench.model --device cuda --batch 1 8 32 --seconds 3 $flag
done | tee "$OUT/bench_cuda/triton_norm.txt"
if [ "$TESTS" -ne 0 ]; then
  echo "bench_gpu: the CUDA tests FAILED (pytest exit $TESTS): the figures above are of failing code" >&2
  exit 1
fi
