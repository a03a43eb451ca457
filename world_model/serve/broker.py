"""Scale-out: a ZeroMQ load-balancing broker in front of several simulator servers ("workers").

::

    envs, planners (DEALER) ──> ROUTER address ┐            ┌ ROUTER worker_address <── workers (DEALER)
                                               └─ Broker ───┘    dreamx-serve role=worker, one per GPU/host

Clients do not change: an env pointed at the broker's ``address`` works as with a single server.

- **Workers** are ordinary ``SimulatorServer`` s started with ``broker=`` (``dreamx-serve role=worker``).
  They connect out to ``worker_address``, register with READY (name, backend facts, capacity) and exchange
  HEARTBEATs with the broker every ``heartbeat_s`` (``world_model.serve.link``). All workers behind one
  broker must serve the same backend, resolution and checkpoint; a different one is refused.
- **Session ids say where a session lives.** The broker answers READY with a handle base
  (``worker key << 32``); the worker numbers its sessions from there. So the broker routes by
  ``session >> 32`` and forwards every message as it came: it reads envelopes and msgpack headers, never
  array buffers, and rewrites nothing (except INFO replies, which gain a ``broker`` section).
- **New sessions go to the least-loaded worker** (open sessions / ``max_sessions``); all scenes of one
  OPEN go to the same worker, so a vector env's sessions share its ``generate`` calls (a laned env,
  ``dreamx_env.lanes``, sends one OPEN per lane, so its lanes spread over the workers). FORK, STEP, RESET
  and CLOSE go to the worker that owns the sessions named (a request naming sessions of two workers is
  refused: open sessions that step together in one OPEN). A retried request id goes where the original
  went, so retries stay idempotent. INFO goes to a worker; PING is answered by the broker.
- **One client cannot take every worker's sessions**: ``max_sessions_per_client`` bounds the sessions one
  client identity holds (and is opening) across all workers; an OPEN or FORK beyond it gets
  ``too_many_sessions`` from the broker, as from a server. Each worker's own quota still applies. Workers
  report the sessions they close for idle or silent clients, so the broker's count follows them.
- **Client heartbeats** (HEARTBEAT from a client, never answered) are passed on to the workers that hold
  the client's sessions, which close them when the heartbeats stop (``client_heartbeat_timeout_s``).
- **A dead worker** (silent for ``heartbeat_timeout_s``, or it said DISCONNECT on stopping, with why: it
  was stopped, its parent process exited, or it crashed): its requests in flight, and every later request
  naming its sessions, get ERROR ``worker_lost`` naming the worker, the sessions and what happened, which
  the client raises. The broker keeps serving; new sessions go to the survivors. A worker that comes back
  registers afresh with a new handle base (its old sessions are gone).
- **Security** as for the server: both sockets bind loopback, ``ipc://`` or ``inproc://`` unless CURVE
  keys are set. A ``worker_address`` beyond loopback also needs ``worker_public_keys``, the CURVE public
  keys of the workers allowed to register: a broker's public key is public, and a worker sees its
  clients' requests.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import zmq

from world_model.wire import requests as rq
from world_model.wire.addresses import (
    bind_router,
    check_allow_list,
    check_bind_address,
    curve_keypair,
    is_local,
    start_allow_lists,
)
from world_model.wire.protocol import (
    REQUEST_NAMES,
    REQUEST_TYPES,
    ErrorCode,
    Message,
    MsgType,
    ProtocolError,
    decode,
    encode,
    error_message,
    peek_envelope,
)

log = logging.getLogger("world_model.serve.broker")

HANDLE_SHIFT = 32  # session id = (worker key << 32) + the worker's own counter
_COMPARED = ("name", "height", "width", "vfov_deg", "checkpoint", "outputs")  # backend facts that must match
_ROUTES_PER_CLIENT = 16
_DEAD_KEPT = 1000


@dataclass
class BrokerConfig:
    address: str = "tcp://127.0.0.1:5555"  # clients connect here
    worker_address: str = "tcp://127.0.0.1:5556"  # workers connect here
    heartbeat_s: float = 0.5  # both ways; workers take the broker's values
    heartbeat_timeout_s: float = 3.0  # a worker (or broker) silent this long is dead
    idle_timeout_s: float = 600.0  # forget clients silent this long that hold no sessions
    max_sessions_per_client: int = 128  # one client's sessions over all workers (too_many_sessions)
    max_message_bytes: int = 256 << 20
    send_queue_per_client: int = 4  # replies ZeroMQ queues for a client that does not read (SNDHWM)
    parent_pid: int | None = None
    # removed when the broker stops because its parent died: a LocalCluster's folder, whose owner cannot
    cleanup_folder: str | None = None
    curve_secret_key: str | None = None  # z85; required to bind beyond loopback
    curve_public_key: str | None = None
    worker_public_keys: list[str] = field(default_factory=list)  # z85 keys of workers allowed to register
    client_public_keys: list[str] = field(default_factory=list)  # z85 keys of clients admitted; [] = any

    def __post_init__(self) -> None:
        value = self.max_sessions_per_client
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"BrokerConfig.max_sessions_per_client must be a positive integer, got {value!r}"
            )


@dataclass
class WorkerRecord:
    key: int
    routing_id: bytes
    name: str
    backend: dict[str, Any]
    max_sessions: int
    last_seen: float
    sessions: int = 0  # open sessions, as last reported plus those opened since
    opening: int = 0  # sessions asked for in OPEN/FORK requests not answered yet
    requests: int = 0
    died: str = ""  # what happened: "shut down", "crashed", "stopped answering"
    why: str = ""
    died_at: float = 0.0

    @property
    def load(self) -> float:
        return (self.sessions + self.opening) / max(1, self.max_sessions)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "handle_base": self.key << HANDLE_SHIFT,
            "sessions": self.sessions,
            "max_sessions": self.max_sessions,
            "requests": self.requests,
        }


@dataclass
class Pending:
    """A request forwarded to a worker and not answered yet."""

    worker: int
    type: MsgType
    count: int  # sessions it opens, forks or closes
    sessions: list[int]


@dataclass
class ClientRecord:
    last_seen: float
    sessions: set[int] = field(default_factory=set)
    routes: OrderedDict[int, int] = field(default_factory=OrderedDict)  # request id -> worker key


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Broker:
    """Route clients on ``config.address`` to workers on ``config.worker_address``. ``serve_forever()``
    blocks until ``stop()`` (from any thread) or the parent process dies."""

    def __init__(self, config: BrokerConfig, context: zmq.Context | None = None) -> None:
        self._curve = curve_keypair(config.curve_secret_key, config.curve_public_key)
        curve = self._curve is not None
        check_allow_list("worker_public_keys", config.worker_public_keys, curve)
        check_allow_list("client_public_keys", config.client_public_keys, curve)
        check_bind_address(config.address, curve)
        check_bind_address(config.worker_address, curve)
        if not is_local(config.worker_address) and not config.worker_public_keys:
            raise ValueError(
                f"refusing to bind worker_address {config.worker_address!r} beyond loopback without "
                "worker_public_keys: anyone holding the broker's public key could register as a worker and "
                "receive clients' requests; list the workers' CURVE public keys"
            )
        self.config = config
        self._own_context = context is None  # own context: the ZAP handler must not see other sockets
        self._ctx = context or zmq.Context()
        self._stop = threading.Event()
        self._orphaned = False  # stopping because the parent process died
        self.ready = threading.Event()
        self.workers: dict[int, WorkerRecord] = {}  # live, by key
        self._keys: dict[bytes, int] = {}  # routing id -> key (live)
        self.dead: OrderedDict[int, WorkerRecord] = OrderedDict()
        self.clients: dict[bytes, ClientRecord] = {}
        self.pending: dict[tuple[bytes, int], Pending] = {}
        self._next_key = random.randrange(1, 1 << 30)  # a new broker run does not reuse old session ids
        self.stats: dict[str, int] = {"messages": 0, "errors": 0, "forwarded": 0}

    def stop(self) -> None:
        self._stop.set()

    # -- main loop ------------------------------------------------------------------------------------------
    def _socket(self, address: str, zap_domain: bytes, send_hwm: int | None = None) -> zmq.Socket:
        cfg = self.config
        return bind_router(self._ctx, address, cfg.max_message_bytes, self._curve, zap_domain, send_hwm)

    def serve_forever(self) -> None:
        cfg = self.config
        auth = None
        if self._curve is not None and (cfg.worker_public_keys or cfg.client_public_keys):
            lists = {"dreamx-workers": cfg.worker_public_keys, "dreamx-clients": cfg.client_public_keys}
            auth = start_allow_lists(self._ctx, lists)
        self._front = self._socket(cfg.address, b"dreamx-clients", cfg.send_queue_per_client)
        self._back = self._socket(cfg.worker_address, b"dreamx-workers")
        if cfg.parent_pid is not None:
            threading.Thread(target=self._watch_parent, name="dreamx-parent-watchdog", daemon=True).start()
        poller = zmq.Poller()
        poller.register(self._front, zmq.POLLIN)
        poller.register(self._back, zmq.POLLIN)
        log.info("broker: clients on %s, workers on %s", cfg.address, cfg.worker_address)
        self.ready.set()
        next_beat = last_sweep = time.monotonic()
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(max(1, int(cfg.heartbeat_s * 500))))
                for sock, handle in ((self._back, self._on_worker), (self._front, self._on_client)):
                    if sock in events:
                        for _ in range(1000):
                            try:
                                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                            except zmq.Again:
                                break
                            handle(frames)
                now = time.monotonic()
                for w in list(self.workers.values()):
                    if now - w.last_seen > cfg.heartbeat_timeout_s:
                        self._bury(w, "stopped answering", f"no heartbeat for {cfg.heartbeat_timeout_s:g} s")
                if now >= next_beat:
                    next_beat = now + cfg.heartbeat_s
                    for w in self.workers.values():
                        self._control(w.routing_id, Message(MsgType.HEARTBEAT, 0))
                if now - last_sweep > 5.0:
                    last_sweep = now
                    self._forget_silent_clients(now)
        finally:
            self._front.close(linger=0)
            self._back.close(linger=0)
            if auth is not None:
                auth.stop()
            if self._own_context:
                self._ctx.term()
            for address in (cfg.address, cfg.worker_address):
                if address.startswith("ipc://") and os.path.exists(address[len("ipc://") :]):
                    os.unlink(address[len("ipc://") :])
            if self._orphaned and cfg.cleanup_folder is not None:
                shutil.rmtree(cfg.cleanup_folder, ignore_errors=True)
            log.info("broker on %s stopped", cfg.address)

    def _watch_parent(self) -> None:
        while not self._stop.wait(0.5):
            if os.getppid() != self.config.parent_pid:
                log.warning("parent process %s is gone; stopping", self.config.parent_pid)
                self._orphaned = True
                self._stop.set()

    # -- clients --------------------------------------------------------------------------------------------
    def _to_client(self, identity: bytes, frames: list) -> None:
        self._front.send_multipart([identity, *frames], copy=False)

    def _refuse(self, identity: bytes, request_id: int, code: str, message: str) -> None:
        self.stats["errors"] += 1
        self._to_client(identity, encode(error_message(request_id, code, message)))

    def _on_client(self, frames: list) -> None:
        self.stats["messages"] += 1
        identity, body = bytes(frames[0]), frames[1:]
        try:
            msg = decode(body, arrays=False)  # envelope, version and header; buffers are only forwarded
        except ProtocolError as exc:
            self._refuse(identity, exc.request_id, exc.code, str(exc))
            return
        now = time.monotonic()
        client = self.clients.setdefault(identity, ClientRecord(now))
        client.last_seen = now
        rid = msg.request_id
        if msg.type == MsgType.PING:
            meta = {"time": time.time(), "sessions": sorted(client.sessions), "workers": len(self.workers)}
            self._to_client(identity, encode(Message(MsgType.REPLY, rid, meta)))
            return
        if msg.type == MsgType.HEARTBEAT:  # to every worker holding this client's sessions; no reply
            for key in {h >> HANDLE_SHIFT for h in client.sessions}:
                if key in self.workers:
                    self._back.send_multipart([self.workers[key].routing_id, identity, *body], copy=False)
            return
        if msg.type not in REQUEST_TYPES:
            text = f"{msg.type.name} is not a request; send {REQUEST_NAMES}"
            self._refuse(identity, rid, ErrorCode.BAD_REQUEST, text)
            return
        key = client.routes.get(rid)
        try:
            if key is None:  # a new request (a retry goes where the original went)
                worker, pending = self._route(msg)
                if msg.type in (MsgType.OPEN, MsgType.FORK):
                    self._check_quota(identity, client, pending.count)
                client.routes[rid] = worker.key
                while len(client.routes) > _ROUTES_PER_CLIENT:
                    client.routes.popitem(last=False)
                self.pending[identity, rid] = pending
                if msg.type in (MsgType.OPEN, MsgType.FORK):
                    worker.opening += pending.count
            elif key in self.workers:
                worker = self.workers[key]
            else:
                raise self._gone(key, self._sessions_named(msg), msg.type)
        except Refused as exc:
            self._refuse(identity, rid, exc.code, str(exc))
            return
        worker.requests += 1
        self.stats["forwarded"] += 1
        self._back.send_multipart([worker.routing_id, identity, *body], copy=False)

    @staticmethod
    def _sessions_named(msg: Message) -> list[int]:
        if msg.type == MsgType.FORK:
            named = [msg.meta.get("session")]
        elif msg.type in (MsgType.STEP, MsgType.CHECK, MsgType.RESET, MsgType.CLOSE):
            named = msg.meta.get("sessions")
        else:
            return []
        try:
            return rq.session_list({"sessions": named}, limit=1 << 20)
        except rq.BadRequest as exc:
            raise Refused(ErrorCode.BAD_REQUEST, str(exc)) from None

    def _route(self, msg: Message) -> tuple[WorkerRecord, Pending]:
        handles = self._sessions_named(msg)
        count = 0
        if msg.type == MsgType.OPEN and isinstance(msg.meta.get("scenes"), list):
            count = len(msg.meta["scenes"])
        elif msg.type == MsgType.FORK:
            count = msg.meta.get("count", 1) if isinstance(msg.meta.get("count", 1), int) else 0
        elif msg.type == MsgType.CLOSE:
            count = len(handles)
        if not handles:  # OPEN, INFO
            if not self.workers:
                raise Refused(ErrorCode.NO_WORKERS, self._no_workers())
            worker = min(self.workers.values(), key=lambda w: (w.load, w.key))
            return worker, Pending(worker.key, msg.type, count, [])
        keys = sorted({h >> HANDLE_SHIFT for h in handles})
        if len(keys) > 1:
            where = "; ".join(
                f"{[h for h in handles if h >> HANDLE_SHIFT == k]} on {self._worker_name(k)}" for k in keys
            )
            raise Refused(
                ErrorCode.BAD_REQUEST,
                f"{msg.type.name} names sessions held by different workers ({where}); one request can only "
                "name sessions of one worker: open the sessions that step together in one OPEN",
            )
        if keys[0] not in self.workers:
            raise self._gone(keys[0], handles, msg.type)
        return self.workers[keys[0]], Pending(keys[0], msg.type, count, handles)

    def _check_quota(self, identity: bytes, client: ClientRecord, count: int) -> None:
        """Refuse opening ``count`` more sessions beyond ``max_sessions_per_client`` (over all workers,
        counting the sessions this client's OPEN and FORK requests in flight may open)."""
        quota = self.config.max_sessions_per_client
        opening = sum(
            p.count
            for (who, _), p in self.pending.items()
            if who == identity and p.type in (MsgType.OPEN, MsgType.FORK)
        )
        held = len(client.sessions) + opening
        if held + count > quota:
            raise Refused(
                ErrorCode.TOO_MANY_SESSIONS,
                f"cannot open {count} session(s): this client holds {held} of at most {quota} sessions per "
                f"client (over all workers of the broker at {self.config.address}); close some or raise the "
                "broker's max_sessions_per_client",
            )

    def _worker_name(self, key: int) -> str:
        w = self.workers.get(key) or self.dead.get(key)
        return f"worker {w.name!r}" if w is not None else "no known worker"

    def _no_workers(self) -> str:
        lost = f" ({len(self.dead)} worker(s) lost)" if self.dead else ""
        return (
            f"the broker at {self.config.address} has no live worker{lost}; start one with "
            f"`dreamx-serve role=worker broker={self.config.worker_address}`"
        )

    def _gone(self, key: int, handles: list[int], mtype: MsgType) -> Refused:
        """The error for a request whose worker is dead (or never existed)."""
        w = self.dead.get(key)
        if w is None:
            return Refused(
                ErrorCode.UNKNOWN_SESSION,
                f"session(s) {handles} are unknown: no worker of the broker at {self.config.address} holds "
                "them (ids from an earlier broker run?); open a new session",
            )
        ago = time.monotonic() - w.died_at
        what = f"session(s) {handles} were held by" if handles else f"this {mtype.name} request went to"
        return Refused(
            ErrorCode.WORKER_LOST,
            f"{what} worker {w.name!r}, which {w.died} {ago:.1f} s ago ({w.why}); its sessions are lost. "
            f"Open new sessions: {len(self.workers)} live worker(s) remain behind {self.config.address}",
        )

    def _forget_silent_clients(self, now: float) -> None:
        busy = {identity for identity, _ in self.pending}
        limit = max(self.config.idle_timeout_s, 60.0)
        for identity, c in list(self.clients.items()):
            if now - c.last_seen > limit and identity not in busy and not c.sessions:
                del self.clients[identity]

    # -- workers --------------------------------------------------------------------------------------------
    def _control(self, routing_id: bytes, msg: Message) -> None:
        self._back.send_multipart([routing_id, b"", *encode(msg)], copy=False)

    def _on_worker(self, frames: list) -> None:
        if len(frames) < 3:
            return
        routing_id, identity, body = bytes(frames[0]), bytes(frames[1]), frames[2:]
        key = self._keys.get(routing_id)
        worker = self.workers.get(key) if key is not None else None
        if identity == b"":
            self._on_control(routing_id, worker, body)
            return
        if worker is None:
            return  # a late reply from a worker declared dead: its clients have been told
        worker.last_seen = time.monotonic()
        envelope = peek_envelope(body[0])
        if envelope is None:
            log.warning("dropping a malformed reply from worker %r", worker.name)
            return
        mtype, request_id = envelope
        if mtype in (MsgType.REPLY, MsgType.ERROR):
            pending = self.pending.pop((identity, request_id), None)
            if pending is not None:
                body = self._settle(identity, worker, pending, mtype == MsgType.REPLY, body)
        self._to_client(identity, body)

    def _settle(self, identity: bytes, w: WorkerRecord, p: Pending, ok: bool, body: list) -> list:
        """Book-keeping for an answered request; returns the frames to forward."""
        if p.type in (MsgType.OPEN, MsgType.FORK):
            w.opening -= p.count
        if not ok:
            return body
        client = self.clients.get(identity)
        if p.type in (MsgType.OPEN, MsgType.FORK):
            opened = decode(body, arrays=False).meta.get("sessions", [])
            w.sessions += len(opened)
            if client is not None:
                client.sessions.update(opened)
        elif p.type == MsgType.CLOSE:
            w.sessions = max(0, w.sessions - p.count)
            if client is not None:
                client.sessions.difference_update(p.sessions)
        elif p.type == MsgType.INFO:
            msg = decode(body)
            msg.meta["broker"] = self.describe()
            body = encode(msg)
        return body

    def describe(self) -> dict[str, Any]:
        """What INFO replies carry in their ``broker`` section."""
        now = time.monotonic()
        return {
            "address": self.config.address,
            "max_message_bytes": self.config.max_message_bytes,
            "max_sessions_per_client": self.config.max_sessions_per_client,
            "workers": [w.describe() for w in self.workers.values()],
            "lost_workers": [
                {"name": w.name, "died": w.died, "why": w.why, "ago_s": round(now - w.died_at, 3)}
                for w in list(self.dead.values())[-10:]
            ],
            "stats": dict(self.stats, clients=len(self.clients), pending=len(self.pending)),
        }

    def _on_control(self, routing_id: bytes, worker: WorkerRecord | None, body: list) -> None:
        try:
            msg = decode(body, arrays=False)
        except ProtocolError as exc:
            log.warning("undecodable control message from a worker: %s", exc)
            return
        if msg.type == MsgType.READY:
            self._register(routing_id, worker, msg)
            return
        if worker is None:  # declared dead, or registered with an earlier broker run: start over
            if msg.type != MsgType.DISCONNECT:
                self._control(routing_id, Message(MsgType.DISCONNECT, 0, {"reason": "not registered"}))
            return
        worker.last_seen = time.monotonic()
        if msg.type == MsgType.HEARTBEAT:
            sessions = msg.meta.get("sessions")
            if isinstance(sessions, int) and not isinstance(sessions, bool) and sessions >= 0:
                worker.sessions = sessions
            expired = msg.meta.get("expired")
            if isinstance(expired, list):  # sessions the worker closed for idle or silent clients
                gone = {h for h in expired if isinstance(h, int) and h >> HANDLE_SHIFT == worker.key}
                for c in self.clients.values():
                    c.sessions -= gone
        elif msg.type == MsgType.DISCONNECT:
            died, why = msg.meta.get("died"), msg.meta.get("why")
            died = died if died in ("shut down", "crashed") else "shut down"
            self._bury(worker, died, why[:300] if isinstance(why, str) and why else "it said goodbye")

    def _register(self, routing_id: bytes, worker: WorkerRecord | None, msg: Message) -> None:
        meta = msg.meta
        if worker is None:
            backend = meta.get("backend") if isinstance(meta.get("backend"), dict) else {}
            name = str(meta.get("name") or routing_id.hex())[:200]
            max_sessions = meta.get("max_sessions")
            if not isinstance(max_sessions, int) or isinstance(max_sessions, bool) or max_sessions < 1:
                max_sessions = 1
            reference = next(iter(self.workers.values()), None)
            if reference is not None:
                ours = {k: reference.backend.get(k) for k in _COMPARED}
                theirs = {k: backend.get(k) for k in _COMPARED}
                if ours != theirs:
                    text = (
                        f"worker {name!r} serves {theirs} but the workers behind this broker serve {ours}; "
                        "all workers of one broker must serve the same backend, resolution and checkpoint"
                    )
                    log.error("%s", text)
                    self._control(routing_id, error_message(msg.request_id, ErrorCode.BAD_REQUEST, text))
                    return
            key, self._next_key = self._next_key, self._next_key + 1
            worker = WorkerRecord(key, routing_id, name, backend, max_sessions, time.monotonic())
            self.workers[key] = worker
            self._keys[routing_id] = key
            log.info("worker %r registered (%d live)", name, len(self.workers))
        worker.last_seen = time.monotonic()
        reply = {
            "worker": worker.key,
            "handle_base": worker.key << HANDLE_SHIFT,
            "heartbeat_s": self.config.heartbeat_s,
            "heartbeat_timeout_s": self.config.heartbeat_timeout_s,
        }
        self._control(routing_id, Message(MsgType.REPLY, msg.request_id, reply))

    def _bury(self, w: WorkerRecord, died: str, why: str) -> None:
        """Declare ``w`` dead: answer its requests in flight, forget its sessions, route around it."""
        w.died, w.why, w.died_at = died, why, time.monotonic()
        del self.workers[w.key]
        self._keys.pop(w.routing_id, None)
        self.dead[w.key] = w
        while len(self.dead) > _DEAD_KEPT:
            self.dead.popitem(last=False)
        log.warning("worker %r %s (%s); %d live worker(s) remain", w.name, died, why, len(self.workers))
        for (identity, rid), p in list(self.pending.items()):
            if p.worker == w.key:
                del self.pending[identity, rid]
                err = self._gone(w.key, p.sessions, p.type)
                self._refuse(identity, rid, err.code, str(err))
        for c in self.clients.values():
            c.sessions = {h for h in c.sessions if h >> HANDLE_SHIFT != w.key}
