"""What the learned model knows about a session's world beyond its pixels: persistent event state.

Events change the world for good (``world_model.events``: the records and the prompts they come from).
The learned model keeps them as a small structured state:
lights and door bits (fed to the network as FiLM conditioning) and *props*, 3D things events put in the
world (a dropped ball, a painted object), drawn into every target camera as hint channels. Props are placed
the way the engine places them (``engine.physics_events``: drops land ``anchor`` metres ahead, paint hits the
nearest object in view), using the model's own predicted depth and semantics, so revisits show them again.
Training replays the recorded events through the same code on ground-truth depth and semantics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from world_model.events import DEFAULT_ANCHOR_M, EventRecord
from world_model.geometry import Intrinsics, pixel_rays, unproject
from world_model.model.network import inverse_depth
from world_model.semantics import CLASS_ID, COLORS, OBJECT_CLASS_IDS, OBJECT_SHAPES, SEMANTIC_CLASSES

# Resting size (radius, half height) of what a drop or spawn brings in: the engine's spare bodies.
PROP_SIZE: dict[str, tuple[float, float]] = {
    "ball": (0.15, 0.15),
    "box": (0.15, 0.15),
    "cylinder": (0.15, 0.2),
    "capsule": (0.1, 0.25),
}
PAINT_RADIUS_M = 0.35
# A prop's pixel colour over its albedo, lights on and off: the engine's renders of dropped red balls and
# blue boxes in training scenes 5000-5011 gave 0.96-1.2 (on) and 0.06-0.08 (off) per channel
SHADE = {True: 1.0, False: 0.065}
HINT_CHANNELS = 6  # rgb, object mask, paint mask, object inverse depth
# Where the engine's push (``engine.physics_events``: 1.5 m/s in 0.2 s against the floor's friction, away
# from the camera) leaves an object, measured on the 411 objects of training scenes 0-39
# (docs/world_model.md): a ball rolls on until a wall or an object stops it (1.6 m in 10 frames, 2.4 m in
# 30; drawn where it stops: at the room's wall, at most BALL_ROLL_M on); every capsule tips over and rolls on
# (its centre moves 1.57x its radius plus half height in 10 frames, cylinders 1.36x: TIPPED_ROLL); a cylinder
# tips where it is tall (all with half height / radius above 3, most of those between 2 and 3, 1 in 26
# below 2); everything else slides SLIDE_M (medians: boxes 0.50 m, tables 0.53 m, squat cylinders 0.5 m).
BALL_ROLL_M = 5.0
SLIDE_M = 0.5
TIPPED_ROLL = 1.5
TABLE_TOP_M = 0.06  # a table's top slab and its legs' radius (engine.mjcf): how a pushed table is drawn
TABLE_LEG_M = 0.03
TIP_ASPECT = 2.5  # a cylinder this much taller than wide on screen tips over
MIN_OBJECT_PIXELS = 4  # fewer connected pixels of a class are not taken for an object
VACATED_MARGIN_M = 0.1  # memory forgets this much around a pushed object's old place


@dataclass(frozen=True)
class Vacated:
    """A place a push emptied: a vertical cylinder over ``center`` (x, y) up to ``top`` metres."""

    center: tuple[float, float]
    radius: float
    top: float


@dataclass(frozen=True)
class Prop:
    """A thing an event put in the world: ``kind`` "object" (dropped/spawned) or "paint"."""

    kind: str
    shape: str
    color: tuple[float, float, float]
    center: tuple[float, float, float]
    radius: float
    half_height: float


@dataclass
class WorldState:
    lights_on: bool = True
    door_open: bool = False
    version: int = 0  # bumped when the lights or the door change (memory lets the new look settle first)
    props: tuple[Prop, ...] = field(default_factory=tuple)
    vacated: tuple[Vacated, ...] = field(default_factory=tuple)  # places pushed objects left

    @property
    def look(self) -> tuple[bool, bool]:
        """What the world looks like beyond the props, ``(lights_on, door_open)``: memories seen in another
        look are stale, and those seen in this one are current again when the world comes back to it."""
        return self.lights_on, self.door_open

    def vector(self) -> np.ndarray:
        """Global conditioning: [lights on, door open] as ±1."""
        return np.array([1.0 if self.lights_on else -1.0, 1.0 if self.door_open else -1.0], np.float32)

    def apply(
        self,
        ev: EventRecord,
        pose: np.ndarray,
        depth: np.ndarray,
        semantic: np.ndarray,
        intr: Intrinsics,
        bounds: tuple[float, float, float, float] | None = None,
        rgb: np.ndarray | None = None,
    ) -> WorldState:
        """The state after ``ev`` for a camera at ``pose`` that sees ``depth``/``semantic`` (and colour ``rgb
        [H, W, 3]`` in [0, 1], which a push needs to redraw the object). Raises ``ValueError`` when the event
        has no target in view (like the engine with no target in the scene)."""
        p = ev.predicate
        new = replace(self)
        if p == "lights":
            new.lights_on = ev.attributes["state"] == "on"
        elif p in ("open", "close"):
            new.door_open = p == "open"
        elif p in ("drop", "spawn"):
            new.props = self.props + (_placed(ev, pose, bounds),)
        elif p == "paint":
            center = _target_point(ev.entity, pose, depth, semantic, intr)
            color = COLORS[ev.attributes["color"]]
            new.props = self.props + (Prop("paint", "", color, center, PAINT_RADIUS_M, PAINT_RADIUS_M),)
        elif p == "push":
            moved, gone = _pushed(ev.entity, pose, depth, semantic, intr, bounds, rgb, self.lights_on)
            new.props, new.vacated = self.props + (moved,), self.vacated + (gone,)
        if (new.lights_on, new.door_open) != (self.lights_on, self.door_open):
            new.version += 1  # the look changed beyond the props (drawn from the state in every view)
        return new

    def hints(self, poses: np.ndarray, intr: Intrinsics) -> np.ndarray:
        """Hint channels ``[N, 6, H, W]`` for cameras ``poses [N,4,4]``: prop colour (in [-1, 1]), object
        mask, paint mask and the objects' inverse depth (``network.inverse_depth``), nearest prop on top."""
        n, h, w = len(poses), intr.height, intr.width
        out = np.zeros((n, HINT_CHANNELS, h, w), np.float32)
        if not self.props:
            return out
        vv, uu = np.mgrid[0:h, 0:w] + 0.5
        for i, pose in enumerate(poses):
            zbuf = np.full((h, w), np.inf)
            rot, t = pose[:3, :3], pose[:3, 3]
            for prop in self.props:
                c = (np.asarray(prop.center) - t) @ rot
                if c[2] < 0.1:
                    continue
                uc, vc = intr.to_pixels(c[0], c[1], c[2])
                rx, ry = intr.fx * prop.radius / c[2], intr.fy * prop.half_height / c[2]
                if prop.shape == "ball" or prop.kind == "paint":
                    inside = ((uu - uc) / rx) ** 2 + ((vv - vc) / ry) ** 2 <= 1.0
                elif prop.shape == "table":
                    inside = _table_pixels(prop, pose, intr)
                else:
                    inside = _box_pixels(prop, pose, intr)
                inside &= c[2] < zbuf
                if not inside.any():
                    continue
                zbuf[inside] = c[2]
                out[i, 0:3, inside] = np.asarray(prop.color, np.float32) * 2 - 1
                obj = prop.kind == "object"
                out[i, 3, inside] = float(obj)
                out[i, 4, inside] = float(not obj)
                out[i, 5, inside] = inverse_depth(np.float32(c[2])) if obj else 0.0
        return out


