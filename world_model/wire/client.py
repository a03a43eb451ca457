"""``SimulatorClient``: the DEALER side of the simulator protocol (``world_model.wire.protocol``).

Each call sends one request and waits for its reply. While waiting, the client re-sends the same request
id every ``retry_interval_s``; the server answers a retry of a finished request with the cached reply and
a retry of a request still being generated with a PING, so retries never repeat work and a slow batch is
not mistaken for a dead server. When nothing at all comes back for ``timeout_s`` (default 5 s) the call
raises :class:`ServerUnavailable` naming the address. Calls never hang. A request the server could not
receive (a frame over its ``max_message_bytes``, which ZeroMQ there drops without an answer) is refused
before sending with :class:`RequestTooLarge`. One client is one identity: the sessions it opens belong
to it. It is not thread-safe; use one client per thread.

While it holds sessions, a background thread sends a HEARTBEAT (no reply) whenever the client has sent
nothing for ``heartbeat_s`` (at most a third of the server's ``client_heartbeat_timeout_s``, learned from
INFO), so a server frees the sessions of a client that was killed or hung after that time-out rather than
its much longer ``idle_timeout_s``. ZeroMQ's own ZMTP heartbeats (``zmq.HEARTBEAT_IVL``) cannot do this:
they stay inside libzmq, so the server's code never learns which client identity is alive, they do not pass
through a broker to its workers, and ``inproc://`` has none.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from world_model.backend import SceneInfo
from world_model.events import EventRecord
from world_model.wire.addresses import check_public_key, curve_keypair
from world_model.wire.protocol import Message, MsgType, ProtocolError, decode, encode
from world_model.wire.requests import SceneSpec


class ServerUnavailable(ConnectionError):
    """The simulator server did not answer in time (it is gone, or never started)."""


class RequestTooLarge(ValueError):
    """A request with a frame (an array) over the server's ``max_message_bytes``: refused before sending,
    because ZeroMQ at the server would drop it and close the connection without an answer."""


class ServerError(RuntimeError):
    """The server answered with an ERROR. ``code`` is a ``world_model.wire.protocol.ErrorCode`` value."""

    def __init__(self, code: str, message: str, address: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"simulator server at {address} refused the request ({code}): {message}")
        self.code, self.address, self.message = code, address, message
        self.details = details or {}  # the ERROR's other fields (a bad event's row, step, reason)


@dataclass
class ClientConfig:
    timeout_s: float = 5.0  # no sign of life for this long -> ServerUnavailable
    retry_interval_s: float = 1.0  # re-send the same request id this often while waiting
    request_timeout_s: float = 600.0  # upper bound for one request, even while the server says "working"
    max_message_bytes: int = 256 << 20  # the server's (its default), until info() reports the server's own
    server_public_key: str | None = None  # z85 CURVE key of a remote server: turns CURVE on
    curve_public_key: str | None = None  # this client's keypair (for a server's client_public_keys);
    curve_secret_key: str | None = None  #   None: a fresh pair per client
    heartbeat_s: float = 5.0  # heartbeat this often while holding sessions and idle; 0: never


@dataclass
class OpenResult:
    sessions: list[int]
    frames: dict[str, np.ndarray]  # rgb [B,H,W,3], depth, semantic, poses [B,4,4], view_rgb (if asked)
    scenes: list[SceneInfo]


@dataclass
class StepResult:
    frames: dict[str, np.ndarray]  # rgb [B,T,F,H,W,3], depth, semantic, poses [B,T,K,4,4], view_rgb
    scenes: dict[int, SceneInfo]  # rows that were reset instead of stepped


class SimulatorClient:
    """Connect to ``address`` (``tcp://127.0.0.1:5555``, ``ipc:///tmp/x.sock``, ``inproc://name``)."""

    def __init__(self, address: str, config: ClientConfig | None = None, context: zmq.Context | None = None):
        self.address = address
        self.config = cfg = config or ClientConfig()
        own = curve_keypair(cfg.curve_secret_key, cfg.curve_public_key)
        if cfg.server_public_key is not None:
            check_public_key("server_public_key", cfg.server_public_key, "the server's z85 CURVE public key")
        elif own is not None:
            raise ValueError("a client keypair needs server_public_key too (the server's CURVE public key)")
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.ROUTING_ID, b"dx" + os.urandom(14))  # stable across reconnects
        if cfg.server_public_key is not None:
            secret, public = (k.encode() for k in own) if own else zmq.curve_keypair()[::-1]
            self._sock.curve_serverkey = cfg.server_public_key.encode()
            self._sock.curve_publickey, self._sock.curve_secretkey = public, secret
        self._sock.connect(address)
        self._ids = itertools.count(int.from_bytes(os.urandom(4), "big") << 16)
        self.max_message_bytes = cfg.max_message_bytes  # the largest frame the server receives
        self.closed = False
        self.sessions: set[int] = set()  # opened (or forked) by this client and not closed by it
        # the heartbeat thread sends on the socket too; requests hold the lock while they use it
        self._lock = threading.Lock()
        self._last_send = time.monotonic()
        self._heartbeat_s = cfg.heartbeat_s if cfg.heartbeat_s > 0 else None
        self._heartbeats: threading.Event | None = None  # set: the heartbeat thread stops

    def request(
        self,
        type: MsgType,
        meta: dict[str, Any] | None = None,
        arrays: dict[str, np.ndarray] | None = None,
        timeout_s: float | None = None,
    ) -> Message:
        """Send one request and return the REPLY; raise ServerError / ServerUnavailable otherwise."""
        if self.closed:
            raise RuntimeError(f"client for {self.address} is closed")
        with self._lock:
            return self._request(type, meta, arrays, timeout_s)

    def _request(
        self,
        type: MsgType,
        meta: dict[str, Any] | None,
        arrays: dict[str, np.ndarray] | None,
        timeout_s: float | None,
    ) -> Message:
        cfg = self.config
        timeout = cfg.timeout_s if timeout_s is None else timeout_s
        request_id = next(self._ids)
        frames = encode(Message(type, request_id, meta or {}, arrays or {}))
        self._check_size(type, frames, list(arrays or {}))
        start = last_life = last_send = time.monotonic()
        sent = self._try_send(frames)
        while True:
            now = time.monotonic()
            if now - last_life > timeout:
                raise ServerUnavailable(
                    f"no answer from the simulator server at {self.address} for {timeout:.1f} s "
                    f"({type.name} request); is it running? (it may have crashed or been stopped)"
                )
            if now - start > cfg.request_timeout_s:
                raise ServerUnavailable(
                    f"simulator server at {self.address} is alive but did not finish a "
                    f"{type.name} request within {cfg.request_timeout_s:.0f} s"
                )
            retry_after = cfg.retry_interval_s if sent else 0.05
            wait = min(last_send + retry_after, last_life + timeout) - now
            if self._sock.poll(max(1, int(wait * 1000)), zmq.POLLIN):
                try:
                    reply = decode(self._sock.recv_multipart(copy=False))
                except ProtocolError as exc:
                    raise ServerError(exc.code, f"undecodable reply: {exc}", self.address) from None
                if reply.request_id != request_id:
                    continue  # a late answer to an earlier, abandoned request
                last_life = time.monotonic()
                if reply.type == MsgType.REPLY:
                    return reply
                if reply.type == MsgType.ERROR:
                    details = {k: v for k, v in reply.meta.items() if k not in ("code", "message")}
                    raise ServerError(
                        str(reply.meta.get("code")), str(reply.meta.get("message")), self.address, details
                    )
                continue  # PING: still working on it
            if time.monotonic() - last_send >= retry_after:
                sent = self._try_send(frames)  # same request id: idempotent on the server
                last_send = time.monotonic()

    def _check_size(self, type: MsgType, frames: list, names: list[str]) -> None:
        """Raise :class:`RequestTooLarge` if a frame is over ``max_message_bytes`` (ZeroMQ's limit is per
        frame: the header and each array are one)."""
        limit = self.max_message_bytes
        for i, frame in enumerate(frames):
            if limit >= 0 and len(frame) > limit:
                what = f"array {names[i - 2]!r}" if i >= 2 else "its header"
                raise RequestTooLarge(
                    f"this {type.name} request's {what} is {len(frame):,} bytes, over the {limit:,} bytes "
                    f"the server at {self.address} takes in one frame (its max_message_bytes): it would drop "
                    "the connection without an answer. Send fewer sessions, a shorter horizon or fewer "
                    "frames a request, or raise max_message_bytes on the server"
                )

    def _try_send(self, frames: list) -> bool:
        """Send without blocking: with no peer at all (an inproc server gone) a DEALER would block forever."""
        try:
            self._sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
            self._last_send = time.monotonic()
            return True
        except zmq.Again:
            return False

    # -- heartbeats -----------------------------------------------------------------------------------------
    def _hold(self, sessions: list[int]) -> None:
        """Book ``sessions`` as held; the first ones start the heartbeats, with one sent at once (from then
        on the server closes this client's sessions when its heartbeats stop, even right after this)."""
        self.sessions.update(sessions)
        if self.sessions and self._heartbeat_s is not None and self._heartbeats is None:
            with self._lock:
                self._try_send(encode(Message(MsgType.HEARTBEAT, 0)))
            self._heartbeats = threading.Event()
            thread = threading.Thread(
                target=_beat_while_alive,
                args=(weakref.ref(self), self._heartbeats),
                name="dreamx-client-heartbeat",
                daemon=True,
            )
            thread.start()

    def _beat(self) -> float:
        """Send a HEARTBEAT if the client holds sessions and sent nothing for a heartbeat interval (never
        while a request holds the socket: its retries show the client alive). Returns the seconds until the
        next one may be due."""
        interval = self._heartbeat_s
        if interval is None:
            return 1.0
        due = self._last_send + interval - time.monotonic()
        if due > 0:
            return due
        if self.sessions and not self.closed and self._lock.acquire(blocking=False):
            try:
                if not self.closed:
                    self._try_send(encode(Message(MsgType.HEARTBEAT, 0)))
            finally:
                self._lock.release()
        return interval

    # -- typed calls ----------------------------------------------------------------------------------------
    def ping(self, timeout_s: float | None = None) -> dict[str, Any]:
        return self.request(MsgType.PING, timeout_s=timeout_s).meta

    def info(self) -> dict[str, Any]:
        """The server's facts and limits. Also sets ``max_message_bytes`` to the smallest frame limit on
        the way: the server's, and its broker's when there is one (-1: no limit)."""
        meta = self.request(MsgType.INFO).meta
        self.learn_limits(meta)
        return meta

    def learn_limits(self, meta: dict[str, Any]) -> None:
        """Adopt the limits an INFO reply ``meta`` reports: the smallest frame limit on the way (the
        server's, and its broker's when there is one; -1: no limit), and the server's heartbeat time-out
        (heartbeats at most a third of it apart; none to a server that does not take them)."""
        found = [(meta.get(k) or {}).get("max_message_bytes") for k in ("server", "broker")]
        found = [v for v in found if isinstance(v, int) and not isinstance(v, bool)]
        if found:
            self.max_message_bytes = -1 if all(v < 0 for v in found) else min(v for v in found if v >= 0)
        if self.config.heartbeat_s > 0:
            timeout = (meta.get("server") or {}).get("client_heartbeat_timeout_s")
            if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
                self._heartbeat_s = min(self.config.heartbeat_s, timeout / 3)
            else:
                self._heartbeat_s = None  # a server from before heartbeats would answer each with an ERROR

    def open(self, specs: list[SceneSpec], outputs: tuple[str, ...] = ("rgb",)) -> OpenResult:
        reply = self.request(
            MsgType.OPEN,
            {"scenes": [s.to_meta() for s in specs], "outputs": list(outputs)},
            _first_frames(specs),
        )
        self._hold(reply.meta["sessions"])
        return OpenResult(
            list(reply.meta["sessions"]), reply.arrays, [SceneInfo.from_dict(s) for s in reply.meta["scenes"]]
        )

    def reset(
        self, sessions: list[int], specs: list[SceneSpec], outputs: tuple[str, ...] = ("rgb",)
    ) -> OpenResult:
        reply = self.request(
            MsgType.RESET,
            {"sessions": list(sessions), "scenes": [s.to_meta() for s in specs], "outputs": list(outputs)},
            _first_frames(specs),
        )
        return OpenResult(
            list(reply.meta["sessions"]), reply.arrays, [SceneInfo.from_dict(s) for s in reply.meta["scenes"]]
        )

    def step(
        self,
        sessions: list[int],
        relative_poses: np.ndarray,
        events: list[list[list[EventRecord]]] | None = None,
        outputs: tuple[str, ...] = ("rgb",),
        frames: str = "last",
        resets: dict[int, SceneSpec] | None = None,
    ) -> StepResult:
        """Advance ``sessions`` by ``relative_poses [B, T, K, 4, 4]`` (T chunks in a row, usually 1) with
        ``events[b][t]``; rows in ``resets`` start a new scene instead of stepping (T must be 1)."""
        rel = np.ascontiguousarray(relative_poses, dtype=np.float64)
        meta: dict[str, Any] = {"sessions": list(sessions), "outputs": list(outputs), "frames": frames}
        if events is not None and any(e for row in events for e in row):
            meta["events"] = _events_meta(events)
        if resets:
            meta["resets"] = [[int(r), spec.to_meta()] for r, spec in resets.items()]
        reply = self.request(MsgType.STEP, meta, {"relative_poses": rel})
        scenes = {int(r): SceneInfo.from_dict(s) for r, s in reply.meta.get("scenes", [])}
        return StepResult(reply.arrays, scenes)

    def check_events(self, sessions: list[int], events: list[list[list[EventRecord]]]) -> None:
        """Raise ``ServerError`` (code ``bad_event``) if a session's world cannot carry out its
        ``events[b][t]``, as ``step`` would, but step nothing."""
        self.request(MsgType.CHECK, {"sessions": list(sessions), "events": _events_meta(events)})

    def fork(self, session: int, count: int = 1) -> list[int]:
        forks = list(self.request(MsgType.FORK, {"session": session, "count": count}).meta["sessions"])
        self._hold(forks)
        return forks

    def close_sessions(self, sessions: list[int], timeout_s: float | None = None) -> None:
        if sessions:
            self.request(MsgType.CLOSE, {"sessions": list(sessions)}, timeout_s=timeout_s)
            self.sessions.difference_update(sessions)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._heartbeats is not None:
                self._heartbeats.set()
            with self._lock:
                self._sock.close(linger=0)

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _beat_while_alive(client_ref: weakref.ref, stop: threading.Event) -> None:
    """The heartbeat thread: holds only a weak reference, so a client dropped without close() still goes
    (and its server then frees its sessions when the heartbeats stop)."""
    wait = 0.0
    while not stop.wait(wait):
        client = client_ref()
        if client is None or client.closed:
            return
        wait = max(0.01, client._beat())
        del client


def _events_meta(events: list[list[list[EventRecord]]]) -> list:
    return [[[ev.to_dict() for ev in evs] for evs in row] for row in events]


def _first_frames(specs: list[SceneSpec]) -> dict[str, np.ndarray]:
    if not any(s.first_frame is not None for s in specs):
        return {}
    shape = next(s.first_frame.shape for s in specs if s.first_frame is not None)
    return {
        "first_frames": np.stack(
            [np.zeros(shape, np.uint8) if s.first_frame is None else s.first_frame for s in specs]
        ).astype(np.uint8)
    }
