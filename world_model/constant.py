"""``ConstantWorldModel``: a trivial, deterministic, very cheap backend.

It draws a flat world: a sky whose colour depends on the heading, a checkered floor whose colour depends on
the position, and the scene's objects as upright billboards (with depth and semantic classes). The same
pose always gives the same frame, so revisits are perfectly consistent; events change the world state
(lights dim the picture, drops and spawns add objects, paint recolours, push moves). It exists to measure
the protocol and batching overhead of the server and to test the env without a renderer.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from world_model.backend import (
    BackendInfo,
    Frames,
    SceneInfo,
    SessionTable,
    WorldModel,
    first_frame_argument,
    generate_arguments,
    start_pose_argument,
)
from world_model.events import TARGETED, EventRecord
from world_model.geometry import Intrinsics, Viewpoint, yaw_pitch
from world_model.semantics import CLASS_ID, COLORS, OBJECT_SHAPES


@dataclass
class ConstantConfig:
    height: int = 64
    width: int = 64
    vfov_deg: float = 70.0
    half_size_m: float = 4.0  # walkable square [-half, half]^2
    camera_height_m: float = 1.2
    n_objects: int = 6
    n_goals: int = 3
    dim_factor: float = 0.3  # brightness with the lights off
    max_objects: int = 24  # drops and spawns beyond this remove the oldest object
    draw_objects: bool = True  # False: sky and floor only, the cheapest frames (overhead benchmarks)


@dataclass
class _Session:
    seed: int | None
    pose: np.ndarray
    objects: list[dict] = field(default_factory=list)
    lights_on: bool = True
    door_open: bool = False
    first_frame: np.ndarray | None = None


class ConstantWorldModel(WorldModel):
    """Deterministic flat-shaded world; see the module docstring. Poses are clamped to the square bounds."""

    def __init__(self, config: ConstantConfig | None = None) -> None:
        self.config = config or ConstantConfig()
        c = self.config
        self.intr = Intrinsics.from_fov(c.height, c.width, c.vfov_deg)
        self._sessions: SessionTable[_Session] = SessionTable()
        rows = np.arange(c.height) + 0.5
        self._rows = rows.astype(np.float32)

    def info(self) -> BackendInfo:
        c = self.config
        return BackendInfo("constant", c.height, c.width, c.vfov_deg, extra={"half_size_m": c.half_size_m})

    # -- sessions -------------------------------------------------------------------------------------------
    def _scene(self, seed: int | None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        c = self.config
        rng = np.random.default_rng(seed if seed is not None else 0)
        h = c.half_size_m * 0.6

        def random_pose() -> np.ndarray:
            x, y = rng.uniform(-h, h, size=2)
            return Viewpoint(
                float(x), float(y), c.camera_height_m, float(rng.uniform(-math.pi, math.pi))
            ).pose()

        start = random_pose()
        goals = np.stack([random_pose() for _ in range(c.n_goals)])
        colors = list(COLORS)
        objects = []
        for i in range(c.n_objects):
            x, y = rng.uniform(-c.half_size_m, c.half_size_m, size=2)
            objects.append(
                {
                    "id": i,
                    "shape": OBJECT_SHAPES[int(rng.integers(0, 4))],
                    "color": colors[int(rng.integers(0, len(colors)))],
                    "position": [float(x), float(y), 0.0],
                    "size": float(rng.uniform(0.3, 0.8)),
                }
            )
        return start, goals, objects

    def open(
        self,
        scene_seed: int | None = None,
        *,
        first_frame: np.ndarray | None = None,
        start_pose: np.ndarray | None = None,
    ) -> tuple[int, Frames, SceneInfo]:
        start, goals, objects = self._scene(scene_seed)
        given = start_pose_argument(start_pose)
        pose = self._level((start if given is None else given)[None])[0]
        s = _Session(scene_seed, pose, objects)
        image = first_frame_argument(first_frame, self.config.height, self.config.width)
        if image is not None:
            s.first_frame = image.copy()
        frames = self._render(s, pose[None])
        if s.first_frame is not None:
            frames.rgb[0] = s.first_frame
        h = self.config.half_size_m
        scene = SceneInfo(
            scene_seed,
            "constant",
            start,
            goals,
            [{k: o[k] for k in ("id", "shape", "color", "position")} for o in objects],
            (-h, -h, h, h),
        )
        return self._sessions.add(s), frames, scene

    def fork(self, session: int) -> int:
        return self._sessions.add(copy.deepcopy(self._sessions[session]))

    def close(self, session: int) -> None:
        self._sessions.pop(session)

    def pose(self, session: int) -> np.ndarray:
        return self._sessions[session].pose.copy()

    def shutdown(self) -> None:
        self._sessions.clear()

    # -- generation -----------------------------------------------------------------------------------------
    def generate(
        self, sessions: list[int], relative_poses: np.ndarray, events: list[list[EventRecord]]
    ) -> list[Frames]:
        relative_poses = generate_arguments(sessions, relative_poses, events)
        states = [self._sessions[sid] for sid in sessions]
        for s, evs in zip(states, events, strict=True):
            for ev in evs:
                self._apply_event(s, ev)
        b, k = relative_poses.shape[:2]
        poses = (np.stack([s.pose for s in states])[:, None] @ relative_poses).reshape(b * k, 4, 4)
        poses = self._level(poses).reshape(b, k, 4, 4)
        light = np.repeat([1.0 if s.lights_on else self.config.dim_factor for s in states], k)
        rgb, depth, sem, yaw, horizon = self._background(poses.reshape(b * k, 4, 4), light)
        out = []
        for i, s in enumerate(states):
            s.pose = poses[i, -1].copy()
            f = slice(i * k, (i + 1) * k)
            if s.objects and self.config.draw_objects:
                self._draw_objects(s, poses[i], yaw[f], horizon[f], light[i * k], rgb[f], depth[f], sem[f])
            out.append(Frames(rgb[f], depth[f], sem[f], poses[i]))
        return out

    def _render(self, s: _Session, poses: np.ndarray) -> Frames:
        light = np.full(len(poses), 1.0 if s.lights_on else self.config.dim_factor)
        rgb, depth, sem, yaw, horizon = self._background(poses, light)
        if s.objects and self.config.draw_objects:
            self._draw_objects(s, poses, yaw, horizon, light[0], rgb, depth, sem)
        return Frames(rgb, depth, sem, poses.copy())

    def _level(self, poses: np.ndarray) -> np.ndarray:
        """Keep cameras ``[N, 4, 4]`` inside the walls, level (no roll) and exactly rigid."""
        h = self.config.half_size_m - 0.1
        yaw, pitch = yaw_pitch(poses)
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        forward = np.stack([cp * cy, cp * sy, sp], -1)
        right = np.stack([sy, -cy, np.zeros_like(cy)], -1)
        out = np.zeros_like(poses)
        out[:, :3, 0], out[:, :3, 1], out[:, :3, 2] = right, np.cross(forward, right), forward
        out[:, :2, 3] = np.clip(poses[:, :2, 3], -h, h)
        out[:, 2, 3], out[:, 3, 3] = poses[:, 2, 3], 1.0
        return out

    def _apply_event(self, s: _Session, ev: EventRecord) -> None:
        p = ev.predicate
        if p == "lights":
            s.lights_on = ev.attributes.get("state") == "on"
        elif p in ("open", "close"):
            s.door_open = p == "open"
        elif p in ("drop", "spawn"):
            vp = Viewpoint.from_pose(s.pose)
            d = ev.anchor if ev.anchor is not None else 1.5
            if len(s.objects) >= self.config.max_objects:
                s.objects.pop(0)  # the oldest object leaves the world
            s.objects.append(
                {
                    "id": len(s.objects),
                    "shape": ev.entity,
                    "color": ev.attributes.get("color", "red"),
                    "size": 0.4,
                    "position": [vp.x + d * math.cos(vp.yaw), vp.y + d * math.sin(vp.yaw), 0.0],
                }
            )
        elif p in TARGETED:
            target = self._target(s, ev.entity)
            if target is None:
                return
            if p == "paint":
                target["color"] = ev.attributes["color"]
            else:
                dx, dy = target["position"][0] - s.pose[0, 3], target["position"][1] - s.pose[1, 3]
                n = math.hypot(dx, dy) or 1.0
                target["position"] = [
                    target["position"][0] + 0.5 * dx / n,
                    target["position"][1] + 0.5 * dy / n,
                    0.0,
                ]

    def _target(self, s: _Session, entity: str) -> dict | None:
        if "#" in entity:
            idx = int(entity.split("#")[1])
            return next((o for o in s.objects if o["id"] == idx), None)
        words = entity.split()
        cands = [
            o
            for o in s.objects
            if all(w in ("nearest", "object") or w in (o["shape"], o["color"]) for w in words)
        ]
        if not cands:
            return None
        return min(
            cands, key=lambda o: math.hypot(o["position"][0] - s.pose[0, 3], o["position"][1] - s.pose[1, 3])
        )

    def _background(self, poses: np.ndarray, light: np.ndarray) -> tuple[np.ndarray, ...]:
        """Sky and floor for poses ``[N, 4, 4]``: rgb, depth, semantic, yaw and horizon row per frame."""
        c, intr = self.config, self.intr
        n, hgt, wid = len(poses), c.height, c.width
        yaw, pitch = yaw_pitch(poses)
        x, y = poses[:, 0, 3], poses[:, 1, 3]
        horizon = intr.cy + intr.fy * np.tan(pitch)  # row of the horizon (looking up moves it down)
        sky = 128 + 100 * np.stack([np.cos(yaw), np.cos(yaw - 2.094), np.cos(yaw + 2.094)], -1)
        checker = (np.floor(x / 0.5) + np.floor(y / 0.5)) % 2
        floor = np.stack(
            [60 + 10 * (x + c.half_size_m), 70 + 10 * (y + c.half_size_m), 50 + 60 * checker], -1
        )
        below = self._rows[None, :] > horizon[:, None]  # [N, H]
        rows = np.where(below[..., None], floor[:, None, :], sky[:, None, :]) * light[:, None, None]
        # Broadcast whole RGBA pixels as uint32 (an order of magnitude faster than bytes); rgb is a view.
        rgba = np.zeros((n, hgt, 4), np.uint8)
        rgba[..., :3] = rows
        pixels = np.empty((n, hgt, wid), np.uint32)
        pixels[:] = rgba.view(np.uint32)
        rgb = pixels.view(np.uint8).reshape(n, hgt, wid, 4)[..., :3]
        dist = np.where(
            below, c.camera_height_m * intr.fy / np.maximum(self._rows[None] - horizon[:, None], 1e-3), np.inf
        ).astype(np.float32)
        depth = np.empty((n, hgt, wid), np.float32)
        depth[:] = dist[:, :, None]
        sem = np.empty((n, hgt, wid), np.uint8)
        sem[:] = np.where(below, CLASS_ID["floor"], CLASS_ID["sky"]).astype(np.uint8)[:, :, None]
        return rgb, depth, sem, yaw, horizon

    def _draw_objects(self, s: _Session, poses, yaw, horizon, light, rgb, depth, sem) -> None:
        c, intr = self.config, self.intr
        pos = np.array([o["position"][:2] for o in s.objects])  # [M, 2]
        size = np.array([o.get("size", 0.4) for o in s.objects])
        rel = pos[None] - poses[:, None, :2, 3]  # [N, M, 2]
        bearing = np.arctan2(rel[..., 1], rel[..., 0]) - yaw[:, None]
        bearing = np.arctan2(np.sin(bearing), np.cos(bearing))
        z = np.hypot(rel[..., 0], rel[..., 1]) * np.cos(bearing)
        u = intr.cx - intr.fx * np.tan(np.clip(bearing, -1.5, 1.5))
        half = 0.5 * size[None] * intr.fx / np.maximum(z, 1e-3)
        visible = (z > 0.2) & (u + half >= 0) & (u - half < c.width)
        for n, m in sorted(zip(*np.nonzero(visible), strict=True), key=lambda nm: -z[nm]):
            o, zz = s.objects[m], z[n, m]
            u0, u1 = int(max(u[n, m] - half[n, m], 0)), int(min(u[n, m] + half[n, m] + 1, c.width))
            v0 = int(np.clip(horizon[n] + (c.camera_height_m - size[m]) * intr.fy / zz, 0, c.height))
            v1 = int(np.clip(horizon[n] + c.camera_height_m * intr.fy / zz + 1, 0, c.height))
            rgb[n, v0:v1, u0:u1] = (np.array(COLORS[o["color"]]) * 255 * light).astype(np.uint8)
            depth[n, v0:v1, u0:u1] = zz
            sem[n, v0:v1, u0:u1] = CLASS_ID[o["shape"]]