def _table_pixels(prop: Prop, pose: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Pixels ``[H, W]`` (bool) covered by a table the prop's size: its top slab and four legs."""
    x, y, z = prop.center
    r, top = prop.radius, 2 * prop.half_height
    top_slab = replace(prop, center=(x, y, top - TABLE_TOP_M / 2), half_height=TABLE_TOP_M / 2)
    slab = _box_pixels(top_slab, pose, intr)
    inset = max(r - 0.05, TABLE_LEG_M)
    for dx in (-inset, inset):
        for dy in (-inset, inset):
            leg = replace(prop, center=(x + dx, y + dy, z), radius=TABLE_LEG_M)
            slab |= _box_pixels(leg, pose, intr)
    return slab


def _box_pixels(prop: Prop, pose: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Pixels ``[H, W]`` (bool) covered by an upright, world-aligned box of the prop's size in the camera
    ``pose``: the convex hull of its corners' projections (top and sides show, as the engine draws them)."""
    r, hh = prop.radius, prop.half_height
    corners = np.array([[x, y, z] for x in (-r, r) for y in (-r, r) for z in (-hh, hh)]) + prop.center
    cam = (corners - pose[:3, 3]) @ pose[:3, :3]
    cam = cam[cam[:, 2] > 0.05]
    mask = np.zeros((intr.height, intr.width), np.uint8)
    if len(cam) < 3:
        return mask.astype(bool)
    u, v = intr.to_pixels(cam[:, 0], cam[:, 1], cam[:, 2])
    hull = cv2.convexHull(np.round(np.stack([u, v], 1) * 16 - 8).astype(np.int32))  # 4 fractional bits
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _forward_xy(pose: np.ndarray) -> np.ndarray:
    f = pose[:2, 2]
    return f / max(float(np.linalg.norm(f)), 1e-9)


def _placed(ev: EventRecord, pose: np.ndarray, bounds: tuple[float, float, float, float] | None) -> Prop:
    radius, half = PROP_SIZE[ev.entity]
    distance = DEFAULT_ANCHOR_M if ev.anchor is None else float(ev.anchor)
    xy = pose[:2, 3] + distance * _forward_xy(pose)
    if bounds is not None and all(math.isfinite(b) for b in bounds):
        m = radius + 0.05
        xy = np.clip(xy, [bounds[0] + m, bounds[1] + m], [bounds[2] - m, bounds[3] - m])
    color = COLORS[ev.attributes.get("color", "red")]
    return Prop("object", ev.entity, color, (float(xy[0]), float(xy[1]), half), radius, half)


def _target_region(
    entity: str, pose: np.ndarray, depth: np.ndarray, semantic: np.ndarray, intr: Intrinsics
) -> np.ndarray:
    """The pixels ``[H, W]`` (bool) of the object in view that ``"nearest [colour] [shape]"`` names, picked
    as the engine picks (``engine.physics_events.resolve_target``): of the objects of that shape, the one
    whose centre is nearest the camera. An object is a connected region of its class of at least
    ``MIN_OBJECT_PIXELS``; its centre is its points' median, half its width further away. A named object
    ``"shape#n"`` is taken as the nearest of its shape (the model sees classes, not instances)."""
    words = [w.split("#")[0] for w in entity.replace("nearest", "").replace("object", "").split()]
    shapes = [w for w in words if w in OBJECT_SHAPES]
    classes = [CLASS_ID[s] for s in shapes] if shapes else list(OBJECT_CLASS_IDS)
    best, best_distance = None, math.inf
    for c in classes:
        count, parts = cv2.connectedComponents((semantic == c).astype(np.uint8), connectivity=4)
        for k in range(1, count):
            pixels = (parts == k) & np.isfinite(depth)
            if pixels.sum() < MIN_OBJECT_PIXELS:
                continue
            points = unproject(depth, pose, intr, pixels)[:, :2]
            middle = np.median(points, axis=0)
            distance = float(np.linalg.norm(middle - pose[:2, 3])) + _half_width(points, pose)
            if distance < best_distance:
                best, best_distance = pixels, distance
    if best is None:
        raise ValueError(f"no {' '.join(shapes) or 'object'} in view to target for {entity!r}")
    return best


def _half_width(points: np.ndarray, pose: np.ndarray) -> float:
    """Half the extent across the view of floor-plane ``points [N, 2]`` seen from ``pose``."""
    away = points.mean(axis=0) - pose[:2, 3]
    away = away / max(float(np.linalg.norm(away)), 1e-9)
    width = points @ np.array([-away[1], away[0]])
    return float(width.max() - width.min()) / 2


def _target_point(
    entity: str, pose: np.ndarray, depth: np.ndarray, semantic: np.ndarray, intr: Intrinsics
) -> tuple[float, float, float]:
    """World point of the targeted object's (``_target_region``) nearest pixel."""
    region = _target_region(entity, pose, depth, semantic, intr)
    v, u = np.unravel_index(int(np.argmin(np.where(region, depth, np.inf))), depth.shape)
    ray = pixel_rays(intr)[v, u] * float(depth[v, u])
    p = pose[:3, :3] @ ray + pose[:3, 3]
    return float(p[0]), float(p[1]), float(p[2])


def _pushed(
    entity: str,
    pose: np.ndarray,
    depth: np.ndarray,
    semantic: np.ndarray,
    intr: Intrinsics,
    bounds: tuple[float, float, float, float] | None,
    rgb: np.ndarray | None,
    lights_on: bool,
) -> tuple[Prop, Vacated]:
    """The pushed object redrawn where the push leaves it, and the place it left, from what the camera sees
    of the object ``_target_region`` picks: its width across the view gives its radius, its nearest point
    plus that radius its centre, its pixels' median its colour. What the engine's push does to each shape:
    - a ball rolls on to the room's wall (at most ``BALL_ROLL_M``);
    - a capsule, or a cylinder that stands more than ``TIP_ASPECT`` times as tall as it is wide on screen,
      tips over away from the camera and rolls on: it lies on its side, its centre ``TIPPED_ROLL`` times its
      radius plus its half height further on;
    - anything else (a box, a table, a squat cylinder) slides ``SLIDE_M`` away, upright."""
    pixels = _target_region(entity, pose, depth, semantic, intr)
    shape = SEMANTIC_CLASSES[int(semantic[pixels][0])]
    rows, cols = np.nonzero(pixels)
    aspect = (rows.max() - rows.min() + 1) / (cols.max() - cols.min() + 1)
    tips = shape == "capsule" or (shape == "cylinder" and aspect > TIP_ASPECT)
    points = unproject(depth, pose, intr, pixels)
    away = points[:, :2].mean(axis=0) - pose[:2, 3]
    away = away / max(float(np.linalg.norm(away)), 1e-9)
    across = np.array([-away[1], away[0]])
    width = points[:, :2] @ across
    radius = float(np.clip((width.max() - width.min()) / 2, 0.05, 0.6))
    center = points[:, :2] @ away
    xy = (center.min() + radius) * away + float(np.median(width)) * across
    top = float(points[:, 2].max())
    half = radius  # a ball, or a cylinder or capsule lying on its side
    if shape == "ball":
        shift, kind = BALL_ROLL_M, "ball"
    elif tips:  # over its far edge, and rolls on
        shift, kind = TIPPED_ROLL * (radius + float(np.clip(aspect * radius, radius, 0.6))), "box"
    else:  # upright, as tall as its top
        shift, kind, half = SLIDE_M, "table" if shape == "table" else "box", max(top, 0.05) / 2
    if rgb is None:
        color = (0.5, 0.5, 0.5)
    else:
        seen = np.median(rgb[pixels], axis=0) / SHADE[lights_on]
        color = tuple(float(c) for c in np.clip(seen, 0.0, 1.0))
    moved = xy + shift * away
    if bounds is not None and all(math.isfinite(b) for b in bounds):
        m = radius + 0.05
        moved = np.clip(moved, [bounds[0] + m, bounds[1] + m], [bounds[2] - m, bounds[3] - m])
    prop = Prop("object", kind, color, (float(moved[0]), float(moved[1]), half), radius, half)
    gone = Vacated((float(xy[0]), float(xy[1])), radius + VACATED_MARGIN_M, top + VACATED_MARGIN_M)
    return prop, gone
