"""``GroundTruthWorld``: one MuJoCo world of a scene seed with a walking camera, physics and events.

The camera is a mocap body: it moves kinematically and cannot pass through walls, the closed door or
objects (a circle of ``CAMERA_RADIUS`` against their footprints, sliding along what blocks it). Each
video frame advances physics by ``FRAME_DT`` seconds, so a dropped ball falls and settles over frames.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from world_model.engine import mujoco
from world_model.engine.mjcf import FRAME_DT, SPARES, TIMESTEP, scene_to_mjcf
from world_model.engine.physics_events import apply_event, resolve_targets
from world_model.engine.renderer import SceneRenderer
from world_model.engine.scenes import ProceduralScene, make_scene
from world_model.geometry import Intrinsics, KeyMap, Viewpoint, apply_deltas, key_deltas, pixel_rays
from world_model.semantics import CLASS_ID

CAMERA_RADIUS = 0.2
NIGHT_SKY = 0.3  # sky brightness with the lights off
# Bumped whenever the engine renders the same scene and trajectory differently (2: pushes overcome the
# floor's friction, surfaces at friction 0.5), so truths an older engine cached are not reused.
ENGINE_REVISION = 2
SETTLED_SPEED = 1e-3  # m/s or rad/s under which a world with nothing driving it is at rest
MIN_EYE_Z, MAX_EYE_Z = 0.3, 2.2
# MuJoCo cameras look along -z with +y up: OpenCV camera axes with y and z flipped.
_CV_TO_MJ = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class RenderConfig:
    height: int = 64
    width: int = 64
    vfov_deg: float = 70.0
    segmentation: bool = True

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_fov(self.height, self.width, self.vfov_deg)


@dataclass
class Observation:
    """One rendered frame: ``rgb [H,W,3] uint8``, ``depth [H,W] float32`` (z-depth, m, inf = sky),
    ``semantic [H,W] uint8`` class ids, ``instance [H,W] int16`` (0 = none, else 1 + object index
    in ``world.object_names``), ``pose [4,4]``."""

    rgb: np.ndarray
    depth: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    pose: np.ndarray


def compile_scene(spec: ProceduralScene, render: RenderConfig = RenderConfig()) -> mujoco.MjModel:
    """The MuJoCo model of ``spec`` with an offscreen buffer for ``render``'s image size."""
    return mujoco.MjModel.from_xml_string(scene_to_mjcf(spec, render.height, render.width, render.vfov_deg))


