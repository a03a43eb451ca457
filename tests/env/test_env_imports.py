"""Importing the envs loads neither the engine (MuJoCo, its GL choice) nor torch: a client of a remote
server needs neither, and a machine without EGL must still be able to use one."""

import json
import os
import subprocess
import sys


def test_importing_the_envs_loads_no_engine_and_no_torch():
    code = (
        "import json, os, sys; import dreamx_env, dreamx_env.envs.explore, dreamx_env.planning; "
        "print(json.dumps([m in sys.modules for m in ('mujoco', 'world_model.engine', 'torch')] "
        "+ ['MUJOCO_GL' in os.environ]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == [False, False, False, False]
