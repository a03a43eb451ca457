"""Procedural scenes from a seed: indoor rooms and outdoor courtyards, each with a hinged door.

``make_scene(seed)`` is pure numpy (no MuJoCo): the same seed gives the same ``ProceduralScene`` bit for bit.
``world_model.engine.mjcf.scene_to_mjcf`` turns a spec into a MuJoCo model.
Seeds below 100000 are for training; 100000-199999 are the validation split (``world_model.splits``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from world_model.geometry import Viewpoint
from world_model.semantics import COLORS, OBJECT_SHAPES

FAMILIES: tuple[str, ...] = ("room", "courtyard")
EYE_HEIGHT = 1.0
DOOR_WIDTH, DOOR_HEIGHT = 1.0, 2.1
WALL_THICKNESS = 0.2


@dataclass(frozen=True)
class Obstacle:
    """A static axis-aligned wall block: centre (x, y, z) and half-sizes (hx, hy, hz), in metres."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    kind: str = "wall"  # wall | door-frame


@dataclass(frozen=True)
class ObjectSpec:
    """A movable object resting on the floor. ``size`` holds MuJoCo geom sizes for its shape."""

    name: str
    shape: str
    color: str
    position: tuple[float, float]
    yaw: float
    size: tuple[float, ...]

    @property
    def footprint(self) -> float:
        """Radius of a circle that covers the object seen from above."""
        if self.shape in ("box", "table"):
            return math.hypot(self.size[0], self.size[1])
        return self.size[0]

    @property
    def rest_height(self) -> float:
        """Height of the body origin when resting on the floor."""
        if self.shape == "ball":
            return self.size[0]
        if self.shape == "box":
            return self.size[2]
        if self.shape == "cylinder":
            return self.size[1]
        if self.shape == "capsule":
            return self.size[0] + self.size[1]
        return 0.0  # table: origin on the floor, legs go up


@dataclass(frozen=True)
class Palette:
    floor: tuple[tuple[float, ...], tuple[float, ...]]
    wall: tuple[tuple[float, ...], tuple[float, ...]]
    sky: tuple[tuple[float, ...], tuple[float, ...]]  # zenith, horizon
    floor_builtin: str
    wall_builtin: str
    door: tuple[float, ...]


@dataclass(frozen=True)
class ProceduralScene:
    """Everything needed to build one world. Interior bounds are where the camera may stand."""

    seed: int
    family: str
    size: tuple[float, float]  # interior x, y extent; the interior is [0, sx] x [0, sy]
    wall_height: float
    has_ceiling: bool
    obstacles: tuple[Obstacle, ...]
    door_hinge: tuple[float, float]  # hinge position (x, y)
    door_yaw: float  # yaw of the closed door panel (radians), panel extends along +yaw from the hinge
    door_open_sign: int  # +1 or -1: the hinge angle's sign when the door swings open (outwards)
    objects: tuple[ObjectSpec, ...]
    lights: tuple[tuple[float, float, float], ...]  # point-light positions
    sun: bool
    palette: Palette
    start: Viewpoint
    goals: tuple[Viewpoint, ...] = field(default=())

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (0.0, 0.0, self.size[0], self.size[1])

    @property
    def doorway(self) -> tuple[float, float, float, float, float]:
        """The doorway the closed door fills: its bottom edge's ends (x0, y0, x1, y1) and its height."""
        (x, y), yaw = self.door_hinge, self.door_yaw
        ends = (x, y, x + DOOR_WIDTH * math.cos(yaw), y + DOOR_WIDTH * math.sin(yaw))
        return (*(round(v, 9) for v in ends), DOOR_HEIGHT)  # to 1 nm: the banked values, float noise aside


def _color(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(lo, hi, 3))


def _walls(sx: float, sy: float, h: float, door_wall: int, door_at: float) -> list[Obstacle]:
    """Four walls around [0, sx] x [0, sy]; wall ``door_wall`` (0 south, 1 north, 2 west, 3 east) has
    a doorway centred ``door_at`` metres along it."""
    t = WALL_THICKNESS / 2
    walls: list[Obstacle] = []
    specs = [  # (axis the wall runs along, fixed coordinate, length)
        ("x", -t, sx),
        ("x", sy + t, sx),
        ("y", -t, sy),
        ("y", sx + t, sy),
    ]
    for i, (axis, fixed, length) in enumerate(specs):
        pieces = [(-2 * t, length + 2 * t, 0.0, h)]
        if i == door_wall:
            a, b = door_at - DOOR_WIDTH / 2, door_at + DOOR_WIDTH / 2
            pieces = [(-2 * t, a, 0.0, h), (b, length + 2 * t, 0.0, h)]
            if h > DOOR_HEIGHT:
                pieces.append((a, b, DOOR_HEIGHT, h))
        for lo, hi, z0, z1 in pieces:
            mid, half = (lo + hi) / 2, (hi - lo) / 2
            centre = (mid, fixed, (z0 + z1) / 2) if axis == "x" else (fixed, mid, (z0 + z1) / 2)
            halves = (half, t, (z1 - z0) / 2) if axis == "x" else (t, half, (z1 - z0) / 2)
            walls.append(Obstacle(centre, halves, "wall" if z0 == 0 else "lintel"))
    return walls