class GroundTruthWorld:
    """The ground-truth world of one scene. ``fork()`` copies the full state (physics, lights, paint)."""

    def __init__(
        self,
        seed: int,
        render: RenderConfig = RenderConfig(),  # noqa: B008  (frozen dataclasses)
        keymap: KeyMap = KeyMap(),  # noqa: B008
        spec: ProceduralScene | None = None,
        renderer: SceneRenderer | None = None,
        model: mujoco.MjModel | None = None,
    ) -> None:
        """The world of ``seed`` (or of ``spec``). ``model`` is a compiled model of that spec to copy, and
        ``renderer`` one made for it: passing both skips compilation (worlds of a cached scene)."""
        self.spec = spec or make_scene(seed)
        self.render_cfg, self.keymap = render, keymap
        if model is None:
            model = compile_scene(self.spec, render)
        self.model = copy.copy(model)
        self.data = mujoco.MjData(self.model)
        self.renderer = renderer or SceneRenderer(self.model, render.height, render.width)
        self._index_model()
        self.view = self.spec.start
        self.time_frames = 0
        self.lights_on = True
        self.door_target = 0.0
        self._pushes: dict[int, tuple[np.ndarray, int]] = {}  # body -> (force, substeps left)
        self._spare_order: dict[int, int] = {}  # spare index -> when it was last released
        self._spare_counter = 0
        self.events_applied: list[dict] = []
        self._place_camera()
        mujoco.mj_forward(self.model, self.data)

    # -- structure -------------------------------------------------------------------------------
    def _index_model(self) -> None:
        m = self.model
        name = lambda kind, i: mujoco.mj_id2name(m, kind, i) or ""  # noqa: E731
        self.eye_mocap = m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "eye_body")]
        self.door_qpos = m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "door_hinge")]
        self.door_dof = m.jnt_dofadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "door_hinge")]
        self.object_names = [o.name for o in self.spec.objects] + [
            f"spare:{s}:{i}" for i, (s, _) in enumerate(SPARES)
        ]
        self.object_bodies = np.array(
            [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, n) for n in self.object_names]
        )
        self.object_shapes = [o.shape for o in self.spec.objects] + [s for s, _ in SPARES]
        self.object_colors = [o.color for o in self.spec.objects] + ["" for _ in SPARES]
        self.object_radius = np.array([o.footprint for o in self.spec.objects] + [sz[0] for _, sz in SPARES])
        self.object_active = np.array([True] * len(self.spec.objects) + [False] * len(SPARES))
        self.geom_class = np.zeros(m.ngeom, np.uint8)
        self.geom_instance = np.zeros(m.ngeom, np.int16)
        body_to_object = {int(b): i for i, b in enumerate(self.object_bodies)}
        for g in range(m.ngeom):
            gname, body = name(mujoco.mjtObj.mjOBJ_GEOM, g), int(m.geom_bodyid[g])
            if body in body_to_object:
                k = body_to_object[body]
                self.geom_class[g] = CLASS_ID[self.object_shapes[k]]
                self.geom_instance[g] = k + 1
            elif gname.startswith("door"):
                self.geom_class[g] = CLASS_ID["door"]
            elif gname in ("floor", "ceiling"):
                self.geom_class[g] = CLASS_ID[gname]
            else:
                self.geom_class[g] = CLASS_ID["wall"]
        self.sub_steps = max(1, round(FRAME_DT / TIMESTEP))
        self.settled = False
        rays = pixel_rays(self.render_cfg.intrinsics)
        self._rays = rays / np.linalg.norm(rays, axis=-1, keepdims=True)

    # -- camera ----------------------------------------------------------------------------------
    @property
    def pose(self) -> np.ndarray:
        return self.view.pose()

    def _place_camera(self) -> None:
        rot = self.view.pose()[:3, :3] @ _CV_TO_MJ
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, rot.reshape(-1))
        self.data.mocap_pos[self.eye_mocap] = (self.view.x, self.view.y, self.view.z)
        self.data.mocap_quat[self.eye_mocap] = quat

    def is_free(self, x: float, y: float) -> bool:
        """Can the camera stand at (x, y)? It stays inside the walls (the door swings outwards) and
        out of every active object's footprint."""
        x0, y0, x1, y1 = self.spec.bounds
        r = CAMERA_RADIUS
        if not (x0 + r <= x <= x1 - r and y0 + r <= y <= y1 - r):
            return False
        pos = self.data.xpos[self.object_bodies[self.object_active], :2]
        rad = self.object_radius[self.object_active]
        return not np.any(np.hypot(pos[:, 0] - x, pos[:, 1] - y) < rad + r)

    def move_to(self, target: Viewpoint) -> Viewpoint:
        """Move toward ``target``; blocked motion slides along the obstacle or stays. Returns the
        viewpoint reached (rotation is always applied)."""
        v = self.view
        z = float(np.clip(target.z, MIN_EYE_Z, MAX_EYE_Z))
        for x, y in ((target.x, target.y), (target.x, v.y), (v.x, target.y), (v.x, v.y)):
            if self.is_free(x, y) or (x, y) == (v.x, v.y):
                self.view = Viewpoint(x, y, z, target.yaw, target.pitch)
                break
        self._place_camera()
        return self.view

    def step_keys(self, keys: str) -> Observation:
        """Hold ``keys`` for one frame: move (with collisions), advance physics, render."""
        target = apply_deltas(self.view, *key_deltas(keys, self.keymap), keymap=self.keymap)
        return self.step_to(target)

    def step_to(self, target: Viewpoint) -> Observation:
        self.move_to(target)
        self.step_physics()
        return self.observe()

    # -- physics and events ----------------------------------------------------------------------
    def step_physics(self) -> None:
        """Advance the world by one frame. A world at rest with nothing driving it stays exactly as it is,
        so its physics is skipped (a third of the cost of a frame otherwise)."""
        m, d = self.model, self.data
        self.time_frames += 1
        door_idle = abs(float(d.qpos[self.door_qpos]) - self.door_target) < 1e-3
        if self.settled and not self._pushes and door_idle:
            return
        for _ in range(self.sub_steps):
            d.qfrc_applied[self.door_dof] = (
                60.0 * (self.door_target - d.qpos[self.door_qpos]) - 8.0 * d.qvel[self.door_dof]
            )
            d.xfrc_applied[:] = 0.0
            for body, (force, left) in list(self._pushes.items()):
                d.xfrc_applied[body, :3] = force
                self._pushes[body] = (force, left - 1)
                if left <= 1:
                    del self._pushes[body]
            mujoco.mj_step(m, d)
        self.settled = float(np.abs(d.qvel).max(initial=0.0)) < SETTLED_SPEED

    def wake(self) -> None:
        """Something changed the world (an event): physics runs again until it is at rest."""
        self.settled = False

    def check_events(self, records) -> None:
        """Raise ``ValueError`` if an event names an object this world lacks; changes nothing."""
        resolve_targets(self, records)

    def apply_events(self, records) -> None:
        """Apply ``records`` in order, all or nothing: their targets are resolved first, against the world
        before any of them acts, so a missing target raises ``ValueError`` with the world unchanged."""
        for record, target in zip(records, resolve_targets(self, records), strict=True):
            apply_event(self, record, target)
            self.wake()
            self.events_applied.append({"frame": self.time_frames, **record.to_dict()})

    # -- rendering -------------------------------------------------------------------------------
    def observe(self) -> Observation:
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        rgb, depth, geom = self.renderer.render(self.model, self.data, self.render_cfg.segmentation)
        self._paint_sky(rgb, depth)
        if geom is None:
            semantic = np.zeros(depth.shape, np.uint8)
            instance = np.zeros(depth.shape, np.int16)
        else:
            hit = geom >= 0
            semantic = np.where(hit, self.geom_class[np.maximum(geom, 0)], CLASS_ID["sky"]).astype(np.uint8)
            instance = np.where(hit, self.geom_instance[np.maximum(geom, 0)], 0).astype(np.int16)
        return Observation(rgb, depth, semantic, instance, self.pose)

    def _paint_sky(self, rgb: np.ndarray, depth: np.ndarray) -> None:
        """Fill pixels that hit nothing with the scene's sky gradient (horizon to zenith), dimmed at night."""
        sky = ~np.isfinite(depth)
        if not sky.any():
            return
        up = (self._rays[sky] @ self.pose[:3, :3].T)[:, 2:3].clip(0.0, 1.0)
        zenith, horizon = (np.asarray(c) for c in self.spec.palette.sky)
        colour = (1.0 - up) * horizon + up * zenith
        rgb[sky] = (255.0 * colour * (1.0 if self.lights_on else NIGHT_SKY)).astype(np.uint8)

    # -- state -----------------------------------------------------------------------------------
    def fork(self) -> GroundTruthWorld:
        """An independent copy sharing only the renderer (same scene structure)."""
        other = copy.copy(self)
        other.model = copy.copy(self.model)
        other.data = copy.copy(self.data)
        other._pushes = dict(self._pushes)
        other._spare_order = dict(self._spare_order)
        other.events_applied = list(self.events_applied)
        other.object_colors = list(self.object_colors)
        other.object_active = self.object_active.copy()
        return other

    def objects(self) -> list[dict]:
        """Active objects: id (instance id), name, shape, colour, position (x, y, z)."""
        return [
            {
                "id": i + 1,
                "name": self.object_names[i],
                "shape": self.object_shapes[i],
                "color": self.object_colors[i],
                "position": self.data.xpos[b].round(4).tolist(),
            }
            for i, b in enumerate(self.object_bodies)
            if self.object_active[i]
        ]

    def door_angle_deg(self) -> float:
        return math.degrees(abs(float(self.data.qpos[self.door_qpos])))

    def close(self) -> None:
        self.renderer.close()
