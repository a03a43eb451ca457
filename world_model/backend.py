"""The ``WorldModel`` interface every backend implements (ground truth, learned, constant).

A backend serves many *sessions* at once. A session is one camera in one world: it has a current pose,
a world state (lights, dropped objects, door...) and, for learned backends, a memory of what was seen.
The env turns keys into poses; the backend only ever sees poses and event records.

Shapes: ``B`` sessions per call, ``K`` frames per chunk, ``H x W`` images. Poses are camera-to-world
4x4 float64 in the world frame of ``world_model.geometry``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from world_model.events import EventRecord
from world_model.geometry import pose_problem


@dataclass
class Frames:
    """What a camera saw along a chunk: ``rgb [K,H,W,3] uint8``, ``depth [K,H,W] float32`` (metric
    z-depth, metres; inf for sky), ``semantic [K,H,W] uint8`` (``semantics.SEMANTIC_CLASSES`` ids),
    ``poses [K,4,4] float64`` (absolute poses actually reached, after collisions)."""

    rgb: np.ndarray
    depth: np.ndarray
    semantic: np.ndarray
    poses: np.ndarray

    def __len__(self) -> int:
        return len(self.rgb)

    def last(self) -> Frames:
        return Frames(self.rgb[-1:], self.depth[-1:], self.semantic[-1:], self.poses[-1:])


@dataclass
class SceneInfo:
    """What an agent may know about a session's world: its seed, family, start pose, goal poses
    (for GoalView), the objects present (for FindObject), the walkable bounds (x0, y0, x1, y1) and the
    doorway in the walls (x0, y0, x1, y1, height: the bottom edge's ends and how high it goes; empty where
    there is none or it is not known). Bounds and doorway are the room's plan, not what is in it."""

    seed: int | None
    family: str
    start_pose: np.ndarray
    goal_poses: np.ndarray  # [G, 4, 4]
    objects: list[dict[str, Any]] = field(default_factory=list)  # {"id", "shape", "color"}
    bounds: tuple[float, float, float, float] = (-np.inf, -np.inf, np.inf, np.inf)
    doorway: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "family": self.family,
            "start_pose": self.start_pose.tolist(),
            "goal_poses": np.asarray(self.goal_poses).tolist(),
            "objects": list(self.objects),
            "bounds": [float(b) for b in self.bounds],
            "doorway": [float(v) for v in self.doorway],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SceneInfo:
        return cls(
            d["seed"],
            d["family"],
            np.asarray(d["start_pose"], np.float64),
            np.asarray(d["goal_poses"], np.float64).reshape(-1, 4, 4),
            list(d["objects"]),
            tuple(d["bounds"]),
            tuple(float(v) for v in d.get("doorway", ())),
        )


@dataclass
class BackendInfo:
    """Static facts about a backend, reported by the server's INFO message."""

    name: str
    height: int
    width: int
    vfov_deg: float
    checkpoint: str = ""  # hash of the weights, "" for non-learned backends
    outputs: tuple[str, ...] = ("rgb", "depth", "semantic")
    extra: dict[str, Any] = field(default_factory=dict)


class WorldModel(ABC):
    """Batched world backend. Implementations: ``OracleWorldModel`` (MuJoCo ground truth) and the
    learned model. All methods are called from one thread; batching is the caller's job."""

    @abstractmethod
    def info(self) -> BackendInfo:
        raise NotImplementedError("info() -> BackendInfo")

    @abstractmethod
    def open(
        self,
        scene_seed: int | None = None,
        *,
        first_frame: np.ndarray | None = None,
        start_pose: np.ndarray | None = None,
    ) -> tuple[int, Frames, SceneInfo]:
        """Start a session in the world of ``scene_seed`` (or from a user image ``first_frame`` [H,W,3]
        uint8) at ``start_pose`` (default: the scene's start pose). Returns the session id, the first
        frame (K = 1) and the scene info."""
        raise NotImplementedError("open(scene_seed=None, *, first_frame=None, start_pose=None)")

    @abstractmethod
    def generate(
        self, sessions: list[int], relative_poses: np.ndarray, events: list[list[EventRecord]]
    ) -> list[Frames]:
        """Advance each session (each listed once) by one chunk. ``relative_poses [B, K, 4, 4]`` are target
        poses relative to the session's current (last) pose; ``events[b]`` apply at the start of session b's
        chunk. Returns one ``Frames`` of K frames per session, with the poses actually reached."""
        raise NotImplementedError("generate(sessions, relative_poses [B,K,4,4], events) -> list[Frames]")

    def check_events(self, session: int, events: list[EventRecord]) -> None:  # noqa: B027 - optional
        """Raise ``ValueError`` saying why if ``session``'s world cannot carry out ``events`` (an object
        the scene lacks); changes nothing. The server asks before stepping, so a bad command is refused
        on its own. Default: every event is accepted (the learned model skips what it cannot draw)."""

    @abstractmethod
    def fork(self, session: int) -> int:
        """A new session with a copy of ``session``'s full state; the original is untouched."""
        raise NotImplementedError("fork(session) -> new session id")

    @abstractmethod
    def close(self, session: int) -> None:
        raise NotImplementedError("close(session)")

    def relocate(self, session: int, scene_seed: int, pose: np.ndarray) -> tuple[int, Frames, SceneInfo]:
        """Move ``session``'s camera to ``pose`` in its scene ``scene_seed`` (no collisions on the way), as
        ``open`` returns it: the session id (which may be new), its frame there and the scene. This default
        starts the session over there (opens the scene at ``pose``, then closes the old session, which an
        error in the opening leaves as it was); a backend that can keep what the session has seen overrides
        it."""
        opened = self.open(scene_seed, start_pose=pose)
        self.close(session)
        return opened

    def pose(self, session: int) -> np.ndarray:
        """The session's current camera pose."""
        raise NotImplementedError("pose(session) -> [4, 4]")

    def shutdown(self) -> None:  # noqa: B027 - optional hook: backends without resources keep it
        """Release every session and resource."""


