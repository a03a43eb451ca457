"""The backend worker: the one thread that calls the ``WorldModel``, and the replies it builds.

The server's I/O thread validates requests and decides batches; this thread owns the mapping from the
server's session handles to backend session ids, runs jobs in FIFO order, and stacks frames into reply
arrays. Running the backend off the I/O thread lets the server answer PINGs and retries while a slow
batch is generated, and overlaps receiving the next batch with generating this one.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from world_model.backend import Frames, UnknownSession, WorldModel
from world_model.events import EventRecord
from world_model.serve.batching import PendingStep
from world_model.serve.threads import ThreadTuner
from world_model.wire.protocol import ErrorCode, Message, MsgType, bad_event_text, error_message
from world_model.wire.requests import OUTPUT_DTYPES, SceneSpec, StepRequest

log = logging.getLogger("world_model.serve")


@dataclass
class Job:
    """``fn`` runs on the worker thread; ``then(result, error)`` runs on the I/O thread afterwards."""

    fn: Callable[[], Any]
    then: Callable[[Any, BaseException | None], None]


class BackendWorker:
    """Runs jobs on one thread; writes a byte to ``wake_fd`` after each so the I/O thread can poll it.
    ``threads``: makes the ``ThreadTuner`` that fits the backend's torch threads to the free cores between
    jobs (None: the threads stay as the backend set them)."""

    def __init__(
        self,
        factory: Callable[[], WorldModel],
        max_batch: int,
        wake_fd: int,
        threads: Callable[[], ThreadTuner] | None = None,
    ) -> None:
        self._factory = factory
        self._threads = threads
        self.tuner: ThreadTuner | None = None  # once started, when it adapts
        self.backend: WorldModel | None = None
        self.backend_info: Any = None
        self.ready = threading.Event()
        self.start_error: BaseException | None = None
        self.max_batch = max_batch
        self._ids: dict[int, int] = {}  # server handle -> backend session id (worker thread only)
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self.done: queue.Queue[tuple[Job, Any, BaseException | None]] = queue.Queue()
        self._wake_fd = wake_fd
        self._thread = threading.Thread(target=self._run, name="dreamx-backend", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def stop(self, timeout: float = 10.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        # The backend is built here because GL contexts (MuJoCo rendering) belong to the creating thread;
        # the tuner too, since torch's thread count is per thread (and the start-up is its first look).
        try:
            tuner = self._threads() if self._threads is not None else None
            self.backend = self._factory()
            self.backend_info = self.backend.info()
            if tuner is not None and tuner.start(self.backend_info.extra.get("device")):
                self.tuner = tuner
        except BaseException as exc:
            self.start_error = exc
            self.ready.set()
            return
        self.ready.set()
        while (job := self._jobs.get()) is not None:
            if self.tuner is not None:
                self.tuner.tick()
            try:
                result, error = job.fn(), None
            except Exception as exc:  # reported to the client; the worker keeps going
                result, error = None, exc
            self.done.put((job, result, error))
            os.write(self._wake_fd, b"x")
        try:
            self.close_all()
            self.backend.shutdown()
        except Exception:
            log.exception("backend shutdown failed")

    # -- jobs (worker thread) -------------------------------------------------------------------------------
    def _backend_id(self, handle: int) -> int:
        try:
            return self._ids[handle]
        except KeyError:
            raise UnknownSession(handle) from None

    def _open_one(self, handle: int, spec: SceneSpec) -> tuple[Frames, dict, np.ndarray | None]:
        """Open ``handle``'s session as ``spec`` says (for a ``relocate``, move its open session), closing
        the session it had."""
        if spec.relocate:
            sid, frames, scene = self.backend.relocate(
                self._backend_id(handle), spec.scene_seed, spec.start_pose
            )
            self._ids[handle] = sid
            return frames, scene.to_dict(), None
        self._close_one(handle)
        sid, frames, scene = self.backend.open(
            spec.scene_seed, first_frame=spec.first_frame, start_pose=spec.start_pose
        )
        view, view_pose = None, spec.view_pose
        if spec.view_goal is not None:
            if len(scene.goal_poses) == 0:
                self.backend.close(sid)
                raise ValueError(f"scene {spec.scene_seed} has no goal poses to render a goal view from")
            view_pose = scene.goal_poses[spec.view_goal % len(scene.goal_poses)]
        if view_pose is not None:
            vid, vframes, _ = self.backend.open(spec.scene_seed, start_pose=view_pose)
            self.backend.close(vid)
            view = vframes.rgb[-1]
        self._ids[handle] = sid
        return frames, scene.to_dict(), view

    def _close_one(self, handle: int) -> None:
        sid = self._ids.pop(handle, None)
        if sid is not None:
            self.backend.close(sid)

    def open_sessions(
        self, handles: list[int], specs: list[SceneSpec], outputs: tuple[str, ...], request_id: int
    ) -> Message:
        """OPEN (fresh handles) and RESET (existing handles): one first frame per session."""
        got = []
        try:
            for h, spec in zip(handles, specs, strict=True):
                got.append(self._open_one(h, spec))
        except Exception:
            for h in handles:  # all or nothing
                self._close_one(h)
            raise
        arrays = _frame_arrays([g[0] for g in got], outputs, "last")
        arrays = {k: v[:, 0] for k, v in arrays.items()}
        arrays["poses"] = np.stack([g[0].poses[-1] for g in got])
        views = [g[2] for g in got]
        if any(v is not None for v in views):
            arrays["view_rgb"] = _stack_views(views, got[0][0].rgb.shape[1:])
        return Message(
            MsgType.REPLY, request_id, {"sessions": handles, "scenes": [g[1] for g in got]}, arrays
        )

    def fork(self, handle: int, new_handles: list[int], request_id: int) -> Message:
        sid = self._backend_id(handle)
        for h in new_handles:
            self._ids[h] = self.backend.fork(sid)
        return Message(MsgType.REPLY, request_id, {"sessions": new_handles})

    def close_sessions(self, handles: list[int], request_id: int) -> Message:
        for h in handles:
            self._close_one(h)
        return Message(MsgType.REPLY, request_id, {"closed": handles})

    def close_all(self) -> None:
        for h in list(self._ids):
            self._close_one(h)

    def step_batch(self, batch: list[PendingStep]) -> tuple[list[tuple[bytes, Message]], list[int]]:
        """Advance every session of every request in ``batch``: one ``generate`` call per horizon step (per
        ``max_batch`` sessions), then resets. Returns one reply per request and the generate batch sizes.
        A request naming a session that is gone, or an event its world cannot carry out, gets its own ERROR
        and does not spoil the batch; its sessions are not stepped. Each chunk is copied into its reply's
        arrays as it is generated, keeping only the frames and outputs asked for, so the memory a request
        takes is its reply's size (what ``world_model.serve.budgets`` bounds), not every frame generated."""
        replies, sizes = [], []
        live = []
        for p in batch:
            req = p.request
            error = self._refusal(p.request_id, req.sessions, req.events, req.resets)
            if error is not None:
                replies.append((p.identity, error))
            else:
                live.append(p)
        batch = live
        if not batch:
            return replies, sizes
        rows = [
            (i, r, h)
            for i, p in enumerate(batch)
            for r, h in enumerate(p.request.sessions)
            if r not in p.request.resets
        ]
        horizon = batch[0].request.horizon
        arrays: list[dict[str, np.ndarray]] = [{} for _ in batch]  # per request: its reply's arrays
        ids = {(i, r): self._backend_id(h) for i, r, h in rows}
        for t in range(horizon):
            for start in range(0, len(rows), self.max_batch):
                part = rows[start : start + self.max_batch]
                rel = np.stack([batch[i].request.relative_poses[r, t] for i, r, _ in part])
                events = [batch[i].request.events[r][t] for i, r, _ in part]
                frames = self.backend.generate([ids[i, r] for i, r, _ in part], rel, events)
                sizes.append(len(part))
                for (i, r, _), f in zip(part, frames, strict=True):
                    _fill(arrays[i], batch[i].request, r, t, f)
        for i, p in enumerate(batch):
            try:
                replies.append((p.identity, self._step_reply(p, arrays[i])))
            except Exception as exc:
                log.warning("reset in STEP failed: %s", exc)
                replies.append(
                    (p.identity, error_message(p.request_id, ErrorCode.BACKEND, f"reset failed: {exc}"))
                )
        return replies, sizes

    def check(self, sessions: list[int], events: list[list[list[EventRecord]]], request_id: int) -> Message:
        """A CHECK's reply: an empty REPLY when every session's world would carry out its events, else the
        ERROR a STEP with them would get. Nothing is stepped."""
        error = self._refusal(request_id, sessions, events)
        return Message(MsgType.REPLY, request_id, {}) if error is None else error

    def _refusal(
        self,
        request_id: int,
        sessions: list[int],
        events: list[list[list[EventRecord]]],
        resets: Mapping[int, SceneSpec] = MappingProxyType({}),
    ) -> Message | None:
        """The ERROR a STEP of ``sessions`` with ``events`` gets before anything is stepped (a session that
        is not open, then an event its world cannot carry out; rows in ``resets`` start new scenes and are
        exempt from both, but a ``relocate`` moves a session that must be open), or None."""
        fresh = {r for r, spec in resets.items() if not spec.relocate}
        missing = [h for r, h in enumerate(sessions) if r not in fresh and h not in self._ids]
        if missing:
            return _not_open(request_id, missing)
        refused = self._refused_events(sessions, events, resets)
        return None if refused is None else _bad_event(request_id, *refused)

    def _refused_events(
        self, sessions: list[int], events: list[list[list[EventRecord]]], resets: Container[int] = ()
    ) -> tuple[int, int, str] | None:
        """The row, step and reason of the first of the events ``[B][T]`` the backend cannot carry out
        (checked against the worlds as they are before this step; rows in ``resets`` start new scenes
        instead), or None."""
        for r, h in enumerate(sessions):
            for t, evs in enumerate(events[r]):
                if evs and r not in resets:
                    try:
                        self.backend.check_events(self._ids[h], evs)
                    except ValueError as exc:
                        return r, t, str(exc)
        return None

    def _step_reply(self, p: PendingStep, arrays: dict[str, np.ndarray]) -> Message:
        """The REPLY to ``p`` from the arrays its stepped rows filled; rows in its resets start their new
        scenes here and report their first frame, repeated to the chunk length (resets have T=1)."""
        req, meta = p.request, {}
        k = req.relative_poses.shape[2]
        scenes, views = [], [None] * len(req.sessions)
        for r, spec in sorted(req.resets.items()):
            first, scene, views[r] = self._open_one(req.sessions[r], spec)
            last = (first.rgb, first.depth, first.semantic, first.poses)
            _fill(arrays, req, r, 0, Frames(*(np.repeat(a[-1:], k, 0) for a in last)))
            scenes.append([r, scene])
        if scenes:
            meta["scenes"] = scenes
        if any(v is not None for v in views):
            arrays["view_rgb"] = _stack_views(views, next(v.shape for v in views if v is not None))
        return Message(MsgType.REPLY, p.request_id, meta, arrays)


