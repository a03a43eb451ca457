"""``LearnedWorldModel``: the trained simulator behind ``backend="learned"``.

A session starts from a first frame (a banked start view of a scene seed, or a user image): the network
encodes it (predicting its depth and semantics) into the session's memory. Each ``generate`` call applies
the chunk's events to the session's ``WorldState`` and then, frame by frame for all sessions at once,
retrieves memories by view overlap, splats them into the target camera, adds the event hints and runs
``WorldNet`` (``sampler_steps`` passes: the first from the warp, the others refining). Every generated frame
goes back into memory, so revisits are rendered from what was actually seen. Same calls, same frames.

The camera cannot leave the scene's walkable bounds, and does not walk into the objects its last frames'
predicted depth and semantics show (``world_model.model.collision``; the engine's camera collides with the
scene's geometry, the learned one with what it sees).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

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
from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.host_memory import keep_freed_memory
from world_model.model.acceleration import MAX_GRAPHED_BATCH, CompiledForward, GraphedForward
from world_model.model.checkpoint import file_hash, load_weights
from world_model.model.collision import obstacle_points, obstacle_points_many, remember, slide_many
from world_model.model.compositing import (
    BEYOND_ROOM_RGB,
    composite_props,
    door_colour,
    draw_open_door,
    fill_unseen,
    ground_depth,
    keep_warped_depth,
    layout_labels,
    open_doorway,
    surface_palette,
    wall_depth,
    wall_top,
)
from world_model.model.conditioning import (
    Warp,
    assemble,
    current_estimate,
    entries_from_outputs,
    first_frame_warp,
    memory_planes,
    state_batch,
    warp_memories,
)
from world_model.model.data import from_unit, to_unit
from world_model.model.device import (
    freeze_live_objects,
    resolve_device,
    resolve_precision,
)
from world_model.model.memory import MemoryBank, add_many, retrieve_many
from world_model.model.native import available as native_available
from world_model.model.network import FiLMBlock, WorldNet, depth_from_inverse
from world_model.model.object_finder import DEFAULT_FINDER, ObjectFinder, load_finder
from world_model.model.reproject import (
    doorway_pixels,
    floor_depth,
    ground_reach,
    open_door_depth,
    room_depth,
    zbuffer_torch,
)
from world_model.model.start_bank import DEFAULT_BANK, StartBank
from world_model.model.world_state import HINT_CHANNELS, WorldState
from world_model.options import PRECISIONS
from world_model.semantics import CLASS_ID, SEMANTIC_CLASSES

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "learned_v1.safetensors"
# learned_v2: learned_v1 fine-tuned on its own rollouts, with the floor channel (opt-in, weights/README.md);
# learned_fast: the cheap variant (2x2 pixel patches)
SHIPPED_WEIGHTS = ("learned_v1", "learned_v2", "learned_fast")
CAMERA_RADIUS_M = 0.25
EYE_HEIGHT_M = 1.0
# retrieval runs on the host for every batch where the C kernels are built (faster there than on a GPU at
# every batch measured, docs/speed.md); without them, on the device above this many sessions (fewer: its ~30
# launches cost more)
RETRIEVE_ON_HOST_UP_TO = 8
CPU_NETWORK_BATCH = 32  # CPU: larger batches go through the network in parts this size (their activations
# stay in cache; docs/speed.md)


@dataclass
class LearnedConfig:
    height: int = 64
    width: int = 64
    vfov_deg: float = 70.0
    # a safetensors path, or the name of shipped weights (SHIPPED_WEIGHTS)
    weights: str = str(DEFAULT_WEIGHTS)
    start_bank: str = str(DEFAULT_BANK)
    memory_k: int = 4  # memories warped into each new frame
    memory_capacity: int = 48  # keyframes per session
    sampler_steps: int = 1  # network passes per frame (1 = predict, 2+ = refine)
    render_missing: bool = True  # open seeds/poses outside the bank by rendering them once with MuJoCo
    prefer_older: bool | str = True  # which memory draws a surface several saw (see warp_memories): True /
    # "oldest", "nearest_view" (the memory whose camera was nearest the target's), False (nearest depth)
    same_surface: float = 8.0  # depths within this fraction of the nearest count as one surface: a
    # surface several memories saw is drawn from the oldest of them unless another is 9x nearer (objects'
    # predicted depths still disagree between views; a tight tolerance lets the newest, drifted frame win)
    near_k: int = 2  # keyframes retrieved first for being seen from near the target (memory.retrieve_many)
    near_gate: float = 0.5  # ... within this camera distance (metres + degrees / 30)
    footprint: int = 1  # splat each memory point into its nearest pixel; 2: into 2x2 pixels (closes cracks
    # that poor depth opened; with the walls and floor depth it blurs, see docs/world_model.md)
    keep_depth: bool = False  # a frame's depth where memory covers it is the warped memory depth, not the
    # network's re-prediction of it (which drifts a little every generation); the network's elsewhere
    ground: bool = True  # predicted depth agrees with the floor plane (z = 0; see compositing.ground_depth)
    ground_rescale: bool = False  # ... generated frames' depth scaled to the floor's too (not only the first)
    walls: bool = True  # predicted depth agrees with the room's walls (see compositing.wall_depth)
    layout_fill: bool = True  # what no memory covers takes the first frame's colour of its surface
    # (walls, floor, sky, ceiling; see compositing.fill_unseen)
    open_door: bool = True  # an open door shows the floor and the outside through its doorway (the
    # room's plan, SceneInfo.doorway; see compositing.open_doorway), where memory still has the closed door
    draw_props: bool = True  # composite event props (balls, boxes, paint) into frames (see compositing)
    find_objects: bool = True  # targeted events (push, paint) find their object in the frame with the
    # ObjectFinder (object_finder.py); False: in the network's own semantic labels, which miss most objects
    collide: bool = True  # keep the camera in bounds and out of predicted surfaces (eval follows given poses)
    device: str = "auto"  # auto (CUDA when there is a GPU) | cpu | cuda; the z-buffer runs in Triton on CUDA,
    # as a C kernel on the CPU (splat_native; built on first use)
    precision: str = "auto"  # auto | fp32 | bf16; auto: bf16 on a GPU with it, and on a CPU with native bf16
    # where it measured faster than fp32 (device.resolve_precision; emulated, it is several times slower, and
    # native it is not faster on every CPU: docs/speed.md), else fp32. The shipped reports ran in fp32
    threads: int | None = None
    cuda_graphs: bool = True  # GPU: replay the network from CUDA graphs at batch sizes up to 64
    compile: bool = True  # GPU: torch.compile the network above 64 sessions (6-9 s once per batch size)
    triton_norm: bool = True  # GPU: each network block's normalisation, modulation, residual and activation
    # as one Triton kernel where torch.compile does not run (network.film_norm_triton); False: torch's ops
    cpu_compile: bool = False  # CPU: torch.compile the network at every batch size, and the z-buffer where
    # the C kernel cannot be built (needs a C++ compiler; about a minute once per batch size, so opt-in)


def _check(cfg: LearnedConfig) -> None:
    """Refuse settings that would only fail (or do nothing sensible) at the first ``generate``, saying
    which: before any session is opened, so nothing is lost."""
    least = {"sampler_steps": 1, "memory_k": 1, "memory_capacity": 0, "near_k": 0, "same_surface": 0.0}
    for name, low in least.items():
        if getattr(cfg, name) < low:
            raise ValueError(f"{name} must be >= {low}, got {getattr(cfg, name)}")
    if cfg.prefer_older not in (True, False, "oldest", "nearest_view"):
        raise ValueError(
            f"prefer_older must be True, False, 'oldest' or 'nearest_view', got {cfg.prefer_older!r}"
        )
    if cfg.layout_fill and not cfg.walls:
        raise ValueError("layout_fill needs walls=True (the layout is where the walls put each ray)")
    if cfg.footprint not in (1, 2):
        raise ValueError(f"footprint must be 1 or 2, got {cfg.footprint}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ValueError(f"threads must be >= 1 (or None: torch's default), got {cfg.threads}")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {cfg.precision!r}")


def add_weights_argument(parser: argparse.ArgumentParser, whose: str = "") -> None:
    """The ``--weights`` option of every CLI that loads the learned model (``whose``: a help prefix)."""
    names = " | ".join(SHIPPED_WEIGHTS)
    parser.add_argument(
        "--weights",
        default=str(DEFAULT_WEIGHTS),
        help=f"{whose}safetensors weights, or a shipped name: {names} (default: learned_v1)",
    )


def weights_path(weights: str) -> Path:
    """The file of ``weights``: a path, or the name of shipped weights ("learned_fast")."""
    if weights in SHIPPED_WEIGHTS and not Path(weights).exists():
        return WEIGHTS_DIR / f"{weights}.safetensors"
    if not Path(weights).is_file():
        raise FileNotFoundError(
            f"no weights at {weights}: give a safetensors file or a shipped name "
            f"({', '.join(SHIPPED_WEIGHTS)}); train your own with `dreamx-train`"
        )
    return Path(weights)


def frame_outputs(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All that generation uses of a network pass's outputs ``out``: the ``planes [B, 5, H, W]`` a memory
    keeps (fp32 colour in [-1, 1], metric depth, door pixels), the semantic class per pixel (``labels``) and
    the frame as ``colour`` bytes ``[B, H, W, 3]``."""
    rgb, labels = out["rgb"].detach().float(), out["semantic"].detach().argmax(1).to(torch.uint8)
    depth = depth_from_inverse(out["inv_depth"].detach().float())
    planes = memory_planes(rgb, depth, labels)
    return {"planes": planes, "labels": labels, "colour": from_unit(rgb)}


