"""Where a walking camera can go in a scene as built (before events move things), for trajectory planning.

Pure numpy on the ``ProceduralScene``: the engine's collision rule (``GroundTruthWorld.is_free``) with a
margin, so that planned paths do not touch anything in the rendered world either.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from world_model.engine.scenes import ProceduralScene
from world_model.engine.world import CAMERA_RADIUS
from world_model.geometry import KeyMap, Viewpoint, step_keys

FreeSpace = Callable[[float, float], bool]


def free_space(spec: ProceduralScene, margin: float = 0.1) -> FreeSpace:
    """``is_free(x, y)``: can the camera stand at (x, y) metres? Inside the walls and off every object's
    footprint, with ``margin`` metres to spare beyond the camera radius."""
    x0, y0, x1, y1 = spec.bounds
    r = CAMERA_RADIUS + margin
    centres = np.array([o.position for o in spec.objects], dtype=np.float64).reshape(-1, 2)
    reach = np.array([o.footprint for o in spec.objects], dtype=np.float64) + r

    def is_free(x: float, y: float) -> bool:
        if not (x0 + r <= x <= x1 - r and y0 + r <= y <= y1 - r):
            return False
        return not bool(np.any(np.hypot(centres[:, 0] - x, centres[:, 1] - y) < reach))

    return is_free


def random_start(rng: np.random.Generator, spec: ProceduralScene, clearance: float = 0.4) -> Viewpoint:
    """A random level viewpoint at least ``clearance`` m beyond the camera radius from walls and objects,
    facing a random way (the scene's own start if no such spot is found)."""
    is_free = free_space(spec, clearance)
    x0, y0, x1, y1 = spec.bounds
    for _ in range(100):
        x, y, yaw = rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(-math.pi, math.pi)
        if is_free(x, y):
            return Viewpoint(float(x), float(y), spec.start.z, float(yaw), 0.0)
    return spec.start


def stays_free(start: Viewpoint, keys: list[str], keymap: KeyMap, is_free: FreeSpace | None) -> bool:
    """Does every frame of the key sequence (no collisions) stand in free space?"""
    if is_free is None:
        return True
    view = start
    for k in keys:
        view = step_keys(view, k, keymap)
        if not is_free(view.x, view.y):
            return False
    return True


def free_run(start: Viewpoint, keys: str, limit: int, keymap: KeyMap, is_free: FreeSpace | None) -> int:
    """How many frames (up to ``limit``) holding ``keys`` from ``start`` stay in free space."""
    view = start
    for n in range(limit):
        view = step_keys(view, keys, keymap)
        if is_free is not None and not is_free(view.x, view.y):
            return n
    return limit


def open_side(view: Viewpoint, keymap: KeyMap, is_free: FreeSpace, probe_frames: int = 15) -> str:
    """ "J" (left) or "L" (right): the side with more free walking ahead after turning 30° that way."""
    n = max(1, round(30 / keymap.yaw_step_deg))
    left, right = (free_run(step_keys(view, k * n, keymap), "W", probe_frames, keymap, is_free) for k in "JL")
    return "J" if left >= right else "L"


def turn_toward_open(
    rng: np.random.Generator, view: Viewpoint, keymap: KeyMap, is_free: FreeSpace, probe_frames: int = 15
) -> list[str]:
    """Keys that turn in place, by 30° to 180° in a random direction, just far enough to face
    ``probe_frames`` free frames of walking ahead (or the other way, or to the most open heading)."""
    options = []
    for key in "JL" if rng.random() < 0.5 else "LJ":
        turned = view
        for n in range(1, round(180 / keymap.yaw_step_deg) + 1):
            turned = step_keys(turned, key, keymap)
            if n * keymap.yaw_step_deg >= 30 and n % 5 == 0:
                clear = free_run(turned, "W", probe_frames, keymap, is_free)
                if clear == probe_frames:
                    return [key] * n
                options.append((clear, key, n))
    _, key, n = max(options, key=lambda o: o[0])
    return [key] * n