class UnknownSession(KeyError):
    """Raised when a session id is not open on this backend."""


State = TypeVar("State")


class SessionTable(Generic[State]):
    """A backend's open sessions by id, ids handed out in order and never reused: the one place that
    says an id is not open (``UnknownSession``)."""

    def __init__(self, first_id: int = 1) -> None:
        self._open: dict[int, State] = {}
        self._next_id = first_id

    def add(self, state: State) -> int:
        sid, self._next_id = self._next_id, self._next_id + 1
        self._open[sid] = state
        return sid

    def __getitem__(self, session: int) -> State:
        try:
            return self._open[session]
        except KeyError:
            raise UnknownSession(session) from None

    def pop(self, session: int) -> State:
        state = self[session]
        del self._open[session]
        return state

    def clear(self) -> None:
        self._open.clear()

    def __len__(self) -> int:
        return len(self._open)


def start_pose_argument(start_pose: Any) -> np.ndarray | None:
    """Check the ``start_pose`` of ``WorldModel.open`` before a session opens: ``None`` (the scene's start),
    or a camera-to-world ``[4, 4]`` (``geometry.pose_problem``). Returns it as float64."""
    if start_pose is None:
        return None
    try:
        pose = np.asarray(start_pose, np.float64)
    except (TypeError, ValueError):
        pose = None
    if pose is None or pose.shape != (4, 4):
        got = f"{start_pose!r:.60}" if pose is None else pose.shape
        raise ValueError(f"start_pose must be a 4x4 camera-to-world matrix, got {got}")
    problem = pose_problem(pose)
    if problem:
        raise ValueError(f"start_pose {problem}")
    return pose


def first_frame_argument(first_frame: Any, height: int, width: int) -> np.ndarray | None:
    """Check the ``first_frame`` of ``WorldModel.open`` before a session opens: ``None``, or an image
    uint8 ``[height, width, 3]``. Returns it as an array."""
    if first_frame is None:
        return None
    image = np.asarray(first_frame)
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"first_frame must be uint8 [{height}, {width}, 3], got {image.dtype} {list(image.shape)}"
        )
    return image


def generate_arguments(
    sessions: Sequence[int], relative_poses: Any, events: Sequence[Sequence[EventRecord]]
) -> np.ndarray:
    """Check the arguments of ``WorldModel.generate`` before anything changes, so a bad call loses nothing
    and says what is wrong: a chunk of ``K >= 1`` camera poses ``[B, K, 4, 4]`` (``geometry.pose_problem``)
    and one event list per session, each session listed once (twice, it would step twice from one state).
    Returns the poses as float64."""
    rel = np.asarray(relative_poses, np.float64)
    b = len(sessions)
    if rel.ndim != 4 or rel.shape[0] != b or rel.shape[1] < 1 or rel.shape[2:] != (4, 4):
        raise ValueError(f"relative_poses must be [B={b}, K>=1, 4, 4], got {list(rel.shape)}")
    problem = pose_problem(rel)
    if problem:
        raise ValueError(f"relative_poses {problem}")
    if len(events) != b:
        raise ValueError(f"need one event list per session, got {len(events)} for {b}")
    if len(set(sessions)) != b:
        raise ValueError(f"a session may appear once per call, got {list(sessions)}")
    return rel
