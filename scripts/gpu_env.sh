# Sourced by the GPU scripts (bench_gpu.sh, train_gpu.sh) with $PY and $WHO set: checks for a CUDA GPU,
# installs what is missing (offline, from .wheels/ made by scripts/offline_wheels.sh, when there is one; else
# from the package index) and the package itself (editable, torch left as it is), and sets MUJOCO_GL.
if ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "$WHO: torch sees no CUDA GPU here (on the CPU: dreamx-bench, dreamx-train)" >&2
  exit 1
fi
if ! $PY -c "import gymnasium, mujoco, zmq, hydra, stable_baselines3, msgpack, pygame" 2>/dev/null; then
  if [ -d .wheels ]; then
    echo "$WHO: installing the dependencies from .wheels/ (offline)"
    $PY -m pip install -q --no-index --no-deps --no-build-isolation .wheels/*
  else
    $PY -m pip install -q gymnasium stable-baselines3 mujoco pyzmq msgpack pygame hydra-core
  fi
fi
if ! $PY -c "import dreamx_env" 2>/dev/null; then
  echo "$WHO: installing dreamx-env (editable, torch left as it is)"
  $PY -m pip install -q --no-deps --no-build-isolation -e .
fi
export MUJOCO_GL=${MUJOCO_GL:-egl}
if ! $PY -c "import mujoco" 2>/dev/null; then
  echo "$WHO: MuJoCo cannot load its $MUJOCO_GL renderer here: install libEGL (Debian: libegl1), or" \
    "OSMesa (libosmesa6) and set MUJOCO_GL=osmesa" >&2
  exit 1
fi

