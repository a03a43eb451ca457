"""``SimulatorClient``: the DEALER side of the simulator protocol (``world_model.serve.protocol``).

Each call sends one request and waits for its reply. While waiting, the client re-sends the same request
id every ``retry_interval_s``; the server answers a retry of a finished request with the cached reply and
a retry of a request still being generated with a PING, so retries never repeat work and a slow batch is
not mistaken for a dead server. When nothing at all comes back for ``timeout_s`` (default 5 s) the call
raises :class:`ServerUnavailable` naming the address. Calls never hang. A request the server could not
receive (a frame over its ``max_message_bytes``, which ZeroMQ there drops without an answer) is refused
before sending with :class:`RequestTooLarge`. One client is one identity: the sessions it opens belong
to it. It is not thread-safe; use one client per thread.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from world_model.backend import SceneInfo
from world_model.events import EventRecord
from world_model.serve.addresses import check_public_key, curve_keypair
from world_model.serve.protocol import Message, MsgType, ProtocolError, decode, encode
from world_model.serve.requests import SceneSpec


class ServerUnavailable(ConnectionError):
    """The simulator server did not answer in time (it is gone, or never started)."""


class RequestTooLarge(ValueError):
    """A request with a frame (an array) over the server's ``max_message_bytes``: refused before sending,
    because ZeroMQ at the server would drop it and close the connection without an answer."""


class ServerError(RuntimeError):
    """The server answered with an ERROR. ``code`` is a ``world_model.serve.protocol.ErrorCode`` value."""

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
            return True
        except zmq.Again:
            return False

    # -- typed calls ----------------------------------------------------------------------------------------
    def ping(self, timeout_s: float | None = None) -> dict[str, Any]:
        return self.request(MsgType.PING, timeout_s=timeout_s).meta

    def info(self) -> dict[str, Any]:
        """The server's facts and limits. Also sets ``max_message_bytes`` to the smallest frame limit on
        the way: the server's, and its broker's when there is one (-1: no limit)."""
        meta = self.request(MsgType.INFO).meta
        found = [(meta.get(k) or {}).get("max_message_bytes") for k in ("server", "broker")]
        found = [v for v in found if isinstance(v, int) and not isinstance(v, bool)]
        if found:
            self.max_message_bytes = -1 if all(v < 0 for v in found) else min(v for v in found if v >= 0)
        return meta

    def open(self, specs: list[SceneSpec], outputs: tuple[str, ...] = ("rgb",)) -> OpenResult:
        reply = self.request(
            MsgType.OPEN,
            {"scenes": [s.to_meta() for s in specs], "outputs": list(outputs)},
            _first_frames(specs),
        )
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
        return list(self.request(MsgType.FORK, {"session": session, "count": count}).meta["sessions"])

    def close_sessions(self, sessions: list[int], timeout_s: float | None = None) -> None:
        if sessions:
            self.request(MsgType.CLOSE, {"sessions": list(sessions)}, timeout_s=timeout_s)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._sock.close(linger=0)

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