class NextFrame(NamedTuple):
    """The network's conditioning for a batch of sessions' next frames (``LearnedWorldModel.next_inputs``):
    the cameras ``targets [B, 4, 4]``, the memories' ``warp``, event ``hints`` (``None``: no props), the
    world ``state [B, STATE_DIM]``, how much of each session's keyframes the cameras see (``seen``) and, for
    a network with the floor channel, the floor plane's depth along each pixel's ray (``floor [B, H, W]``)."""

    targets: np.ndarray
    warp: Warp
    hints: torch.Tensor | None
    state: torch.Tensor
    seen: list[np.ndarray]
    floor: torch.Tensor | None = None
    room: torch.Tensor | None = None  # with the ``walls`` rule: where each pixel's ray leaves the room

    def inputs(self) -> torch.Tensor:
        """The network's input (``assemble``) for the first sampling step."""
        return assemble(self.warp, self.hints, floor=self.floor)


@dataclass
class _Session:
    memory: MemoryBank
    state: WorldState
    pose: np.ndarray
    time: int
    info: SceneInfo
    depth: np.ndarray  # latest predicted depth and semantics (to resolve events like "paint the nearest")
    semantic: np.ndarray
    obstacles: tuple[np.ndarray, ...] = ()  # floor-plan points of objects recently seen (``collision``)
    palette: torch.Tensor | None = None  # the first frame's layout colours (``layout_fill``)
    top: float = float("inf")  # how high the walls go, as the first frame shows (``layout_fill``)


