"""The simulator server: a ZeroMQ ROUTER that serves many sessions of one ``WorldModel`` backend.

- Sessions belong to the client identity that opened them; other clients cannot see or touch them.
- STEP requests from all clients are batched into one ``generate`` call: a batch is sent when it holds
  ``max_batch`` sessions, when every recently active client has a step waiting, or after ``max_wait_ms``.
- Every request id's reply is cached per client, so a client can retry safely: a retry of a finished
  request gets the same reply, a retry of a request still being generated gets a PING ("still working").
- Anything malformed, hostile or of the wrong protocol version gets an ERROR reply; serving goes on.
- Binds loopback, ``ipc://`` or ``inproc://`` only, unless CURVE keys are configured; with CURVE,
  ``client_public_keys`` (if given) lists the only client keys admitted.
- Sessions whose client sent no request for ``idle_timeout_s`` are closed; so are, sooner, those of a
  client that heartbeats (``SimulatorClient`` does while it holds sessions) once it has been silent for
  ``client_heartbeat_timeout_s`` (30 s; a killed env's sessions do not wait out the 600 s). At most
  ``max_sessions`` live, at most ``max_sessions_per_client`` of them one client's (so one client cannot
  take them all).
- Byte budgets (``world_model.serve.budgets``): a request whose reply would exceed ``max_reply_bytes`` is
  refused up front (``too_large``); one client's work in progress and cached replies are bounded by
  ``max_client_bytes``, and at most ``send_queue_per_client`` replies wait in ZeroMQ for a client that
  does not read (later ones are dropped; its retry gets the cached reply).
- With ``parent_pid`` set, the server stops when that process dies (no orphaned backends).
- With ``broker`` set it is a *worker* behind a load-balancing broker (``world_model.serve.broker``): it
  connects to the broker's ``worker_address`` instead of binding ``address``, registers, heartbeats, and
  numbers its sessions from the handle base the broker gives it (``world_model.serve.link``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import zmq

from world_model.backend import WorldModel
from world_model.backend_registry import DEFAULT_BACKEND, make_backend
from world_model.events import EVENT_MENU, vocabulary
from world_model.geometry import LOOK_COMBOS, MOVE_COMBOS, KeyMap
from world_model.serve import budgets
from world_model.serve.batching import BatchPolicy, StepBatcher
from world_model.serve.link import BrokerLink
from world_model.serve.sessions import ClientState, ClientTable, SessionError
from world_model.serve.threads import ThreadTuner
from world_model.serve.worker import BackendWorker, Job
from world_model.wire import requests as rq
from world_model.wire.addresses import (
    bind_router,
    check_allow_list,
    check_bind_address,
    check_public_key,
    curve_keypair,
    start_allow_lists,
)
from world_model.wire.protocol import (
    PROTOCOL_VERSION,
    REQUEST_NAMES,
    ErrorCode,
    Message,
    MsgType,
    ProtocolError,
    decode,
    encode,
    error_message,
)

log = logging.getLogger("world_model.serve")


@dataclass
class ServerConfig:
    address: str = "tcp://127.0.0.1:5555"
    backend: str = DEFAULT_BACKEND
    backend_kwargs: dict[str, Any] = field(default_factory=dict)  # fields of the backend's config
    max_batch: int = BatchPolicy.max_batch  # the batching policy's fields: see BatchPolicy
    max_wait_ms: float = BatchPolicy.max_wait_ms
    active_window_ms: float = BatchPolicy.active_window_ms
    max_sessions: int = 256
    max_sessions_per_client: int = 128
    idle_timeout_s: float = 600.0  # a client's sessions close this long after its last request
    client_heartbeat_timeout_s: float = 30.0  # ... or this long after a heartbeating client went silent
    reply_cache_per_client: int = 4
    max_reply_bytes: int = 64 << 20  # larger replies are refused up front (too_large): split the request
    max_client_bytes: int = 256 << 20  # one client's requests in progress and cached replies
    send_queue_per_client: int = 4  # replies ZeroMQ queues for a client that does not read (SNDHWM)
    max_message_bytes: int = 256 << 20
    parent_pid: int | None = None
    curve_secret_key: str | None = None  # z85; required to bind beyond loopback
    curve_public_key: str | None = None  # (a worker: its own keypair, listed in the broker's allow-list)
    client_public_keys: list[str] = field(default_factory=list)  # z85 keys of clients admitted; [] = any
    limits: rq.Limits = field(default_factory=rq.Limits)
    # a backend on the CPU fits its torch threads to the cores other processes leave free, re-checked every
    # few seconds (world_model.serve.threads); not when backend_kwargs sets threads (kept as given). Off by
    # default: the thread count changes the learned model's frames, so with it the same seed's frames
    # depend on the machine's load
    adapt_threads: bool = False
    # worker role: connect to a broker instead of binding `address`
    broker: str | None = None  # the broker's worker_address, e.g. tcp://hostA:5556
    broker_public_key: str | None = None  # z85; needed when the broker is on another host
    worker_name: str | None = None  # in the broker's INFO and in errors; default HOST:PID

    def __post_init__(self) -> None:
        for name in (
            "max_sessions_per_client",
            "max_reply_bytes",
            "max_client_bytes",
            "send_queue_per_client",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServerConfig.{name} must be a positive integer, got {value!r}")
        for name in ("idle_timeout_s", "client_heartbeat_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"ServerConfig.{name} must be a positive number of seconds, got {value!r}")


class SimulatorServer:
    """Serve ``backend``, or ``make_backend(config.backend, **config.backend_kwargs)``, on ``config.address``.
    ``serve_forever()`` blocks until ``stop()`` (from any thread) or the parent process dies."""

    def __init__(
        self, config: ServerConfig, backend: WorldModel | None = None, context: zmq.Context | None = None
    ) -> None:
        self.link: BrokerLink | None = None
        self._curve = curve_keypair(config.curve_secret_key, config.curve_public_key)
        check_allow_list("client_public_keys", config.client_public_keys, self._curve is not None)
        if config.broker is None:
            check_bind_address(config.address, self._curve is not None)
        elif config.client_public_keys:
            raise ValueError("a worker's clients come through its broker: set client_public_keys there")
        else:
            curve = None
            if config.broker_public_key is not None:
                check_public_key("broker_public_key", config.broker_public_key)
                own = (
                    self._curve[::-1] if self._curve is not None else (None, None)
                )  # none: an ephemeral pair
                curve = (config.broker_public_key, *own)
            ctx = context or zmq.Context.instance()
            self.link = BrokerLink(ctx, config.broker, curve, config.max_message_bytes)
        self.config = config
        self.name = config.worker_name or f"{socket.gethostname()}:{os.getpid()}"
        if backend is not None:
            self._factory = lambda: backend
        else:
            self._factory = lambda: make_backend(config.backend, **config.backend_kwargs)
        # the ZAP handler of an allow-list is one per context: a private one keeps it to this server
        self._own_context = bool(config.client_public_keys)
        self._ctx = zmq.Context() if self._own_context else context or zmq.Context.instance()
        self._stop = threading.Event()
        self._stop_reason = "it was stopped"  # what a worker's goodbye tells the broker
        self.ready = threading.Event()
        self.table = self._new_table()
        self.batcher = StepBatcher(BatchPolicy(config.max_batch, config.max_wait_ms, config.active_window_ms))
        self.stats: dict[str, Any] = {"messages": 0, "errors": 0, "steps": 0, "generate_calls": 0}
        self.batch_sizes: dict[int, int] = {}
        self._started = time.time()
        self._generation = 0  # bumped when a worker loses its broker: late results are dropped
        self._reconnect = False
        self._unreplied = 0  # sessions opened (+) or closed (-) in the table whose reply is not sent yet

    def stop(self) -> None:
        self._stop.set()

    def thread_tuner(self) -> type[ThreadTuner] | None:
        """What makes the backend worker's ``ThreadTuner``: none with ``adapt_threads`` off or ``threads``
        given in ``backend_kwargs`` (an explicit count is kept)."""
        cfg = self.config
        if not cfg.adapt_threads or cfg.backend_kwargs.get("threads"):
            return None
        return ThreadTuner

    def _new_table(self, first_handle: int = 1) -> ClientTable:
        cfg = self.config
        return ClientTable(
            cfg.max_sessions,
            cfg.idle_timeout_s,
            cfg.reply_cache_per_client,
            first_handle,
            cfg.max_client_bytes,
            cfg.max_sessions_per_client,
            cfg.client_heartbeat_timeout_s,
        )

    # -- main loop ------------------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        cfg = self.config
        sock = auth = None
        if self.link is None:
            if cfg.client_public_keys:
                auth = start_allow_lists(self._ctx, {"dreamx-clients": cfg.client_public_keys})
            zap = b"dreamx-clients" if auth is not None else None
            sock = self._sock = bind_router(
                self._ctx, cfg.address, cfg.max_message_bytes, self._curve, zap, cfg.send_queue_per_client
            )
        wake_r, wake_w = os.pipe()
        self.worker = BackendWorker(self._factory, cfg.max_batch, wake_w, self.thread_tuner())
        self.worker.start()
        self.worker.ready.wait()
        if self.worker.start_error is not None:
            if sock is not None:
                sock.close()
            if auth is not None:
                auth.stop()
            if self._own_context:
                self._ctx.term()
            os.close(wake_r)
            os.close(wake_w)
            err = self.worker.start_error
            raise RuntimeError(f"backend {cfg.backend!r} failed to start: {err}") from err
        if self.link is not None:  # register only once the backend can serve
            sock = self._sock = self.link.connect()
        if cfg.parent_pid is not None:
            threading.Thread(target=self._watch_parent, name="dreamx-parent-watchdog", daemon=True).start()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake_r, zmq.POLLIN)
        where = cfg.address if self.link is None else f"the broker at {cfg.broker} (worker {self.name})"
        log.info("serving backend %s on %s", self.worker.backend_info.name, where)
        self.ready.set()
        last_sweep = time.monotonic()
        crash: Exception | None = None
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(self.batcher.timeout_ms()))
                if self._sock in events:
                    for _ in range(1000):  # drain what is there, then batch
                        try:
                            frames = self._sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_frames(frames)
                        if self._reconnect:
                            break
                if wake_r in events:
                    os.read(wake_r, 4096)
                while not self.worker.done.empty():
                    job, result, error = self.worker.done.get()
                    job.then(result, error)
                batch = self.batcher.take(self.table.active(cfg.active_window_ms / 1000))
                if batch is not None:
                    self._generate(batch)
                if self.link is not None:
                    if not self._reconnect and not self.link.tick(self._ready_meta(), self._beat_meta()):
                        self._lose_broker()
                    if self._reconnect:
                        poller.unregister(self._sock)
                        self._sock = self.link.connect()
                        poller.register(self._sock, zmq.POLLIN)
                        self._reconnect = False
                sweep_s = min(1.0, cfg.idle_timeout_s / 4, cfg.client_heartbeat_timeout_s / 4)
                if time.monotonic() - last_sweep > sweep_s:
                    last_sweep = time.monotonic()
                    self._expire_idle()
        except Exception as exc:
            crash = exc
            raise
        finally:
            for p in self.batcher.pending:
                self._reply(
                    p.identity, error_message(p.request_id, ErrorCode.SHUTTING_DOWN, "server stopping")
                )
            self.worker.stop()
            if self.link is not None:
                if crash is None:
                    self.link.goodbye("shut down", self._stop_reason)
                else:
                    self.link.goodbye("crashed", f"{type(crash).__name__}: {crash}")
            else:
                sock.close(linger=0)
            if auth is not None:
                auth.stop()
            if self._own_context:
                self._ctx.term()
            os.close(wake_r)
            os.close(wake_w)
            if cfg.address.startswith("ipc://") and os.path.exists(cfg.address[len("ipc://") :]):
                os.unlink(cfg.address[len("ipc://") :])  # also when the launcher died without cleaning up
            log.info("server on %s stopped", where)

    # -- worker role ----------------------------------------------------------------------------------------
    def _ready_meta(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "name": self.name,
            "backend": self._backend_facts(),
            "max_sessions": cfg.max_sessions,
            "max_batch": cfg.max_batch,
        }

    def _beat_meta(self) -> dict[str, Any]:
        # sessions as of the replies sent so far: the broker has seen exactly those when this arrives
        return {"sessions": self.table.n_sessions - self._unreplied, "pending": len(self.batcher.pending)}

    def _on_broker(self, body: list) -> None:
        try:
            msg = decode(body)
        except ProtocolError as exc:
            log.warning("undecodable message from the broker: %s", exc)
            return
        state = self.link.on_control(msg)
        if state == "registered":
            self.table = self._new_table(self.link.handle_base + 1)
        elif state == "lost":
            self._lose_broker()

    def _lose_broker(self) -> None:
        """Forget every session and client (the broker has told them their sessions are lost); the main
        loop then connects again with a fresh identity. Results of work in flight are dropped."""
        self._generation += 1
        self._unreplied = 0
        self.batcher.pending.clear()
        self.table = self._new_table()
        self.worker.submit(Job(self.worker.close_all, lambda r, e: None))
        self._reconnect = True

    def _watch_parent(self) -> None:
        while not self._stop.wait(0.5):
            if os.getppid() != self.config.parent_pid:  # re-parented: the launching process is gone
                log.warning("parent process %s is gone; stopping", self.config.parent_pid)
                self._stop_reason = f"its parent process {self.config.parent_pid} exited"
                self._stop.set()

    # -- messages -------------------------------------------------------------------------------------------
    def _send_frames(self, identity: bytes, frames: list) -> None:
        if self.link is not None:
            self.link.send([identity, *frames])  # never blocks; a lost reply is what client retries are for
        else:
            self._sock.send_multipart([identity, *frames], copy=False)

    def _send(self, identity: bytes, msg: Message) -> list:
        frames = encode(msg)
        self._send_frames(identity, frames)
        return frames

    def _reply(self, identity: bytes, msg: Message) -> None:
        if msg.type == MsgType.ERROR:
            self.stats["errors"] += 1
        self.table.remember(identity, msg.request_id, self._send(identity, msg))

    def _on_frames(self, frames: list[bytes]) -> None:
        identity, body = frames[0], frames[1:]
        if self.link is not None:
            if identity == b"":  # from the broker itself
                self._on_broker(body)
                return
            if not self.link.registered:
                return  # left over from a broker connection this worker has given up
        self.stats["messages"] += 1
        try:
            msg = decode(body)
        except ProtocolError as exc:
            log.debug("undecodable message: %s", exc)
            self.stats["errors"] += 1
            self._send(identity, error_message(exc.request_id, exc.code, str(exc)))
            return
        if msg.type == MsgType.HEARTBEAT:  # a client saying it is alive: no reply, no idle time-out reset
            self.table.heartbeat(identity)
            return
        client = self.table.seen(identity)
        if msg.request_id in client.cache:  # a retry of a finished request: same answer, no new work
            self._send_frames(identity, client.cache[msg.request_id])
            return
        if msg.request_id in client.inflight:  # a retry of a request still in progress
            self._send(identity, Message(MsgType.PING, msg.request_id, {"in_progress": True}))
            return
        handler = {
            MsgType.OPEN: self._open,
            MsgType.RESET: self._open,
            MsgType.STEP: self._step,
            MsgType.CHECK: self._check,
            MsgType.FORK: self._fork,
            MsgType.CLOSE: self._close,
            MsgType.INFO: self._info,
            MsgType.PING: self._ping,
        }.get(msg.type)
        try:
            if handler is None:
                raise rq.BadRequest(f"{msg.type.name} is not a request; send {REQUEST_NAMES}")
            handler(identity, client, msg)
        except budgets.TooLarge as exc:
            self._reply(identity, error_message(msg.request_id, exc.code, str(exc)))
        except rq.BadRequest as exc:
            self._reply(identity, error_message(msg.request_id, ErrorCode.BAD_REQUEST, str(exc)))
        except SessionError as exc:
            self._reply(identity, error_message(msg.request_id, exc.code, str(exc)))
        except Exception as exc:  # a fault of the server's own: this request fails, the server serves on
            log.exception("internal error handling %s request %d", msg.type.name, msg.request_id)
            text = f"internal server error handling {msg.type.name}: {type(exc).__name__}: {exc}"
            self._reply(identity, error_message(msg.request_id, ErrorCode.INTERNAL, text[:500]))

    def _submit(
        self,
        identity: bytes,
        client: ClientState,
        msg: Message,
        fn: Any,
        handles: list[int],
        booked: int = 0,
    ) -> None:
        """Run ``fn`` on the backend thread and reply; on failure, ``handles`` are released. ``booked``:
        sessions the table already counts (+) or no longer counts (-) for this request before its reply."""
        client.inflight.setdefault(msg.request_id, 0)
        generation = self._generation
        self._unreplied += booked

        def then(result: Any, error: BaseException | None) -> None:
            if generation != self._generation:
                return  # a worker that lost its broker: this client and session are gone
            self._unreplied -= booked
            if error is None:
                self._reply(identity, result)
                return
            self.table.release(identity, handles)
            code = ErrorCode.UNKNOWN_SESSION if isinstance(error, KeyError) else ErrorCode.BACKEND
            self._reply(identity, error_message(msg.request_id, code, f"{type(error).__name__}: {error}"))

        self.worker.submit(Job(fn, then))

    def _admit(self, client: ClientState, msg: Message, reply_bytes: int) -> None:
        """Check the byte budgets for a request whose reply will be ``reply_bytes`` (TooLarge if over), and
        book what it holds (its arrays and its reply) until the reply is sent."""
        budgets.check_reply(reply_bytes, self.config.max_reply_bytes, msg.type.name)
        held = reply_bytes + sum(a.nbytes for a in msg.arrays.values())
        budgets.check_client(client.inflight_bytes, held, self.config.max_client_bytes)
        client.inflight[msg.request_id] = held

    def _open(self, identity: bytes, client: ClientState, msg: Message) -> None:
        """OPEN new sessions, or RESET existing ones into new scenes (same handles)."""
        specs = rq.scene_specs(msg.meta, msg.arrays, self.config.limits)
        outputs = rq.output_list(msg.meta)
        info = self.worker.backend_info
        if msg.type == MsgType.OPEN and any(s.relocate for s in specs):
            raise rq.BadRequest("relocate moves the camera of an open session: send it in a RESET")
        if msg.type == MsgType.RESET:
            handles = rq.session_list(msg.meta, limit=self.config.limits.max_sessions_per_request)
            self.table.check_owned(client, handles)
            if len(specs) != len(handles):
                raise rq.BadRequest(f"RESET lists {len(handles)} sessions but {len(specs)} scenes")
        self._admit(client, msg, budgets.open_reply_bytes(specs, outputs, info.height, info.width))
        if msg.type == MsgType.OPEN:
            handles = self.table.allocate(client, len(specs))
        client.last_step = time.monotonic()
        rid = msg.request_id
        booked = len(handles) if msg.type == MsgType.OPEN else 0
        job = partial(self.worker.open_sessions, handles, specs, outputs, rid)
        self._submit(identity, client, msg, job, handles, booked)

    def _step(self, identity: bytes, client: ClientState, msg: Message) -> None:
        req = rq.step_request(msg.meta, msg.arrays, self.config.limits)
        self.table.check_owned(client, req.sessions)
        info = self.worker.backend_info
        self._admit(client, msg, budgets.step_reply_bytes(req, info.height, info.width))
        client.last_step = time.monotonic()
        self.batcher.add(identity, msg.request_id, req)

    def _check(self, identity: bytes, client: ClientState, msg: Message) -> None:
        """CHECK: whether the sessions' worlds would carry out these events, asked on the backend thread
        (where the worlds live); nothing is stepped."""
        sessions, events = rq.check_request(msg.meta, self.config.limits)
        self.table.check_owned(client, sessions)
        self._submit(identity, client, msg, partial(self.worker.check, sessions, events, msg.request_id), [])

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
        self._submit(identity, client, msg, lambda: self.worker.fork(handle, handles, rid), handles, count)

    def _close(self, identity: bytes, client: ClientState, msg: Message) -> None:
        handles = rq.session_list(msg.meta, limit=self.config.max_sessions)
        self.table.check_owned(client, handles)
        self.table.release(identity, handles)
        rid = msg.request_id
        job = partial(self.worker.close_sessions, handles, rid)
        self._submit(identity, client, msg, job, [], -len(handles))

    def _ping(self, identity: bytes, client: ClientState, msg: Message) -> None:
        meta = {"time": time.time(), "sessions": sorted(client.sessions)}
        self._reply(identity, Message(MsgType.REPLY, msg.request_id, meta))

    def _backend_facts(self) -> dict[str, Any]:
        info = self.worker.backend_info
        return {
            "name": info.name,
            "height": info.height,
            "width": info.width,
            "vfov_deg": info.vfov_deg,
            "checkpoint": info.checkpoint,
            "outputs": list(info.outputs),
            "extra": info.extra,
        }

    def _info(self, identity: bytes, client: ClientState, msg: Message) -> None:
        cfg = self.config
        meta = {
            "protocol_version": PROTOCOL_VERSION,
            "backend": self._backend_facts(),
            "keymap": KeyMap().to_dict(),
            "move_combos": list(MOVE_COMBOS),
            "look_combos": list(LOOK_COMBOS),
            "event_menu": list(EVENT_MENU),
            "event_vocabulary": vocabulary(),
            "limits": asdict(cfg.limits),
            "server": {
                k: getattr(cfg, k)
                for k in (
                    "max_batch",
                    "max_wait_ms",
                    "max_sessions",
                    "max_sessions_per_client",
                    "idle_timeout_s",
                    "client_heartbeat_timeout_s",
                    "max_reply_bytes",
                    "max_client_bytes",
                    "max_message_bytes",
                )
            },
            "stats": dict(
                self.stats,
                sessions=self.table.n_sessions,
                clients=len(self.table.clients),
                batch_sizes={str(k): v for k, v in self.batch_sizes.items()},
                uptime_s=time.time() - self._started,
            ),
        }
        if self.link is not None:
            meta["server"]["worker_name"] = self.name
        self._reply(identity, Message(MsgType.REPLY, msg.request_id, meta))

    # -- batches and housekeeping ---------------------------------------------------------------------------
    def _generate(self, batch: list) -> None:
        generation = self._generation

        def then(result: Any, error: BaseException | None) -> None:
            self.batcher.finished()
            if generation != self._generation:
                return
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
                "closing %d session(s) of idle or silent clients (idle_timeout_s=%g, "
                "client_heartbeat_timeout_s=%g)",
                len(handles),
                self.config.idle_timeout_s,
                self.config.client_heartbeat_timeout_s,
            )
            self.worker.submit(Job(lambda: self.worker.close_sessions(handles, 0), lambda r, e: None))
            if self.link is not None and self.link.registered:
                # the broker counts each client's sessions (its per-client quota): tell it which are gone
                self.link.beat(dict(self._beat_meta(), expired=handles))