def _door(sx: float, sy: float, door_wall: int, door_at: float) -> tuple[tuple[float, float], float]:
    a = door_at - DOOR_WIDTH / 2
    if door_wall == 0:
        return (a, 0.0), 0.0
    if door_wall == 1:
        return (a, sy), 0.0
    if door_wall == 2:
        return (0.0, a), math.pi / 2
    return (sx, a), math.pi / 2


def _object_size(rng: np.random.Generator, shape: str) -> tuple[float, ...]:
    if shape == "box":
        return tuple(float(v) for v in rng.uniform([0.15, 0.15, 0.12], [0.4, 0.4, 0.45]))
    if shape == "ball":
        return (float(rng.uniform(0.12, 0.3)),)
    if shape == "cylinder":
        return (float(rng.uniform(0.1, 0.25)), float(rng.uniform(0.2, 0.6)))
    if shape == "capsule":
        return (float(rng.uniform(0.08, 0.18)), float(rng.uniform(0.15, 0.4)))
    return (float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.35, 0.55)))


def _place(
    rng: np.random.Generator,
    sx: float,
    sy: float,
    radius: float,
    taken: list[tuple[float, float, float]],
    margin: float = 0.3,
) -> tuple[float, float] | None:
    for _ in range(200):
        x = rng.uniform(radius + margin, sx - radius - margin)
        y = rng.uniform(radius + margin, sy - radius - margin)
        if all(math.hypot(x - ox, y - oy) > radius + r + margin for ox, oy, r in taken):
            return float(x), float(y)
    return None


def make_scene(seed: int, family: str | None = None) -> ProceduralScene:
    """The procedural scene of ``seed``. ``family`` defaults to one chosen by the seed."""
    rng = np.random.default_rng([seed, 0x5CE7E])
    family = family or FAMILIES[int(rng.integers(len(FAMILIES)))]
    if family not in FAMILIES:
        raise ValueError(f"unknown scene family {family!r}; choose one of {FAMILIES}")
    indoor = family == "room"
    sx, sy = (rng.uniform(6, 10), rng.uniform(5, 8)) if indoor else (rng.uniform(11, 16), rng.uniform(11, 16))
    sx, sy = float(round(sx, 2)), float(round(sy, 2))
    height = 2.6 if indoor else float(rng.uniform(1.0, 1.6))
    door_wall = int(rng.integers(4))
    length = sx if door_wall < 2 else sy
    door_at = float(rng.uniform(1.0, length - 1.0))
    obstacles = _walls(sx, sy, max(height, DOOR_HEIGHT + 0.2) if indoor else height, door_wall, door_at)
    hinge, door_yaw = _door(sx, sy, door_wall, door_at)

    start = Viewpoint(
        float(rng.uniform(1.0, sx - 1.0)),
        float(rng.uniform(1.0, sy - 1.0)),
        EYE_HEIGHT,
        float(rng.uniform(-math.pi, math.pi)),
        0.0,
    )
    taken = [(start.x, start.y, 0.8)]
    objects = []
    for i in range(int(rng.integers(6, 16))):
        shape = OBJECT_SHAPES[int(rng.integers(len(OBJECT_SHAPES)))]
        size = _object_size(rng, shape)
        color = list(COLORS)[int(rng.integers(len(COLORS)))]
        probe = ObjectSpec("", shape, color, (0.0, 0.0), 0.0, size)
        spot = _place(rng, sx, sy, probe.footprint, taken)
        if spot is None:
            continue
        taken.append((*spot, probe.footprint))
        objects.append(
            ObjectSpec(f"{shape}#{i}", shape, color, spot, float(rng.uniform(-math.pi, math.pi)), size)
        )

    top = 2.3 if indoor else 3.0
    lights = tuple(
        (float(rng.uniform(0.5, sx - 0.5)), float(rng.uniform(0.5, sy - 0.5)), top)
        for _ in range(int(rng.integers(2, 5)))
    )
    palette = Palette(
        floor=(_color(rng, 0.25, 0.75), _color(rng, 0.2, 0.7)),
        wall=(_color(rng, 0.45, 0.9), _color(rng, 0.3, 0.8)),
        sky=((0.35, 0.55, 0.85), _color(rng, 0.75, 1.0))
        if not indoor
        else ((0.2, 0.2, 0.2), (0.3, 0.3, 0.3)),
        floor_builtin=("checker", "checker", "gradient")[int(rng.integers(3))],
        wall_builtin=("checker", "gradient", "flat")[int(rng.integers(3))],
        door=_color(rng, 0.25, 0.6),
    )
    goals = []
    for _ in range(4):
        spot = _place(rng, sx, sy, 0.3, taken, margin=0.4) or (start.x, start.y)
        goals.append(Viewpoint(spot[0], spot[1], EYE_HEIGHT, float(rng.uniform(-math.pi, math.pi)), 0.0))
    open_sign = -1 if door_wall in (0, 3) else 1
    return ProceduralScene(
        seed,
        family,
        (sx, sy),
        height,
        indoor,
        tuple(obstacles),
        hinge,
        door_yaw,
        open_sign,
        tuple(objects),
        lights,
        not indoor,
        palette,
        start,
        tuple(goals),
    )
