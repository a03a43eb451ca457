"""``OracleWorldModel``: the ``WorldModel`` interface on the MuJoCo ground truth.

Each session is a ``GroundTruthWorld``. Compiled scenes and their renderers are cached per scene seed
(least recently used first out, never while a session uses them), and every renderer shares one GL
context, so opening, resetting and forking sessions of a known scene costs a model copy, not a compile.
Targets are followed frame by frame with the engine's collisions: the poses reported are those reached.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from world_model.backend import (
    BackendInfo,
    Frames,
    SceneInfo,
    SessionTable,
    WorldModel,
    generate_arguments,
    start_pose_argument,
)
from world_model.engine import mujoco
from world_model.engine.renderer import SceneRenderer
from world_model.engine.scenes import ProceduralScene, make_scene
from world_model.engine.world import GroundTruthWorld, RenderConfig, compile_scene
from world_model.events import EventRecord
from world_model.geometry import KeyMap, Viewpoint

DEFAULT_SEED = 0


@dataclass
class OracleConfig:
    height: int = 64
    width: int = 64
    vfov_deg: float = 70.0
    segmentation: bool = True  # False: semantic frames are all "sky" (0), rendering is ~30% faster
    cached_scenes: int = 16  # compiled scenes (and renderers) kept beyond those in use


@dataclass
class _Scene:
    spec: ProceduralScene
    model: mujoco.MjModel
    renderer: SceneRenderer
    users: int = 0


class OracleWorldModel(WorldModel):
    """Ground-truth backend: sessions are MuJoCo worlds; see the module docstring."""

    def __init__(self, config: OracleConfig | None = None) -> None:
        self.config = c = config or OracleConfig()
        if c.height < 8 or c.width < 8:
            raise ValueError(f"oracle images must be at least 8x8, got {c.height}x{c.width}")
        self.render = RenderConfig(c.height, c.width, c.vfov_deg, c.segmentation)
        self._gl = mujoco.GLContext(max(c.width, 64), max(c.height, 64))
        self._scenes: OrderedDict[int, _Scene] = OrderedDict()
        self._sessions: SessionTable[GroundTruthWorld] = SessionTable()

    def info(self) -> BackendInfo:
        c = self.config
        outputs = ("rgb", "depth", "semantic") if c.segmentation else ("rgb", "depth")
        return BackendInfo(
            "oracle",
            c.height,
            c.width,
            c.vfov_deg,
            outputs=outputs,
            # check_events refuses what a scene lacks: a laned client asks every lane (CHECK) before any steps
            extra={"engine": f"mujoco {mujoco.__version__}", "refuses_events": True},
        )

    # -- scenes ---------------------------------------------------------------------------------------------
    def _scene(self, seed: int) -> _Scene:
        scene = self._scenes.get(seed)
        if scene is None:
            spec = make_scene(seed)
            model = compile_scene(spec, self.render)
            scene = _Scene(
                spec, model, SceneRenderer(model, self.config.height, self.config.width, gl=self._gl)
            )
            self._scenes[seed] = scene
            self._evict()
        self._scenes.move_to_end(seed)
        return scene

    def _evict(self) -> None:
        idle = [s for s, sc in self._scenes.items() if sc.users == 0]
        for seed in idle[: max(0, len(idle) - self.config.cached_scenes)]:
            self._scenes.pop(seed).renderer.close()

    def _add(self, world: GroundTruthWorld) -> int:
        self._scenes[world.spec.seed].users += 1
        return self._sessions.add(world)

    # -- sessions -------------------------------------------------------------------------------------------
    def open(
        self,
        scene_seed: int | None = None,
        *,
        first_frame: np.ndarray | None = None,
        start_pose: np.ndarray | None = None,
    ) -> tuple[int, Frames, SceneInfo]:
        if first_frame is not None:
            raise ValueError(
                "the oracle renders its own scenes and cannot start from an image; pass a "
                "scene_seed, or use backend='learned' to start from a first frame"
            )
        pose = start_pose_argument(start_pose)
        seed = DEFAULT_SEED if scene_seed is None else int(scene_seed)
        scene = self._scene(seed)
        spec = scene.spec
        world = GroundTruthWorld(
            seed, self.render, KeyMap(), spec=spec, renderer=scene.renderer, model=scene.model
        )
        if pose is not None:
            world.view = Viewpoint.from_pose(pose)
            world.move_to(world.view)
        obs = world.observe()
        sid = self._add(world)  # once its first frame is made: a failure opens nothing
        frames = Frames(obs.rgb[None], obs.depth[None], obs.semantic[None], obs.pose[None])
        info = SceneInfo(
            seed,
            spec.family,
            spec.start.pose(),
            np.stack([g.pose() for g in spec.goals]),
            world.objects(),
            spec.bounds,
            spec.doorway,
        )
        return sid, frames, info

    def world(self, session: int) -> GroundTruthWorld:
        """The ground-truth world behind ``session`` (for evaluation and debugging)."""
        return self._sessions[session]

    def check_events(self, session: int, events: list[EventRecord]) -> None:
        self._sessions[session].check_events(events)

    def fork(self, session: int) -> int:
        return self._add(self._sessions[session].fork())

    def close(self, session: int) -> None:
        world = self._sessions.pop(session)
        self._scenes[world.spec.seed].users -= 1
        self._evict()

    def pose(self, session: int) -> np.ndarray:
        return self._sessions[session].pose

    def shutdown(self) -> None:
        self._sessions.clear()
        for scene in self._scenes.values():
            scene.renderer.close()
        self._scenes.clear()
        if self._gl is not None:
            self._gl.free()
            self._gl = None

    # -- generation -----------------------------------------------------------------------------------------
    def generate(
        self, sessions: list[int], relative_poses: np.ndarray, events: list[list[EventRecord]]
    ) -> list[Frames]:
        relative_poses = generate_arguments(sessions, relative_poses, events)
        worlds = [self._sessions[sid] for sid in sessions]
        for world, evs in zip(worlds, events, strict=True):
            world.check_events(evs)  # all or nothing: no world moves if one cannot carry out its events
        out = []
        for world, rel, evs in zip(worlds, relative_poses, events, strict=True):
            world.apply_events(evs)
            start = world.pose
            obs = [world.step_to(Viewpoint.from_pose(start @ target)) for target in rel]
            out.append(
                Frames(
                    np.stack([o.rgb for o in obs]),
                    np.stack([o.depth for o in obs]),
                    np.stack([o.semantic for o in obs]),
                    np.stack([o.pose for o in obs]),
                )
            )
        return out
