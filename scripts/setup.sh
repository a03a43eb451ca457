#!/usr/bin/env bash
# Installs everything DreamX-Env needs into the current Python (or $PYTHON): Debian's Mesa for offscreen
# MuJoCo rendering, a C compiler if there is none, the CPU build of torch (pinned, so pip never pulls a
# multi-GB CUDA build), and this repository in editable mode with its test tools. Safe to run again: it
# only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# 1. Offscreen OpenGL for MuJoCo (EGL on Mesa's llvmpipe; OSMesa as a fallback).
GL_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libopengl0 libosmesa6"
missing=$(dpkg-query -W -f='${Status} ${Package}\n' $GL_PACKAGES 2>&1 | grep -v "^install ok installed" || true)
if [ -n "$missing" ]; then
  echo "setup: installing Mesa for offscreen rendering: $GL_PACKAGES"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $GL_PACKAGES >/dev/null
fi

# 1b. A C compiler: builds the CPU kernels on first use (world_model/model/native/: the warp and retrieval;
# without one the torch paths run, slower) and serves torch.compile on the CPU.
if ! command -v cc >/dev/null 2>&1; then
  echo "setup: installing gcc (builds the CPU warp kernel)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
fi

# 2. torch, CPU build, before anything that depends on it.
if ! $PY -c "import torch" 2>/dev/null; then
  echo "setup: installing torch==2.13.0 (CPU build)"
  $PY -m pip install -q torch==2.13.0
fi

# 3. This repository (editable) and its dependencies; skipped when this checkout is already installed with
# the console scripts pyproject.toml declares now (a pull that adds or moves one installs again).
here=$(pwd -P)
installed=$($PY -c "import world_model, os; print(os.path.dirname(os.path.dirname(os.path.realpath(world_model.__file__))))" 2>/dev/null || true)
scripts_current() {
  $PY - <<'PYEOF' 2>/dev/null
import importlib.metadata as md, sys
try:
    import tomllib
except ImportError:  # Python 3.10: no TOML reader to compare with; take the install as current
    sys.exit(0)
declared = tomllib.load(open("pyproject.toml", "rb"))["project"]["scripts"]
installed = {e.name: e.value for e in md.distribution("dreamx-env").entry_points if e.group == "console_scripts"}
sys.exit(0 if installed == declared else 1)
PYEOF
}
if [ "$installed" != "$here" ] || ! $PY -c "import pytest, ruff, wheel, rich, moviepy, imageio_ffmpeg, dreamx_env" 2>/dev/null \
    || ! scripts_current; then
  echo "setup: installing dreamx-env from $here"
  $PY -m pip install -q -e ".[dev]"
fi
