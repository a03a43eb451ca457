"""FindObject's target test on rendered frames: the right object, not a same-shaped one of another colour."""

import math

import numpy as np

from dreamx_env.envs.find_object import FindObjectConfig, FindObjectTask, target_mask
from dreamx_env.envs.task import Frame
from world_model.constant import ConstantWorldModel
from world_model.geometry import Intrinsics, Viewpoint

INTR = Intrinsics.from_fov(64, 64, 70.0)


def look_at(obj: dict, distance: float = 1.5) -> np.ndarray:
    """A camera ``distance`` m from the object (on the side of the room centre), looking down at it."""
    x, y = obj["position"][:2]
    side = math.atan2(-y, -x)
    pitch = -math.atan2(1.2 - 0.3, distance)  # objects stand on the floor, the eye is at 1.2 m
    return Viewpoint(
        x + distance * math.cos(side), y + distance * math.sin(side), 1.2, side + math.pi, pitch
    ).pose()


def frame_at(backend: ConstantWorldModel, seed: int, pose: np.ndarray) -> Frame:
    _, f, _ = backend.open(seed, start_pose=pose)
    return Frame(f.rgb[0], f.poses, f.depth[0], f.semantic[0])


def test_same_shaped_objects_are_told_apart_by_position():
    backend = ConstantWorldModel()
    _, _, scene = backend.open(10)  # two balls: blue and green
    green = [o for o in scene.objects if o["shape"] == "ball" and o["color"] == "green"]
    blue = [o for o in scene.objects if o["shape"] == "ball" and o["color"] == "blue"]
    assert len(green) == 2 and len(blue) == 1
    for targets, rivals in ((green, blue), (blue, green)):
        frame = frame_at(backend, 10, look_at(targets[0]))
        mine = target_mask(frame, targets, rivals, INTR)
        theirs = target_mask(frame, rivals, targets, INTR)
        assert mine[28:36, 28:36].mean() > 0.8  # the object looked at fills the centre
        assert not theirs[28:36, 28:36].any() and not (mine & theirs).any()
        strip = [
            [{k: v for k, v in o.items() if k != "position"} for o in group] for group in (targets, rivals)
        ]
        by_colour = target_mask(frame, *strip, INTR)
        assert by_colour[28:36, 28:36].mean() > 0.8  # flat colours: the colour fallback agrees here


def test_success_and_progress_when_the_target_is_centred():
    backend = ConstantWorldModel()
    _, first, scene = backend.open(10)
    task = FindObjectTask(FindObjectConfig(target="green ball"), 64, 64)
    start = Frame(first.rgb[0], first.poses, first.depth[0], first.semantic[0])
    state = task.begin(scene, start, None, {}, np.random.default_rng(0))
    assert (state["shape"], state["color"]) == ("ball", "green") and not state["fallback"]
    target = next(o for o in scene.objects if o["color"] == "green" and o["shape"] == "ball")
    gained, success, info = task.progress(state, frame_at(backend, 10, look_at(target)))
    assert success and gained > 0 and info["target_center"] >= 0.25
    gained, success, _ = task.progress(state, frame_at(backend, 10, look_at(target, 6.0)))
    assert not success and gained < 0
    other = FindObjectTask(FindObjectConfig(target="black table"), 64, 64)
    assert other.begin(scene, start, None, {}, np.random.default_rng(0))["fallback"]
