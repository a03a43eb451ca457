"""Build the MuJoCo model (MJCF XML) of a ``ProceduralScene``.

Naming conventions the world relies on: the camera is ``eye`` on the mocap body ``eye_body``;
objects are bodies named after ``ObjectSpec.name`` (``"box#3"``); spare bodies for drops and spawns are
``spare:<shape>:<n>``, parked under the floor until an event brings them in; the door body is ``door``
with hinge joint ``door_hinge``. Offscreen settings for speed: no MSAA (which also keeps the depth buffer
right), small shadow maps;
the floor plane's rendering grid is coarse (its triangle count dominated render time), and the sky is
painted by the world, not a skybox.
"""

from __future__ import annotations

import math

from world_model.engine.scenes import DOOR_HEIGHT, DOOR_WIDTH, ProceduralScene
from world_model.semantics import COLORS

SPARES: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("ball", (0.15,)),
    ("ball", (0.15,)),
    ("ball", (0.15,)),
    ("box", (0.15, 0.15, 0.15)),
    ("box", (0.15, 0.15, 0.15)),
    ("cylinder", (0.15, 0.2)),
    ("cylinder", (0.15, 0.2)),
    ("capsule", (0.1, 0.15)),
)
PARK_Z = -5.0
FRAME_DT = 0.1  # seconds of world time per video frame
TIMESTEP = 0.005
# Sliding, torsional and rolling friction of the floor and of everything that rests on it: a box on a
# wooden floor, so a push slides boxes and tables rather than tipping them (a contact takes the larger of its
# two geoms' coefficients, so both sides carry it).
FRICTION = "0.5 0.02 0.001"


def _f(*values: float) -> str:
    return " ".join(f"{v:.4f}" for v in values)


def _shape_geoms(shape: str, size: tuple[float, ...], rgba: str, extra: str = "") -> list[str]:
    if shape == "table":
        hx, hy, h = size
        top = f'<geom type="box" size="{_f(hx, hy, 0.03)}" pos="0 0 {h:.4f}" rgba="{rgba}" {extra}/>'
        legs = [
            f'<geom type="cylinder" size="0.03 {h / 2:.4f}" '
            f'pos="{_f(sx * (hx - 0.05), sy * (hy - 0.05), h / 2)}" '
            f'rgba="{rgba}" {extra}/>'
            for sx in (-1, 1)
            for sy in (-1, 1)
        ]
        return [top, *legs]
    kind = {"ball": "sphere"}.get(shape, shape)
    return [f'<geom type="{kind}" size="{_f(*size)}" rgba="{rgba}" {extra}/>']


