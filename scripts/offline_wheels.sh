#!/usr/bin/env bash
# Downloads, into .wheels/, what a GPU host WITHOUT network access needs on top of a CUDA build of torch
# (which it must already have, with numpy, triton, opencv-python-headless, safetensors, tqdm, matplotlib,
# tensorboard, pandas, cloudpickle, pyyaml, pytest and setuptools): the versions this machine runs, built for the
# host's Python (default 3.12). Copy the repository with .wheels/ to the host, then run
# `bash scripts/bench_gpu.sh` there.
#
#   bash scripts/offline_wheels.sh            # for Python 3.12 on x86_64 Linux
#   PY_VERSION=3.11 bash scripts/offline_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}
DEST=.wheels

# the version installed here, so the host runs what the tests passed with
pinned() {
  for name in "$@"; do
    version=$($PY -c "import importlib.metadata as m; print(m.version('$name'))")
    echo "$name==$version"
  done
}

PACKAGES=$(pinned gymnasium stable-baselines3 mujoco mujoco-core mujoco-studio websockets pyzmq msgpack \
  pygame hydra-core omegaconf farama-notifications glfw pyopengl)
mkdir -p "$DEST"
echo "offline_wheels: downloading for Python $PY_VERSION into $DEST/: $(echo $PACKAGES | tr '\n' ' ')"
# shellcheck disable=SC2086 # one package per word
$PY -m pip download -q --dest "$DEST" --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --platform any $PACKAGES
# hydra's parser runtime is published as a source archive only (pure Python: builds offline)
$PY -m pip download -q --dest "$DEST" --no-deps --no-binary=:all: "$(pinned antlr4-python3-runtime)"
du -sh "$DEST"
