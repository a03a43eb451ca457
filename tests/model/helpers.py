import math

import numpy as np


def straight_poses(k: int, step_m: float = 0.1) -> np.ndarray:
    """Relative poses [1, k, 4, 4] walking straight ahead (camera +z)."""
    rel = np.tile(np.eye(4), (1, k, 1, 1))
    rel[0, :, 2, 3] = step_m * np.arange(1, k + 1)
    return rel


def turning_poses(k: int, deg_per_frame: float) -> np.ndarray:
    """Relative poses [1, k, 4, 4] turning in place about the camera's vertical axis."""
    rel = np.tile(np.eye(4), (1, k, 1, 1))
    for i in range(k):
        a = math.radians(deg_per_frame * (i + 1))
        rel[0, i, [0, 0, 2, 2], [0, 2, 0, 2]] = [math.cos(a), math.sin(a), -math.sin(a), math.cos(a)]
    return rel