def _not_open(request_id: int, missing: list[int]) -> Message:
    return error_message(request_id, ErrorCode.UNKNOWN_SESSION, f"session(s) {missing} are not open")


def _bad_event(request_id: int, row: int, step: int, reason: str) -> Message:
    text = bad_event_text(row, step, reason)
    return error_message(request_id, ErrorCode.BAD_EVENT, text, row=row, step=step, reason=reason)


def _frame_arrays(frames: list[Frames], outputs: tuple[str, ...], which: str) -> dict[str, np.ndarray]:
    """Stack sessions' frames into ``[B, F, ...]`` arrays (F = 1 for "last", K for "all")."""
    sl = slice(-1, None) if which == "last" else slice(None)
    return {
        name: np.stack([np.asarray(getattr(f, name)[sl], dtype) for f in frames])
        for name, dtype in OUTPUT_DTYPES.items()
        if name in outputs
    }


def _fill(arrays: dict[str, np.ndarray], req: StepRequest, row: int, t: int, chunk: Frames) -> None:
    """Copy what a STEP reply carries of session ``row``'s chunk ``t`` into its arrays ``[B, T, F, ...]``
    (the outputs asked for, F = 1 or K frames) and ``poses [B, T, K, 4, 4]``, allocated on first use."""
    sl = slice(-1, None) if req.frames == "last" else slice(None)
    parts = {name: (getattr(chunk, name)[sl], OUTPUT_DTYPES[name]) for name in req.outputs}
    parts["poses"] = (chunk.poses, np.float64)
    for name, (part, dtype) in parts.items():
        if name not in arrays:
            arrays[name] = np.empty((len(req.sessions), req.horizon, *np.shape(part)), dtype)
        arrays[name][row, t] = part


def _stack_views(views: list[np.ndarray | None], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack([np.zeros(shape, np.uint8) if v is None else np.asarray(v, np.uint8) for v in views])
