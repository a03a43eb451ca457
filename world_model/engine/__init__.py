"""Ground-truth world engine on MuJoCo: procedural scenes, rendering, events as physics, trajectories,
datasets. Importing this package selects an offscreen GL backend (EGL unless ``MUJOCO_GL`` is set)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402  (must follow the MUJOCO_GL choice)

__all__ = ["mujoco"]
