"""Typed, validated server requests built from decoded messages.

Everything a client sends is checked here, before it reaches the backend: types, ranges, shapes, finite
rigid poses, event vocabulary. A bad field raises :class:`BadRequest` whose message names the field and
says what is expected; the server turns it into an ERROR reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from world_model.events import EventRecord
from world_model.geometry import pose_problem

OUTPUTS: tuple[str, ...] = ("rgb", "depth", "semantic")
OUTPUT_DTYPES: dict[str, type] = {"rgb": np.uint8, "depth": np.float32, "semantic": np.uint8}  # in replies
MAX_SEED = 2**31 - 1


class BadRequest(ValueError):
    """A decodable message whose fields are wrong."""


@dataclass
class Limits:
    max_sessions_per_request: int = 1024
    max_frames_per_step: int = 64
    max_horizon: int = 64
    max_events_per_step: int = 16


@dataclass
class SceneSpec:
    """Where a session starts: a scene seed, an optional start pose, an optional extra view to render (a
    goal image: at ``view_pose``, or at the scene's goal pose ``view_goal % G``) and an optional user-given
    first frame. With ``relocate`` (a RESET of an open session, to ``start_pose`` in the scene it is in),
    the session is not started over: its camera moves there, and the backend keeps what the session has
    seen where it can (``WorldModel.relocate``)."""

    scene_seed: int | None = None
    start_pose: np.ndarray | None = None
    view_pose: np.ndarray | None = None
    view_goal: int | None = None
    first_frame: np.ndarray | None = None
    relocate: bool = False

    def to_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scene_seed": self.scene_seed}
        if self.start_pose is not None:
            out["start_pose"] = np.asarray(self.start_pose, np.float64).tolist()
        if self.view_pose is not None:
            out["view_pose"] = np.asarray(self.view_pose, np.float64).tolist()
        if self.view_goal is not None:
            out["view_goal"] = int(self.view_goal)
        if self.first_frame is not None:
            out["first_frame"] = True
        if self.relocate:
            out["relocate"] = True
        return out


@dataclass
class StepRequest:
    sessions: list[int]
    relative_poses: np.ndarray  # [B, T, K, 4, 4]
    events: list[list[list[EventRecord]]]  # [B][T] -> records
    outputs: tuple[str, ...] = ("rgb",)
    frames: str = "last"  # "last" or "all" frames of each chunk
    resets: dict[int, SceneSpec] = field(default_factory=dict)  # row -> new scene (instead of a step)

    @property
    def horizon(self) -> int:
        return int(self.relative_poses.shape[1])


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"{name} must be an integer in [{lo}, {hi}], got {value!r:.100}")
    return value


def check_scene_seed(value: Any, name: str) -> int:
    """A scene seed: an integer in [0, MAX_SEED] (a numpy integer too; never a bool, a float or a string),
    else ``BadRequest`` (a ``ValueError``) naming ``name``. The one check for scene seeds, used by the
    server's scene specs and by the env's ``scene_seed`` argument and reset option."""
    return _int(int(value) if isinstance(value, np.integer) else value, name, 0, MAX_SEED)


def session_list(meta: dict[str, Any], key: str = "sessions", limit: int = 1024) -> list[int]:
    sessions = meta.get(key)
    if not isinstance(sessions, list) or not 1 <= len(sessions) <= limit:
        raise BadRequest(f"{key!r} must be a list of 1 to {limit} session ids")
    out = [_int(s, f"{key}[{i}]", 0, 2**63 - 1) for i, s in enumerate(sessions)]
    if len(set(out)) != len(out):
        raise BadRequest(f"{key!r} lists a session twice: {out}")
    return out


def check_poses(poses: Any, name: str) -> np.ndarray:
    """Finite rigid camera poses ``[..., 4, 4]`` (orthonormal rotation, last row 0 0 0 1)."""
    arr = np.asarray(poses, dtype=np.float64) if not isinstance(poses, np.ndarray) else poses
    if arr.dtype != np.float64 or arr.shape[-2:] != (4, 4):
        raise BadRequest(f"{name} must be float64 [..., 4, 4] poses, got {arr.dtype} {list(arr.shape)}")
    problem = pose_problem(arr)
    if problem:
        raise BadRequest(f"{name} {problem}")
    return arr


def scene_specs(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], limits: Limits, key: str = "scenes"
) -> list[SceneSpec]:
    specs = meta.get(key)
    if not isinstance(specs, list) or not 1 <= len(specs) <= limits.max_sessions_per_request:
        raise BadRequest(f"{key!r} must be a list of 1 to {limits.max_sessions_per_request} scene specs")
    return [scene_spec(s, arrays, i, f"{key}[{i}]") for i, s in enumerate(specs)]


def scene_spec(spec: Any, arrays: dict[str, np.ndarray], row: int, name: str) -> SceneSpec:
    if not isinstance(spec, dict):
        raise BadRequest(f"{name} must be a map with scene_seed[, start_pose, view_pose, first_frame]")
    unknown = set(spec) - {"scene_seed", "start_pose", "view_pose", "view_goal", "first_frame", "relocate"}
    if unknown:
        raise BadRequest(f"{name} has unknown keys {sorted(unknown)}")
    seed = spec.get("scene_seed")
    out = SceneSpec(None if seed is None else check_scene_seed(seed, f"{name}.scene_seed"))
    if spec.get("view_goal") is not None:
        out.view_goal = _int(spec["view_goal"], f"{name}.view_goal", 0, MAX_SEED)
    for k in ("start_pose", "view_pose"):
        if spec.get(k) is not None:
            try:
                pose = np.asarray(spec[k], dtype=np.float64)
            except (TypeError, ValueError):
                raise BadRequest(f"{name}.{k} must be a 4x4 list of numbers") from None
            setattr(out, k, check_poses(pose.reshape(4, 4) if pose.size == 16 else pose, f"{name}.{k}"))
    if spec.get("first_frame"):
        frames = arrays.get("first_frames")
        if (
            frames is None
            or frames.dtype != np.uint8
            or frames.ndim != 4
            or frames.shape[-1] != 3
            or row >= len(frames)
        ):
            raise BadRequest(f"{name}.first_frame needs an array 'first_frames' uint8 [B, H, W, 3]")
        out.first_frame = frames[row]
    relocate = spec.get("relocate", False)
    if not isinstance(relocate, bool):
        raise BadRequest(f"{name}.relocate must be true or false, got {relocate!r:.100}")
    if relocate:
        extra = [k for k in ("view_pose", "view_goal", "first_frame") if spec.get(k) is not None]
        if out.scene_seed is None or out.start_pose is None or extra:
            raise BadRequest(
                f"{name}.relocate moves a session's camera within its scene: it needs scene_seed and "
                f"start_pose{f', and no {extra}' if extra else ''}"
            )
        out.relocate = True
    return out


def event_records(raw: Any, name: str, limit: int) -> list[EventRecord]:
    if not isinstance(raw, list) or len(raw) > limit:
        raise BadRequest(f"{name} must be a list of at most {limit} event records")
    out = []
    for i, ev in enumerate(raw):
        if not isinstance(ev, dict):
            raise BadRequest(f"{name}[{i}] must be a map (predicate, entity, attributes, anchor)")
        try:
            out.append(EventRecord.from_dict(ev))  # checks every field (events.validate)
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"{name}[{i}]: {exc}") from None
    return out


def step_request(meta: dict[str, Any], arrays: dict[str, np.ndarray], limits: Limits) -> StepRequest:
    sessions = session_list(meta, limit=limits.max_sessions_per_request)
    b = len(sessions)
    rel = arrays.get("relative_poses")
    if rel is None or rel.ndim != 5 or rel.shape[0] != b:
        raise BadRequest(
            f"STEP needs an array 'relative_poses' float64 [B={b}, T, K, 4, 4], got "
            f"{None if rel is None else list(rel.shape)}"
        )
    _, t, k = rel.shape[:3]
    if not 1 <= t <= limits.max_horizon or not 1 <= k <= limits.max_frames_per_step:
        raise BadRequest(
            f"relative_poses needs 1 <= T <= {limits.max_horizon} and 1 <= K <= "
            f"{limits.max_frames_per_step}, got T={t}, K={k}"
        )
    check_poses(rel, "relative_poses")
    events = step_events(meta.get("events", [[[]] * t] * b), b, t, limits)
    outputs = _outputs(meta, ["rgb"])
    frames = meta.get("frames", "last")
    if frames not in ("last", "all"):
        raise BadRequest(f"'frames' must be 'last' or 'all', got {frames!r:.50}")
    resets: dict[int, SceneSpec] = {}
    raw_resets = meta.get("resets", [])
    if not isinstance(raw_resets, list):
        raise BadRequest("'resets' must be a list of [row, scene spec] pairs")
    for item in raw_resets:
        if not isinstance(item, list) or len(item) != 2:
            raise BadRequest("'resets' must be a list of [row, scene spec] pairs")
        row = _int(item[0], "resets row", 0, b - 1)
        resets[row] = scene_spec(item[1], arrays, row, f"resets[{row}]")
    if resets and t != 1:
        raise BadRequest("'resets' can only be combined with a horizon of T=1")
    return StepRequest(sessions, rel, events, tuple(outputs), frames, resets)


def step_events(raw: Any, b: int, t: int | None, limits: Limits) -> list[list[list[EventRecord]]]:
    """``events[b][t]``: the event records of each session's each chunk (``t=None``: any horizon up to the
    limit, the same for every session)."""
    shape = f"[B={b}][T]" if t is None else f"[B={b}][T={t}]"
    t = len(raw[0]) if t is None and isinstance(raw, list) and raw and isinstance(raw[0], list) else t
    if (
        not isinstance(raw, list)
        or len(raw) != b
        or t is None
        or not 1 <= t <= limits.max_horizon
        or not all(isinstance(e, list) and len(e) == t for e in raw)
    ):
        raise BadRequest(f"'events' must be a {shape} list of event-record lists, the same T for all")
    return [
        [event_records(raw[i][j], f"events[{i}][{j}]", limits.max_events_per_step) for j in range(t)]
        for i in range(b)
    ]


def check_request(meta: dict[str, Any], limits: Limits) -> tuple[list[int], list[list[list[EventRecord]]]]:
    """A CHECK: the sessions and the events ``[B][T]`` a STEP would carry, without its poses."""
    sessions = session_list(meta, limit=limits.max_sessions_per_request)
    return sessions, step_events(meta.get("events"), len(sessions), None, limits)


def output_list(meta: dict[str, Any]) -> tuple[str, ...]:
    return tuple(_outputs(meta, list(OUTPUTS)))


def _outputs(meta: dict, default: list[str]) -> list[str]:
    """The request's ``outputs``: a non-empty list of names from ``OUTPUTS`` (anything else: BadRequest)."""
    outputs = meta.get("outputs", default)
    ok = isinstance(outputs, list) and outputs and all(isinstance(o, str) and o in OUTPUTS for o in outputs)
    if not ok:
        raise BadRequest(f"'outputs' must be a non-empty subset of {list(OUTPUTS)}, got {outputs!r:.100}")
    return outputs