def scene_to_mjcf(spec: ProceduralScene, height: int = 64, width: int = 64, vfov_deg: float = 70.0) -> str:
    """MJCF for ``spec`` with an offscreen buffer of at least ``height x width``."""
    p = spec.palette
    sx, sy = spec.size
    extent = math.hypot(sx, sy)
    out = [
        f'<mujoco model="dreamx-{spec.family}-{spec.seed}">',
        f'<option timestep="{TIMESTEP}" integrator="implicitfast"/>',
        f'<statistic extent="{extent:.3f}" center="{_f(sx / 2, sy / 2, 1.0)}"/>',
        "<visual>",
        f'  <global offwidth="{max(width, 64)}" offheight="{max(height, 64)}" fovy="{vfov_deg}"/>',
        '  <quality shadowsize="256" offsamples="0"/>',
        '  <headlight active="1" ambient="0.06 0.06 0.06" diffuse="0 0 0" specular="0 0 0"/>',
        '  <map znear="0.005" zfar="4"/>',
        "</visual>",
        "<asset>",
        f'  <texture name="floor" type="2d" builtin="{p.floor_builtin}" rgb1="{_f(*p.floor[0])}" '
        f'rgb2="{_f(*p.floor[1])}" width="128" height="128" mark="random" random="0.06" '
        'markrgb="0.1 0.1 0.1"/>',
        f'  <texture name="wall" type="2d" builtin="{p.wall_builtin}" rgb1="{_f(*p.wall[0])}" '
        f'rgb2="{_f(*p.wall[1])}" width="128" height="128" mark="random" random="0.03" '
        'markrgb="0.2 0.2 0.2"/>',
        '  <material name="floor" texture="floor" texrepeat="1 1" texuniform="true" reflectance="0"/>',
        '  <material name="wall" texture="wall" texrepeat="0.7 0.7" texuniform="true"/>',
        "</asset>",
        "<worldbody>",
        f'  <geom name="floor" type="plane" size="{_f(sx * 3, sy * 3, 2.0)}" pos="{_f(sx / 2, sy / 2, 0)}" '
        f'material="floor" friction="{FRICTION}"/>',
    ]
    for i, ob in enumerate(spec.obstacles):
        out.append(
            f'  <geom name="{ob.kind}:{i}" type="box" pos="{_f(*ob.center)}" size="{_f(*ob.half)}" '
            'material="wall"/>'
        )
    if spec.has_ceiling:
        out.append(
            f'  <geom name="ceiling" type="box" pos="{_f(sx / 2, sy / 2, spec.wall_height + 0.05)}" '
            f'size="{_f(sx / 2 + 0.3, sy / 2 + 0.3, 0.05)}" rgba="0.85 0.85 0.82 1"/>'
        )
    # Lamps are directional, aimed from where they hang at the room's centre: MuJoCo 4's classic renderer
    # hands point and spot lights a zero attenuation and cutoff, which leaves them dark.
    for i, (x, y, z) in enumerate(spec.lights):
        aim = (sx / 2 - x, sy / 2 - y, -z)
        out.append(
            f'  <light name="lamp:{i}" pos="{_f(x, y, z)}" dir="{_f(*aim)}" type="directional" '
            f'diffuse="0.42 0.42 0.40" ambient="0.1 0.1 0.1" specular="0.1 0.1 0.1" '
            f'castshadow="{"true" if i == 0 and not spec.has_ceiling else "false"}"/>'
        )  # a ceiling would shade all
    if spec.sun:
        out.append(
            f'  <light name="sun" pos="{_f(sx / 2, sy / 2, 10)}" dir="-0.3 -0.2 -1" type="directional" '
            'diffuse="0.6 0.6 0.55" ambient="0.25 0.25 0.25" castshadow="false"/>'
        )
    hx, hy = spec.door_hinge
    half = DOOR_WIDTH / 2 - 0.01
    swing = "-100 0" if spec.door_open_sign < 0 else "0 100"
    out += [
        f'  <body name="door" pos="{_f(hx, hy, 0)}" euler="0 0 {math.degrees(spec.door_yaw):.3f}">',
        f'    <joint name="door_hinge" type="hinge" axis="0 0 1" range="{swing}" damping="2" '
        'limited="true"/>',
        f'    <geom name="door:panel" type="box" pos="{_f(half, 0, DOOR_HEIGHT / 2)}" '
        f'size="{_f(half, 0.04, DOOR_HEIGHT / 2 - 0.01)}" rgba="{_f(*p.door)} 1" contype="2" conaffinity="2" '
        'mass="8"/>',
        f'    <geom name="door:knob" type="sphere" size="0.04" pos="{_f(2 * half - 0.1, -0.07, 1.0)}" '
        'rgba="0.8 0.7 0.2 1" contype="2" conaffinity="2" mass="0.1"/>',
        "  </body>",
    ]
    for ob in spec.objects:
        rgba = f"{_f(*COLORS[ob.color])} 1"
        out.append(
            f'  <body name="{ob.name}" pos="{_f(ob.position[0], ob.position[1], ob.rest_height + 0.002)}" '
            f'euler="0 0 {math.degrees(ob.yaw):.3f}">'
        )
        out.append("    <freejoint/>")
        out += [
            "    " + g for g in _shape_geoms(ob.shape, ob.size, rgba, f'density="300" friction="{FRICTION}"')
        ]
        out.append("  </body>")
    for i, (shape, size) in enumerate(SPARES):
        out.append(f'  <body name="spare:{shape}:{i}" pos="{_f(-10 - 2 * i, -10, PARK_Z)}" gravcomp="1">')
        out.append("    <freejoint/>")
        out += [
            "    " + g
            for g in _shape_geoms(
                shape,
                size,
                "0.5 0.5 0.5 1",
                f'density="300" friction="{FRICTION}" contype="0" conaffinity="0"',
            )
        ]
        out.append("  </body>")
    out += [
        f'  <body name="eye_body" mocap="true" pos="{_f(spec.start.x, spec.start.y, spec.start.z)}">',
        f'    <camera name="eye" fovy="{vfov_deg}"/>',
        "  </body>",
        "</worldbody>",
        "</mujoco>",
    ]
    return "\n".join(out)
