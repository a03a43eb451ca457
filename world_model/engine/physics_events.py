"""Events as physics on a ``GroundTruthWorld``: each record changes persistent world state.

- lights on/off: ``model.light_active`` (the dim ambient headlight stays, so "off" is dark, not black).
- drop/spawn: a spare body (parked under the floor) is coloured, released ahead of the camera and falls;
  when every spare of a shape is in use the oldest one is recycled.
- push: a horizontal force away from the camera for 0.2 s (``xfrc_applied``), enough to bring the object to
  1.5 m/s against the floor's friction; friction then stops it.
- open/close: a PD torque on the door hinge toward 0 or ±90° (``qfrc_applied``), every physics step.
- paint: the object's geoms change colour.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from world_model.engine import mujoco
from world_model.events import DEFAULT_ANCHOR_M, TARGETED, EventRecord
from world_model.semantics import COLORS

if TYPE_CHECKING:
    from world_model.engine.world import GroundTruthWorld

DROP_HEIGHT = 1.2
PUSH_SPEED = 1.5  # m/s the push aims to give the object
PUSH_SECONDS = 0.2
GRAVITY = 9.81


def resolve_targets(world: GroundTruthWorld, records: list[EventRecord]) -> list[int | None]:
    """The object each record acts on (None for records without a target), all resolved against the world
    as it is now; raises ``ValueError`` naming the first target the scene lacks."""
    return [resolve_target(world, ev.entity) if ev.predicate in TARGETED else None for ev in records]


def apply_event(world: GroundTruthWorld, ev: EventRecord, target: int | None = None) -> None:
    """Apply one validated record to the object ``target`` (resolved here when None); raises
    ``ValueError`` if it names something the world lacks."""
    if ev.predicate == "lights":
        world.lights_on = ev.attributes["state"] == "on"
        world.model.light_active[:] = 1 if world.lights_on else 0
    elif ev.predicate in ("open", "close"):
        world.door_target = math.radians(90.0) * world.spec.door_open_sign if ev.predicate == "open" else 0.0
    elif ev.predicate in ("drop", "spawn"):
        _release(world, ev)
    elif ev.predicate == "paint":
        k = resolve_target(world, ev.entity) if target is None else target
        _set_color(world, k, ev.attributes["color"])
    elif ev.predicate == "push":
        k = resolve_target(world, ev.entity) if target is None else target
        body = int(world.object_bodies[k])
        offset = world.data.xpos[body, :2] - np.array([world.view.x, world.view.y])
        direction = offset / max(float(np.linalg.norm(offset)), 1e-6)
        mass = float(world.model.body_subtreemass[body])
        accel = PUSH_SPEED / PUSH_SECONDS + _floor_friction(world, body) * GRAVITY
        force = np.array([*direction * mass * accel, 0.0])
        world._pushes[body] = (force, int(PUSH_SECONDS / world.model.opt.timestep))
    else:  # validated records never get here
        raise ValueError(f"unhandled event {ev}")


def _floor_friction(world: GroundTruthWorld, body: int) -> float:
    """The sliding friction coefficient between ``body`` and the floor: MuJoCo takes the larger of the two
    geoms' coefficients for a contact."""
    m = world.model
    floor = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    own = m.geom_friction[m.geom_bodyid == body, 0]
    return float(max(m.geom_friction[floor, 0], own.max(initial=0.0)))


def _set_color(world: GroundTruthWorld, k: int, color: str) -> None:
    body = int(world.object_bodies[k])
    geoms = np.flatnonzero(world.model.geom_bodyid == body)
    world.model.geom_rgba[geoms, :3] = COLORS[color]
    world.object_colors[k] = color


def resolve_target(world: GroundTruthWorld, entity: str) -> int:
    """Object index for ``"shape#n"`` or the nearest active object matching ``"nearest [colour] [shape]"``,
    preferring objects in front of the camera."""
    names = world.object_names
    if "#" in entity:
        if entity not in names or not world.object_active[names.index(entity)]:
            present = [n for n, a in zip(names, world.object_active, strict=True) if a]
            raise ValueError(f"no object {entity!r} in this scene; objects: {', '.join(present)}")
        return names.index(entity)
    words = entity.split()[1:]
    color = next((w for w in words if w in COLORS), None)
    shape = next((w for w in words if w not in COLORS and w != "object"), None)
    here = np.array([world.view.x, world.view.y])
    heading = np.array([math.cos(world.view.yaw), math.sin(world.view.yaw)])
    best, best_score = -1, math.inf
    for k, body in enumerate(world.object_bodies):
        if (
            not world.object_active[k]
            or (shape and world.object_shapes[k] != shape)
            or (color and world.object_colors[k] != color)
        ):
            continue
        offset = world.data.xpos[body, :2] - here
        dist = float(np.linalg.norm(offset))
        in_front = float(offset @ heading) > 0.5 * dist
        score = dist + (0.0 if in_front else 100.0)
        if score < best_score:
            best, best_score = k, score
    if best < 0:
        raise ValueError(f"no {' '.join(words) or 'object'} to target in this scene")
    return best


def _release(world: GroundTruthWorld, ev: EventRecord) -> None:
    m, d = world.model, world.data
    spares = [
        k
        for k, s in enumerate(world.object_shapes)
        if world.object_names[k].startswith("spare:") and s == ev.entity
    ]
    free = [k for k in spares if not world.object_active[k]]
    k = free[0] if free else min(spares, key=lambda j: world._spare_order.get(j, 0))
    world._spare_counter += 1
    world._spare_order[k] = world._spare_counter
    body = int(world.object_bodies[k])
    distance = DEFAULT_ANCHOR_M if ev.anchor is None else float(ev.anchor)
    x0, y0, x1, y1 = world.spec.bounds
    r = float(world.object_radius[k]) + 0.05
    x = float(np.clip(world.view.x + distance * math.cos(world.view.yaw), x0 + r, x1 - r))
    y = float(np.clip(world.view.y + distance * math.sin(world.view.yaw), y0 + r, y1 - r))
    size = m.geom_size[np.flatnonzero(m.geom_bodyid == body)[0]]
    rest = {"ball": size[0], "box": size[2], "cylinder": size[1], "capsule": size[0] + size[1]}[ev.entity]
    z = DROP_HEIGHT if ev.predicate == "drop" else float(rest) + 0.002
    joint = m.body_jntadr[body]
    qadr, vadr = m.jnt_qposadr[joint], m.jnt_dofadr[joint]
    d.qpos[qadr : qadr + 7] = (x, y, z, 1, 0, 0, 0)
    d.qvel[vadr : vadr + 6] = 0.0
    m.body_gravcomp[body] = 0.0
    geoms = np.flatnonzero(m.geom_bodyid == body)
    m.geom_contype[geoms] = 1
    m.geom_conaffinity[geoms] = 1
    m.body_contype[body] = m.body_conaffinity[body] = 1  # the broadphase filters on these
    world.object_active[k] = True
    _set_color(world, k, ev.attributes.get("color", "red"))
    mujoco.mj_forward(m, d)
