"""The simulator server: a ZeroMQ ROUTER that serves many sessions of one ``WorldModel`` backend.

- Sessions belong to the client identity that opened them; other clients cannot see or touch them.
- STEP requests from all clients are batched into one ``generate`` call: a batch is sent when it holds
  ``max_batch`` sessions, when every recently active client has a step waiting, or after ``max_wait_ms``.
- Every request id's reply is cached per client, so a client can retry safely: a retry of a finished
  request gets the same reply, a retry of a request still being generated gets a PING ("still working").
- Anything malformed, hostile or of the wrong protocol version gets an ERROR reply; serving goes on.
- Binds loopback, ``ipc://`` or ``inproc://`` only, unless CURVE keys are configured.
- Sessions whose client has been silent for ``idle_timeout_s`` are closed; at most ``max_sessions`` live.
- With ``parent_pid`` set, the server stops when that process dies (no orphaned backends).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import zmq

from world_model.backend import WorldModel
from world_model.backends import DEFAULT_BACKEND, make_backend
from world_model.events import EVENT_MENU, vocabulary
from world_model.geometry import LOOK_COMBOS, MOVE_COMBOS, KeyMap
from world_model.serve import requests as rq
from world_model.serve.batching import BatchPolicy, StepBatcher
from world_model.serve.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    Message,
    MsgType,
    ProtocolError,
    decode,
    encode,
    error_message,
)
from world_model.serve.sessions import ClientState, SessionError, SessionTable
from world_model.serve.worker import BackendWorker, Job

log = logging.getLogger("world_model.serve")


@dataclass
class ServerConfig:
    address: str = "tcp://127.0.0.1:5555"
    backend: str = DEFAULT_BACKEND
    backend_kwargs: dict[str, Any] = field(default_factory=dict)  # fields of the backend's config
    max_batch: int = 64  # sessions per generate call
    max_wait_ms: float = 2.0  # longest a STEP waits for others to join its batch
    active_window_ms: float = 250.0  # clients that stepped this recently are waited for
    max_sessions: int = 256
    idle_timeout_s: float = 600.0
    reply_cache_per_client: int = 4
    max_message_bytes: int = 256 << 20
    parent_pid: int | None = None
    curve_secret_key: str | None = None  # z85; required to bind beyond loopback
    curve_public_key: str | None = None
    limits: rq.Limits = field(default_factory=rq.Limits)


def check_bind_address(address: str, curve: bool) -> None:
    """Refuse to listen beyond this machine unless CURVE encryption is on."""
    if address.startswith(("ipc://", "inproc://")):
        return
    if not address.startswith("tcp://"):
        raise ValueError(
            f"unsupported address {address!r}; use tcp://127.0.0.1:PORT, ipc://PATH or inproc://NAME"
        )
    host = address[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", "::1") or host.startswith("127.") or curve:
        return
    raise ValueError(
        f"refusing to bind {address!r}: only loopback, ipc:// and inproc:// are allowed without "
        "CURVE keys; set curve_secret_key/curve_public_key (zmq.curve_keypair()) to serve remotely"
    )


class SimulatorServer:
    """Serve ``backend``, or ``make_backend(config.backend, **config.backend_kwargs)``, on ``config.address``.
    ``serve_forever()`` blocks until ``stop()`` (from any thread) or the parent process dies."""

    def __init__(
        self, config: ServerConfig, backend: WorldModel | None = None, context: zmq.Context | None = None
    ) -> None:
        check_bind_address(config.address, config.curve_secret_key is not None)
        self.config = config
        if backend is not None:
            self._factory = lambda: backend
        else:
            self._factory = lambda: make_backend(config.backend, **config.backend_kwargs)
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.table = SessionTable(config.max_sessions, config.idle_timeout_s, config.reply_cache_per_client)
        self.batcher = StepBatcher(BatchPolicy(config.max_batch, config.max_wait_ms, config.active_window_ms))
        self.stats: dict[str, Any] = {"messages": 0, "errors": 0, "steps": 0, "generate_calls": 0}
        self.batch_sizes: dict[int, int] = {}
        self._started = time.time()

    def stop(self) -> None:
        self._stop.set()

    # -- main loop ------------------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        cfg = self.config
        sock = self._sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting client keeps its identity and sessions
        sock.setsockopt(zmq.MAXMSGSIZE, cfg.max_message_bytes)
        if cfg.curve_secret_key:
            sock.curve_server = True
            sock.curve_secretkey = cfg.curve_secret_key.encode()
            sock.curve_publickey = (cfg.curve_public_key or "").encode()
        sock.bind(cfg.address)
        wake_r, wake_w = os.pipe()
        self.worker = BackendWorker(self._factory, cfg.max_batch, wake_w)
        self.worker.start()
        self.worker.ready.wait()
        if self.worker.start_error is not None:
            sock.close()
            os.close(wake_r)
            os.close(wake_w)
            err = self.worker.start_error
            raise RuntimeError(f"backend {cfg.backend!r} failed to start: {err}") from err
        if cfg.parent_pid is not None:
            threading.Thread(target=self._watch_parent, name="dreamx-parent-watchdog", daemon=True).start()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake_r, zmq.POLLIN)
        log.info("serving backend %s on %s", self.worker.backend_info.name, cfg.address)
        self.ready.set()
        last_sweep = time.monotonic()
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(self.batcher.timeout_ms()))
                if sock in events:
                    for _ in range(1000):  # drain what is there, then batch
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_frames(frames)
                if wake_r in events:
                    os.read(wake_r, 4096)
                while not self.worker.done.empty():
                    job, result, error = self.worker.done.get()
                    job.then(result, error)
                batch = self.batcher.take(self.table.active(cfg.active_window_ms / 1000))
                if batch is not None:
                    self._generate(batch)
                if time.monotonic() - last_sweep > min(1.0, cfg.idle_timeout_s / 4):
                    last_sweep = time.monotonic()
                    self._expire_idle()
        finally:
            for p in self.batcher.pending:
                self._reply(
                    p.identity, error_message(p.request_id, ErrorCode.SHUTTING_DOWN, "server stopping")
                )
            self.worker.stop()
            sock.close(linger=0)
            os.close(wake_r)
            os.close(wake_w)
            if cfg.address.startswith("ipc://") and os.path.exists(cfg.address[len("ipc://") :]):
                os.unlink(cfg.address[len("ipc://") :])  # also when the launcher died without cleaning up
            log.info("server on %s stopped", cfg.address)

    def _watch_parent(self) -> None:
        while not self._stop.wait(0.5):
            if os.getppid() != self.config.parent_pid:  # re-parented: the launching process is gone
                log.warning("parent process %s is gone; stopping", self.config.parent_pid)
                self._stop.set()

    # -- messages -------------------------------------------------------------------------------------------
    def _send(self, identity: bytes, msg: Message) -> list:
        frames = encode(msg)
        self._sock.send_multipart([identity, *frames], copy=False)
        return frames

    def _reply(self, identity: bytes, msg: Message) -> None:
        if msg.type == MsgType.ERROR:
            self.stats["errors"] += 1
        self.table.remember(identity, msg.request_id, self._send(identity, msg))

    def _on_frames(self, frames: list[bytes]) -> None:
        self.stats["messages"] += 1
        identity, body = frames[0], frames[1:]
        try:
            msg = decode(body)
        except ProtocolError as exc:
            log.debug("undecodable message: %s", exc)
            self.stats["errors"] += 1
            self._send(identity, error_message(exc.request_id, exc.code, str(exc)))
            return
        client = self.table.seen(identity)
        if msg.request_id in client.cache:  # a retry of a finished request: same answer, no new work
            self._sock.send_multipart([identity, *client.cache[msg.request_id]], copy=False)
            return
        if msg.request_id in client.inflight:  # a retry of a request still in progress
            self._send(identity, Message(MsgType.PING, msg.request_id, {"in_progress": True}))
            return
        handler = {
            MsgType.OPEN: self._open,
            MsgType.RESET: self._open,
            MsgType.STEP: self._step,
            MsgType.FORK: self._fork,
            MsgType.CLOSE: self._close,
            MsgType.INFO: self._info,
            MsgType.PING: self._ping,
        }.get(msg.type)
        try:
            if handler is None:
                raise rq.BadRequest(
                    f"{msg.type.name} is a reply type; send OPEN, RESET, STEP, FORK, CLOSE, INFO, PING"
                )
            handler(identity, client, msg)
        except rq.BadRequest as exc:
            self._reply(identity, error_message(msg.request_id, ErrorCode.BAD_REQUEST, str(exc)))
        except SessionError as exc:
            self._reply(identity, error_message(msg.request_id, exc.code, str(exc)))

    def _submit(
        self, identity: bytes, client: ClientState, msg: Message, fn: Any, handles: list[int]
    ) -> None:
        """Run ``fn`` on the backend thread and reply; on failure, ``handles`` are released."""
        client.inflight.add(msg.request_id)

        def then(result: Any, error: BaseException | None) -> None:
            if error is None:
                self._reply(identity, result)
                return
            self.table.release(identity, handles)
            code = ErrorCode.UNKNOWN_SESSION if isinstance(error, KeyError) else ErrorCode.BACKEND
            self._reply(identity, error_message(msg.request_id, code, f"{type(error).__name__}: {error}"))

        self.worker.submit(Job(fn, then))

    def _open(self, identity: bytes, client: ClientState, msg: Message) -> None:
        """OPEN new sessions, or RESET existing ones into new scenes (same handles)."""
        specs = rq.scene_specs(msg.meta, msg.arrays, self.config.limits)
        outputs = rq.output_list(msg.meta)
        if msg.type == MsgType.RESET:
            handles = rq.session_list(msg.meta, limit=self.config.limits.max_sessions_per_request)
            self.table.check_owned(client, handles)
            if len(specs) != len(handles):
                raise rq.BadRequest(f"RESET lists {len(handles)} sessions but {len(specs)} scenes")
        else:
            handles = self.table.allocate(client, len(specs))
        client.last_step = time.monotonic()
        rid = msg.request_id
        self._submit(
            identity, client, msg, lambda: self.worker.open_sessions(handles, specs, outputs, rid), handles
        )

    def _step(self, identity: bytes, client: ClientState, msg: Message) -> None:
        req = rq.step_request(msg.meta, msg.arrays, self.config.limits)
        self.table.check_owned(client, req.sessions)
        client.inflight.add(msg.request_id)
        client.last_step = time.monotonic()
        self.batcher.add(identity, msg.request_id, req)

    def _fork(self, identity: bytes, client: ClientState, msg: Message) -> None:
        handle = rq.session_list({"sessions": [msg.meta.get("session")]})[0]
        self.table.check_owned(client, [handle])
        count = msg.meta.get("count", 1)
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 1 <= count <= self.config.max_sessions
        ):
            raise rq.BadRequest(f"FORK 'count' must be an integer in [1, {self.config.max_sessions}]")
        handles = self.table.allocate(client, count)
        rid = msg.request_id
        self._submit(identity, client, msg, lambda: self.worker.fork(handle, handles, rid), handles)

    def _close(self, identity: bytes, client: ClientState, msg: Message) -> None:
        handles = rq.session_list(msg.meta, limit=self.config.max_sessions)
        self.table.check_owned(client, handles)
        self.table.release(identity, handles)
        rid = msg.request_id
        self._submit(identity, client, msg, lambda: self.worker.close_sessions(handles, rid), [])

    def _ping(self, identity: bytes, client: ClientState, msg: Message) -> None:
        meta = {"time": time.time(), "sessions": sorted(client.sessions)}
        self._reply(identity, Message(MsgType.REPLY, msg.request_id, meta))

    def _info(self, identity: bytes, client: ClientState, msg: Message) -> None:
        cfg, info = self.config, self.worker.backend_info
        meta = {
            "protocol_version": PROTOCOL_VERSION,
            "backend": {
                "name": info.name,
                "height": info.height,
                "width": info.width,
                "vfov_deg": info.vfov_deg,
                "checkpoint": info.checkpoint,
                "outputs": list(info.outputs),
                "extra": info.extra,
            },
            "keymap": KeyMap().to_dict(),
            "move_combos": list(MOVE_COMBOS),
            "look_combos": list(LOOK_COMBOS),
            "event_menu": list(EVENT_MENU),
            "event_vocabulary": vocabulary(),
            "limits": asdict(cfg.limits),
            "server": {
                k: getattr(cfg, k) for k in ("max_batch", "max_wait_ms", "max_sessions", "idle_timeout_s")
            },
            "stats": dict(
                self.stats,
                sessions=self.table.n_sessions,
                clients=len(self.table.clients),
                batch_sizes={str(k): v for k, v in self.batch_sizes.items()},
                uptime_s=time.time() - self._started,
            ),
        }
        self._reply(identity, Message(MsgType.REPLY, msg.request_id, meta))

    # -- batches and housekeeping ---------------------------------------------------------------------------
    def _generate(self, batch: list) -> None:
        def then(result: Any, error: BaseException | None) -> None:
            self.batcher.busy = False
            if error is not None:
                log.warning("generate failed for a batch of %d request(s): %s", len(batch), error)
                for p in batch:
                    text = f"{type(error).__name__}: {error}"
                    self._reply(p.identity, error_message(p.request_id, ErrorCode.BACKEND, text))
                return
            replies, sizes = result
            self.stats["steps"] += sum(len(p.request.sessions) * p.request.horizon for p in batch)
            self.stats["generate_calls"] += len(sizes)
            for s in sizes:
                self.batch_sizes[s] = self.batch_sizes.get(s, 0) + 1
            for identity, msg in replies:
                self._reply(identity, msg)

        self.worker.submit(Job(lambda: self.worker.step_batch(batch), then))

    def _expire_idle(self) -> None:
        handles = self.table.expire_idle()
        if handles:
            log.info(
                "closing %d session(s) of silent clients (idle_timeout_s=%g)",
                len(handles),
                self.config.idle_timeout_s,
            )
            self.worker.submit(Job(lambda: self.worker.close_sessions(handles, 0), lambda r, e: None))