class LearnedWorldModel(WorldModel):
    def __init__(
        self, config: LearnedConfig | None = None, network: tuple[WorldNet, dict] | None = None
    ) -> None:
        """``network``: a ``WorldNet`` and its weights' header to run instead of loading ``config.weights``
        (training on the model's own rollouts shares the network it trains)."""
        self.config = cfg = config or LearnedConfig()
        _check(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        # the precision that runs, in the config that info() and the reports read
        self.config = cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, self.device))
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults on every step's fresh tensors
        weights = None if network is not None else weights_path(cfg.weights)
        self.net, self.header = network if network is not None else load_weights(weights)
        # channels_last: oneDNN's fast layout for convolutions on the CPU (docs/speed.md), and GPUs' too
        self.net = self.net.to(self.device, memory_format=torch.channels_last)
        if not cfg.triton_norm:
            for block in self.net.modules():
                if isinstance(block, FiLMBlock):
                    block.fused = False
        size = (int(self.header.get("height", 64)), int(self.header.get("width", 64)))
        if (cfg.height, cfg.width) != size:
            raise ValueError(
                f"the learned weights {cfg.weights} were trained at {size[0]}x{size[1]}; "
                f"asked for {cfg.height}x{cfg.width}: use resolution={size} or backend='oracle'"
            )
        self._small = self._large = self._forward  # on a GPU: graphs when small, compiled kernels when large
        if self.device.type == "cuda" and cfg.cuda_graphs:
            self._small = GraphedForward(self._forward)
        if self.device.type == "cuda" and cfg.compile:
            self._large = CompiledForward(self._forward)
        self._zero_hints: torch.Tensor | None = None
        self._zbuffer = None  # splat's choice: Triton on CUDA, the C kernel on the CPU, else zbuffer_torch
        if self.device.type == "cpu" and cfg.cpu_compile:
            self._small = self._large = CompiledForward(self._forward, cpp_wrapper=True)
            if not native_available():  # the C kernel is faster than the compiled z-buffer
                self._zbuffer = CompiledForward(zbuffer_torch, dynamic=True)  # any number of memories
        self.intr = Intrinsics.from_fov(cfg.height, cfg.width, cfg.vfov_deg)
        self.checkpoint = "in training" if weights is None else file_hash(weights)
        self.bank = StartBank.load(cfg.start_bank) if Path(cfg.start_bank).is_file() else None
        self._oracle = None
        self._finder: ObjectFinder | None = None  # loaded at the first targeted event
        self._sessions: SessionTable[_Session] = SessionTable(first_id=0)
        # (batch size, first sampling step) the network has run; a new one makes long-lived objects (_run)
        self._shapes_run: set[tuple[int, bool]] = set()
        self._new_shape = False

    def info(self) -> BackendInfo:
        c = self.config
        seeds = [] if self.bank is None else [int(self.bank.seeds.min()), int(self.bank.seeds.max()) + 1]
        return BackendInfo(
            "learned",
            c.height,
            c.width,
            c.vfov_deg,
            self.checkpoint,
            extra={
                "banked_seeds": seeds,
                "sampler_steps": c.sampler_steps,
                "memory_k": c.memory_k,
                "trained_steps": self.header.get("step", ""),
                "device": str(self.device),
                "precision": c.precision,
                "triton_norm": c.triton_norm,
            },
        )

    # -- sessions ---------------------------------------------------------------------------------------
    def _render(self, seed: int, pose: np.ndarray | None) -> tuple[np.ndarray, SceneInfo]:
        if not self.config.render_missing:
            raise ValueError(
                f"scene seed {seed} (at this pose) is not in the start bank {self.config.start_bank} "
                "and render_missing is off; pass first_frame= or a banked seed"
            )
        if self._oracle is None:
            from world_model.engine.oracle import OracleConfig, OracleWorldModel

            c = self.config
            self._oracle = OracleWorldModel(OracleConfig(height=c.height, width=c.width, vfov_deg=c.vfov_deg))
        sid, frames, info = self._oracle.open(seed, start_pose=pose)
        self._oracle.close(sid)
        info.start_pose = frames.poses[0] if pose is None else info.start_pose
        return frames.rgb[0], info

    def open(
        self,
        scene_seed: int | None = None,
        *,
        first_frame: np.ndarray | None = None,
        start_pose: np.ndarray | None = None,
    ) -> tuple[int, Frames, SceneInfo]:
        h, w = self.config.height, self.config.width
        pose, image = start_pose_argument(start_pose), first_frame_argument(first_frame, h, w)
        if image is not None:
            if pose is None:
                pose = pose_from_yaw_pitch(np.array([0.0, 0.0, EYE_HEIGHT_M]), 0.0, 0.0)
            info = SceneInfo(
                scene_seed, "image", pose, np.zeros((0, 4, 4)), [], (-np.inf, -np.inf, np.inf, np.inf)
            )
        else:
            image, info, pose = self._scene_view(0 if scene_seed is None else int(scene_seed), pose)
        given = to_unit(image)[None].to(self.device)
        state = WorldState()
        out, room = self._first_frame(given, pose, info, state)
        entry = entries_from_outputs(out, pose[None], [0], [state], self.intr)[0]
        memory = MemoryBank(self.config.memory_capacity)
        memory.add(entry, self.intr)
        depth = entry.depth.cpu().numpy()
        semantic = out["labels"][0].cpu().numpy()
        obstacles = (
            remember((), obstacle_points(depth, semantic, pose, self.intr)) if self.config.collide else ()
        )
        room_known = all(np.isfinite(info.bounds))  # an image's session has no room to lay out
        laid_out = (self.config.layout_fill or self.config.open_door) and room_known  # rules that use colours
        palette = surface_palette(given[0], out["labels"][0]).cpu() if laid_out else None  # on the host
        if palette is not None and len(info.doorway) == 5:  # the closed door's colour, where it shows
            doorway = torch.tensor([info.doorway], dtype=torch.float64)
            through = doorway_pixels(torch.from_numpy(pose[None]), self.intr, room, doorway)
            palette[CLASS_ID["door"]] = door_colour(given[0].cpu(), entry.depth.cpu(), through[0], room[0])
        top = wall_top(depth, semantic, pose, self.intr)
        sid = self._sessions.add(
            _Session(memory, state, pose, 0, info, depth, semantic, obstacles, palette, top)
        )
        return sid, Frames(image[None].copy(), depth[None], semantic[None], pose[None].copy()), info

    def relocate(self, session: int, scene_seed: int, pose: np.ndarray) -> tuple[int, Frames, SceneInfo]:
        """Move ``session``'s camera to ``pose`` in its scene, keeping all it has: memory, world state and
        the objects it has seen (its obstacles), so a planner that puts the camera where a real one stands
        keeps what the model saw on the way there. While no event has changed the world, the frame there is
        the scene's own view (the start bank's, or the engine's, as ``open`` gives it), remembered as a
        first frame is; once events have changed it, that view would not show them, and the frame is
        generated there from memory, as a step's would be (without collisions)."""
        s = self._sessions[session]
        pose = start_pose_argument(pose)
        if s.info.seed is None or int(scene_seed) != int(s.info.seed):
            raise ValueError(
                f"session {session} is in scene {s.info.seed}; it cannot relocate to scene {scene_seed}"
            )
        if s.state != WorldState():
            step = self._prepare([s], pose[None])
            rgb, depth, semantic = self._commit([s], step, self._predict(step))
            return session, Frames(rgb, depth, semantic, pose[None].copy()), s.info
        image, _, _ = self._scene_view(int(scene_seed), pose)
        given = to_unit(image)[None].to(self.device)
        out, _ = self._first_frame(given, pose, s.info, s.state)
        entry = entries_from_outputs(out, pose[None], [s.time + 1], [s.state], self.intr)[0]
        s.memory.add(entry, self.intr)
        s.time, s.pose = s.time + 1, pose
        s.depth, s.semantic = entry.depth.cpu().numpy(), out["labels"][0].cpu().numpy()
        if self.config.collide:
            s.obstacles = remember(s.obstacles, obstacle_points(s.depth, s.semantic, pose, self.intr))
        return session, Frames(image[None].copy(), s.depth[None], s.semantic[None], pose[None].copy()), s.info

    def _scene_view(self, seed: int, pose: np.ndarray | None) -> tuple[np.ndarray, SceneInfo, np.ndarray]:
        """The view ``[H, W, 3]`` of scene ``seed`` from ``pose`` (``None``: its start), from the start bank
        where it has it, else rendered once by the engine; with the scene's info and the pose."""
        row = None if self.bank is None else self.bank.find(seed)
        image = None if row is None else self.bank.view(row, pose)
        if image is not None:
            info = self.bank.info(row)
        else:
            image, info = self._render(seed, pose)
        return image, info, info.start_pose if pose is None else pose

    def _first_frame(
        self, given: torch.Tensor, pose: np.ndarray, info: SceneInfo, state: WorldState
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The network's depth and labels for a given frame ``given [1, 3, H, W]`` seen from ``pose``, with
        the depth rules; the frame remembered as given. Returns the outputs and the room's depth."""
        with torch.no_grad():
            out = self._net(
                first_frame_warp(given), None, state_batch([state]), depth_known=False,
                floor=self._floor(pose[None]),
            )  # fmt: skip
            if self.config.ground:
                ground_depth(out, torch.from_numpy(pose[None]), self.intr)
            bounds = torch.tensor([info.bounds], dtype=torch.float64)
            room = room_depth(torch.from_numpy(pose[None]), self.intr, bounds)
            if self.config.walls:
                wall_depth(out, room)
        out["planes"] = memory_planes(given, out["depth"], out["labels"])  # remembered as given
        return out, room

    def fork(self, session: int) -> int:
        s = self._sessions[session]
        return self._sessions.add(dataclasses.replace(s, memory=s.memory.copy(), pose=s.pose.copy()))

    def close(self, session: int) -> None:
        self._sessions.pop(session)

    def pose(self, session: int) -> np.ndarray:
        return self._sessions[session].pose.copy()

    def shutdown(self) -> None:
        self._sessions.clear()
        if self._oracle is not None:
            self._oracle.shutdown()
            self._oracle = None

    # -- generation -------------------------------------------------------------------------------------
    def _reach(self, ss: list[_Session], targets: np.ndarray) -> np.ndarray:
        """The poses ``[B, 4, 4]`` the cameras actually reach: inside the bounds, not into the objects their
        last frames showed (``collision``). At the bounds a blocked move slides as the engine's does
        (``GroundTruthWorld.move_to``): the full move, else its x alone, else its y alone, else none."""
        reached = targets.copy()
        if not self.config.collide:
            return reached
        starts = np.stack([s.pose[:2, 3] for s in ss])
        x0, y0, x1, y1 = np.array([s.info.bounds for s in ss], np.float64).T
        lo = np.stack([x0, y0], 1) + CAMERA_RADIUS_M
        hi = np.stack([x1, y1], 1) - CAMERA_RADIUS_M

        def inside(xy: np.ndarray) -> np.ndarray:  # (a room without bounds: anywhere)
            return ((lo <= xy) | ~np.isfinite(lo)).all(1) & ((xy <= hi) | ~np.isfinite(hi)).all(1)

        goal = targets[:, :2, 3].copy()
        for candidate in (
            np.stack([goal[:, 0], starts[:, 1]], 1),
            np.stack([starts[:, 0], goal[:, 1]], 1),
            starts,
        ):
            blocked = ~inside(goal)
            goal[blocked] = candidate[blocked]
        reached[:, :2, 3] = slide_many(starts, goal, [s.obstacles for s in ss])
        return reached

    def generate(
        self, sessions: list[int], relative_poses: np.ndarray, events: list[list[EventRecord]]
    ) -> list[Frames]:
        rel = generate_arguments(sessions, relative_poses, events)
        ss = [self._sessions[sid] for sid in sessions]
        self._apply_events(ss, events)
        starts = np.stack([s.pose for s in ss])
        k_frames = rel.shape[1]
        h, w = self.config.height, self.config.width
        rgb = np.empty((len(ss), k_frames, h, w, 3), np.uint8)
        depth = np.empty((len(ss), k_frames, h, w), np.float32)
        semantic = np.empty((len(ss), k_frames, h, w), np.uint8)
        poses = np.empty((len(ss), k_frames, 4, 4))
        for k in range(k_frames):
            step = self._prepare(ss, self._reach(ss, starts @ rel[:, k]))
            rgb[:, k], depth[:, k], semantic[:, k] = self._commit(ss, step, self._predict(step))
            poses[:, k] = step.targets
        if self._new_shape:
            self._new_shape = False
            freeze_live_objects()
        return [Frames(rgb[b], depth[b], semantic[b], poses[b]) for b in range(len(ss))]

    # -- one frame: conditioning, network, memory ------------------------------------------------------
    # ``generate`` runs these for every frame; training on the model's own rollouts (``rollouts``) runs
    # ``next_inputs`` and ``commit_frame`` around its own network pass, so both condition the network and
    # remember its frames by one code path.
    def next_inputs(
        self, sessions: list[int], poses: np.ndarray, events: list[list[EventRecord]] | None = None
    ) -> NextFrame:
        """What the network is given for these sessions' next frames at absolute ``poses [B, 4, 4]`` (as
        given: no collision), after applying ``events`` (per session)."""
        ss = [self._sessions[sid] for sid in sessions]
        if events is not None:
            self._apply_events(ss, events)
        return self._prepare(ss, np.asarray(poses, np.float64))

    def commit_frame(self, sessions: list[int], step: NextFrame, out: dict[str, torch.Tensor]) -> None:
        """Remember ``out`` (``frame_outputs`` of a network pass on ``step``) as these sessions' next
        frames, props composited in, as ``generate`` does."""
        self._commit([self._sessions[sid] for sid in sessions], step, out)

    def _apply_events(self, ss: list[_Session], events: list[list[EventRecord]]) -> None:
        for s, evs in zip(ss, events, strict=True):
            for ev in evs:
                rgb, semantic = None, s.semantic
                if ev.predicate in TARGETED:  # found in the frame the camera shows; a push redraws its colour
                    rgb = (s.memory.latest.rgb.float().cpu().numpy().transpose(1, 2, 0) + 1) * 0.5
                    if self.config.find_objects:
                        semantic = self._objects(rgb)
                try:
                    state = s.state.apply(ev, s.pose, s.depth, semantic, self.intr, s.info.bounds, rgb)
                except ValueError:  # nothing in view to paint: skipped, as the engine skips what it cannot do
                    continue
                for gone in state.vacated[len(s.state.vacated) :]:  # memory forgets what a push moved
                    s.memory.forget(gone.center, gone.radius, gone.top, self.intr)
                s.state = state

    def _objects(self, rgb: np.ndarray) -> np.ndarray:
        """The ObjectFinder's semantic classes ``[H, W]`` for the frame ``rgb [H, W, 3]`` in [0, 1]."""
        return self._object_finder().find(rgb)

    def _object_finder(self) -> ObjectFinder:
        if self._finder is None:  # loaded at first use; channels_last, as the network
            self._finder = load_finder(DEFAULT_FINDER).to(self.device, memory_format=torch.channels_last)
        return self._finder

    def _commit(
        self, ss: list[_Session], step: NextFrame, out: dict[str, torch.Tensor]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The depth rules, layout fill and props applied to ``out``; the frames go into memory and become the
        sessions' latest. Returns the frames' colour, depth and semantics on the host."""
        c, poses = self.config, torch.from_numpy(step.targets)
        plane = floor_depth(poses, self.intr) if c.ground or c.layout_fill else None  # both rules use it
        self._settle_depth(step, out, plane)
        if c.layout_fill and step.room is not None:
            top = torch.tensor([s.top for s in ss], dtype=torch.float32)
            layout = layout_labels(poses, self.intr, step.room, top, plane)
            fill_unseen(out, step.warp.mask > 0, self._palettes(ss), layout)
        if c.open_door and step.room is not None:
            self._open_doorways(ss, poses, step.room, plane, out)
        if step.hints is not None and self.config.draw_props:
            composite_props(out, step.hints, torch.tensor([s.state.lights_on for s in ss]))
        targets = step.targets
        colour = out["colour"].cpu().numpy()  # a few copies per frame from a GPU
        host_depth = np.ascontiguousarray(out["depth"].cpu().numpy())  # (a view of planes)
        host_labels = out["labels"].cpu().numpy()
        entries = entries_from_outputs(
            out, targets, [s.time + 1 for s in ss], [s.state for s in ss], self.intr, host_depth
        )
        if self.config.collide:
            seen_objects = obstacle_points_many(host_depth, host_labels, targets, self.intr)
        add_many([s.memory for s in ss], entries, self.intr, step.seen)
        for b, s in enumerate(ss):
            s.time += 1
            s.pose = targets[b]
            s.depth, s.semantic = host_depth[b], host_labels[b]  # generate copies them into its arrays
            if self.config.collide:
                s.obstacles = remember(s.obstacles, seen_objects[b])
        return colour, host_depth, host_labels

    def _forward(
        self, feats, zbuf, mask, hints, depth_known, estimate, state, step, floor
    ) -> dict[str, torch.Tensor]:
        """The network on the input ``assemble`` makes of these (see ``_net``), in the configured precision,
        and all that generation uses of its output: the ``planes [B, 5, H, W]`` a memory keeps (fp32 colour
        in [-1, 1], metric depth, door pixels), the semantic class per pixel (``labels``) and the frame as
        ``colour`` bytes ``[B, H, W, 3]``. Assembly and these outputs are computed here, so CUDA graphs and
        compiled kernels include them (compiled, the input is assembled and the outputs made in fused passes,
        part by cache-sized part on the CPU; the semantic logits stay inside, never copied out or
        concatenated across parts). In bf16 the input is assembled in bfloat16, the estimate beside it in
        fp32."""
        warp, bf16 = Warp(feats, zbuf, mask), self.config.precision == "bf16"
        x = assemble(warp, hints, estimate, depth_known, torch.bfloat16 if bf16 else torch.float32, floor)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = self.net(x, state, step, current_estimate(warp, estimate))
        return frame_outputs(out)

    def _net(
        self,
        warp: Warp,
        hints: torch.Tensor | None,
        state: torch.Tensor,
        estimate: torch.Tensor | None = None,
        depth_known: bool = True,
        floor: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One network pass from ``assemble(warp, hints, estimate, depth_known)`` (on a GPU: from a CUDA graph
        or compiled kernels, see ``acceleration``; on the CPU in parts of at most ``CPU_NETWORK_BATCH``):
        ``_forward``'s outputs, with its ``planes``' ``rgb`` and ``depth`` as views of their own.
        Hints and ``depth_known`` always go in as tensors, so the first event with a prop, or the first frame
        a session encodes, runs the same graph and compiled kernels as every other step (no new compile)."""
        dev, b = self.device, len(warp.feats)
        hints = self._no_hints(b) if hints is None else hints
        step = torch.zeros(b, device=dev) if estimate is None else torch.ones(b, device=dev)
        known = torch.full((b,), float(depth_known), device=dev)
        inputs = (*warp, hints, known, estimate, state.to(dev), step, floor)
        if dev.type == "cpu" and b > CPU_NETWORK_BATCH:
            parts = [
                self._run(self._small, *(None if t is None else t[i : i + CPU_NETWORK_BATCH] for t in inputs))
                for i in range(0, b, CPU_NETWORK_BATCH)
            ]
            out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        else:
            out = self._run(self._small if b <= MAX_GRAPHED_BATCH else self._large, *inputs)
        return {**out, "rgb": out["planes"][:, 0:3], "depth": out["planes"][:, 3]}

    def _run(
        self, network: Callable, feats, zbuf, mask, hints, depth_known, estimate, state, step, floor
    ) -> dict[str, torch.Tensor]:
        """``network`` (``_forward`` or its graph or compiled form) on these, noting a batch shape it has not
        run before in ``_new_shape``: compiling and graph capture leave long-lived Python objects then, which
        ``generate`` exempts from the garbage collector once the call is done (``freeze_live_objects``)."""
        shape = (len(feats), estimate is None)  # batch size; first sampling step (no estimate) or not
        if shape not in self._shapes_run:
            self._shapes_run.add(shape)
            self._new_shape = True
        return network(feats, zbuf, mask, hints, depth_known, estimate, state, step, floor)

    def _no_hints(self, b: int) -> torch.Tensor:
        """Zero hint planes for ``b`` sessions (``_hint_planes``, the layout ``_hints`` fills, so both run
        the same compiled kernels); kept, not made afresh every frame."""
        if self._zero_hints is None or len(self._zero_hints) < b:  # the largest batch yet; fewer: a slice
            self._zero_hints = self._hint_planes(b)
        return self._zero_hints[:b]

    def _retrieval_device(self, b: int) -> torch.device | str:
        """Where retrieval for ``b`` sessions runs: the host, unless there is no C kernel and ``b`` is large
        enough that a GPU's batched pass is faster than torch's on the host (``RETRIEVE_ON_HOST_UP_TO``)."""
        return "cpu" if native_available() or b <= RETRIEVE_ON_HOST_UP_TO else self.device

    def _hint_planes(self, b: int) -> torch.Tensor:
        """``b`` sessions' hint planes ``[b, HINT_CHANNELS, H, W]``, zero, channels last as the network's
        input is: the one layout of every hint tensor ``_net`` takes."""
        h, w = self.config.height, self.config.width
        return torch.zeros(b, h, w, HINT_CHANNELS, device=self.device).permute(0, 3, 1, 2)

    def _prepare(self, ss: list[_Session], targets: np.ndarray) -> NextFrame:
        """Retrieval, the warp, hints and world state for every session's next frame at ``targets``, and
        how much of each session's keyframes these cameras see (for memory's ``add``)."""
        memories, seen = retrieve_many(
            [s.memory for s in ss],
            targets,
            self.intr,
            self.config.memory_k,
            [s.time + 1 for s in ss],
            self._retrieval_device(len(ss)),
            self.config.near_gate,
            self.config.near_k,
            [s.state.look for s in ss],
        )
        with torch.no_grad():
            c = self.config
            warp = warp_memories(
                memories, targets, self.intr, c.prefer_older, c.footprint, self._zbuffer,
                tolerance=c.same_surface, door_open=[s.state.door_open for s in ss],
                looks=[s.state.look for s in ss],
            )  # fmt: skip
            hints = self._hints(ss, targets)
        state = state_batch([s.state for s in ss])
        return NextFrame(targets, warp, hints, state, seen, self._floor(targets), self._room(ss, targets))

    def _room(self, ss: list[_Session], poses: np.ndarray) -> torch.Tensor | None:
        """Where each pixel's ray from cameras ``poses`` leaves its session's room ``[B, H, W]``, for the
        ``walls`` rule (``None`` when it is off)."""
        if not self.config.walls:
            return None
        bounds = torch.tensor([s.info.bounds for s in ss], dtype=torch.float32)
        return room_depth(torch.from_numpy(np.asarray(poses, np.float32)), self.intr, bounds)

    def _floor(self, poses: np.ndarray) -> torch.Tensor | None:
        """The floor channel's depth ``[B, H, W]`` for cameras ``poses`` on the device, if the network
        takes it."""
        if not self.net.floor:
            return None
        return floor_depth(torch.from_numpy(np.asarray(poses, np.float64)), self.intr).float().to(self.device)

    def _predict(self, step: NextFrame) -> dict[str, torch.Tensor]:
        """The network's frames for ``step`` (``sampler_steps`` passes), with the configured depth rules."""
        with torch.no_grad():
            warp, hints, state = step.warp, step.hints, step.state
            out = self._net(warp, hints, state, floor=step.floor)
            for _ in range(self.config.sampler_steps - 1):
                out = self._net(warp, hints, state, estimate=out["rgb"], floor=step.floor)
        return out

    def _settle_depth(
        self, step: NextFrame, out: dict[str, torch.Tensor], plane: torch.Tensor | None
    ) -> None:
        """The configured depth rules on the network's frames ``out`` for ``step``, in place (``plane``: the
        floor's depth along each pixel's ray, ``reproject.floor_depth`` of the targets)."""
        if self.config.keep_depth:
            keep_warped_depth(out, step.warp)
        if self.config.ground:
            poses = torch.from_numpy(step.targets)
            ground_depth(out, poses, self.intr, rescale=self.config.ground_rescale, plane=plane)
        if step.room is not None:
            wall_depth(out, step.room)

    def _open_doorways(
        self,
        ss: list[_Session],
        poses: torch.Tensor,
        room: torch.Tensor,
        plane: torch.Tensor | None,
        out: dict[str, torch.Tensor],
    ) -> None:
        """``compositing.open_doorway`` for the sessions whose door is open and whose room's doorway is
        known: the floor in its first-frame colour (while the lights are as they were then), and above it
        a courtyard's sky in its first-frame colour or the grey outside a room; then the door's panel,
        turned outwards on its hinge, in the colour the first frame showed it in (``draw_open_door``)."""
        rows = [b for b, s in enumerate(ss) if s.state.door_open and len(s.info.doorway) == 5]
        if not rows:
            return
        nan = torch.full((3,), float("nan"))
        floor_rgb, beyond_rgb, door_rgb = [], [], []
        for b in rows:
            s = ss[b]
            lit = s.palette is not None and s.state.lights_on == WorldState().lights_on
            floor_rgb.append(s.palette[CLASS_ID["floor"]] if lit else nan)
            door_rgb.append(s.palette[CLASS_ID["door"]] if lit else nan)
            if s.info.family == "room":
                beyond_rgb.append(torch.full((3,), BEYOND_ROOM_RGB))
            else:
                beyond_rgb.append(s.palette[CLASS_ID["sky"]] if lit else nan)
        idx = torch.tensor(rows)
        pose = poses[idx]
        plane = floor_depth(pose, self.intr) if plane is None else plane[idx]
        doorway = torch.tensor([ss[b].info.doorway for b in rows], dtype=pose.dtype)
        through = doorway_pixels(pose, self.intr, room[idx].to(pose.dtype), doorway)
        bounds = torch.tensor([ss[b].info.bounds for b in rows], dtype=pose.dtype)
        ground = ground_reach(pose, self.intr, plane, bounds)
        sub = {k: out[k][idx.to(out[k].device)] for k in ("planes", "labels", "colour")}
        rgb = torch.stack(floor_rgb), torch.stack(beyond_rgb)
        open_doorway(sub, through, room[idx], plane, ground, *rgb)
        draw_open_door(sub, open_door_depth(pose, self.intr, doorway, bounds), torch.stack(door_rgb))
        for k in ("planes", "labels", "colour"):
            out[k][idx.to(out[k].device)] = sub[k]

    def _palettes(self, ss: list[_Session]) -> torch.Tensor:
        """The sessions' first-frame layout colours ``[B, C, 3]``; NaN (no fill) for a session whose world
        no longer looks as it did then: the lights changed, or the door did without ``open_door`` to draw
        its doorway (an open door changes nothing else of the room's look)."""
        opened, blank = WorldState(), torch.full((len(SEMANTIC_CLASSES), 3), float("nan"))
        door_drawn = self.config.open_door
        same = [
            s.state.lights_on == opened.lights_on and (door_drawn or s.state.door_open == opened.door_open)
            for s in ss
        ]
        rows = [s.palette if s.palette is not None and ok else blank for s, ok in zip(ss, same, strict=True)]
        return torch.stack(rows)

    def _hints(self, ss: list[_Session], targets: np.ndarray) -> torch.Tensor | None:
        """Event hint channels on the device, channels last; ``None`` when no session has props (the common
        case)."""
        rows = [b for b, s in enumerate(ss) if s.state.props]
        if not rows:
            return None
        hints = self._hint_planes(len(ss))
        drawn = np.concatenate([ss[b].state.hints(targets[b][None], self.intr) for b in rows])
        hints[rows] = torch.from_numpy(drawn).to(self.device)
        return hints
