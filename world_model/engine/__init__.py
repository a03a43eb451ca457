"""Ground-truth world engine on MuJoCo: procedural scenes, rendering, events as physics, trajectories,
datasets. Importing this package selects an offscreen GL backend (EGL unless ``MUJOCO_GL`` is set)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

try:
    import mujoco  # noqa: E402  (must follow the MUJOCO_GL choice)
except (ImportError, AttributeError, OSError, RuntimeError) as err:  # mujoco loads the GL library on import
    raise ImportError(
        f"MuJoCo could not load its offscreen renderer MUJOCO_GL={os.environ['MUJOCO_GL']!r} "
        f"({type(err).__name__}: {err}). Install EGL (Debian: libegl1, as scripts/setup.sh does), or OSMesa "
        "(libosmesa6) and set MUJOCO_GL=osmesa"
    ) from err

__all__ = ["mujoco"]
