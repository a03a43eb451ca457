"""A worker's connection to its broker (the worker side of ``world_model.serve.broker``).

The worker is an ordinary ``SimulatorServer`` whose socket is a DEALER connected to the broker's
``worker_address`` instead of a bound ROUTER. The broker forwards each client request with the client's
identity in front, exactly the frames a ROUTER would deliver, so the server's request handling does not
change. This class adds what a worker needs on top (the Paranoid Pirate pattern):

- READY with the worker's name, backend facts and capacity, re-sent every second until the broker answers
  with the handle base for this worker's session ids and the heartbeat settings;
- a HEARTBEAT every ``heartbeat_s`` (with the worker's session count), and one at once when the worker
  closes idle or silent clients' sessions (``expired``: their handles, for the broker's per-client books);
- DISCONNECT when it stops, saying whether it shut down or crashed, and why;
- when the broker has been silent for ``heartbeat_timeout_s``, or answers DISCONNECT ("I do not know you"),
  the link reports the broker lost; the server then drops its sessions (their clients have been told by
  the broker that they are gone) and the link reconnects with a fresh identity and registers again.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import zmq

from world_model.wire.addresses import is_local
from world_model.wire.protocol import Message, MsgType, encode

log = logging.getLogger("world_model.serve")

READY_RETRY_S = 1.0


class BrokerRefused(RuntimeError):
    """The broker refused to register this worker (for example: it serves a different backend)."""


class BrokerLink:
    """Connect to ``address``; ``curve`` is (broker public key, own public key, own secret key) or None."""

    def __init__(
        self,
        context: zmq.Context,
        address: str,
        curve: tuple[str, str | None, str | None] | None,
        max_message_bytes: int,
    ) -> None:
        if not is_local(address) and curve is None:
            raise ValueError(
                f"the broker at {address!r} is on another host: set broker_public_key (the broker's CURVE "
                "public key) and curve_secret_key/curve_public_key (this worker's keypair, listed in the "
                "broker's worker_public_keys)"
            )
        self._ctx, self.address, self._curve = context, address, curve
        self._max_message_bytes = max_message_bytes
        self.socket: zmq.Socket | None = None
        self.registered = False
        self.handle_base = 0
        self.heartbeat_s, self.heartbeat_timeout_s = 0.5, 3.0  # until the broker says otherwise
        self._ready_id = 0
        self._ready_sent = -float("inf")
        self._last_heard = self._next_beat = 0.0

    def connect(self) -> zmq.Socket:
        """A fresh DEALER with a fresh identity (closing the old one); not registered yet."""
        if self.socket is not None:
            self.socket.close(linger=0)
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for a broker that is not there (no stale READYs)
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        sock.setsockopt(zmq.ROUTING_ID, b"w" + os.urandom(15))
        if self._curve is not None:
            server_key, public, secret = self._curve
            if not (public and secret):
                public_b, secret_b = zmq.curve_keypair()
                public, secret = public_b.decode(), secret_b.decode()
            sock.curve_serverkey = server_key.encode()
            sock.curve_publickey, sock.curve_secretkey = public.encode(), secret.encode()
        sock.connect(self.address)
        self.socket, self.registered = sock, False
        self._ready_sent = -float("inf")
        return sock

    def send(self, frames: list) -> bool:
        """Send without blocking; False (message dropped) when the broker is unreachable."""
        try:
            self.socket.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _control(self, msg: Message) -> bool:
        return self.send([b"", *encode(msg)])

    def tick(self, ready_meta: dict[str, Any], beat_meta: dict[str, Any]) -> bool:
        """Registration and heartbeats; call often. Returns False when a registered broker is lost."""
        now = time.monotonic()
        if not self.registered:
            if now - self._ready_sent >= READY_RETRY_S:
                self._ready_id += 1
                if self._control(Message(MsgType.READY, self._ready_id, ready_meta)):
                    self._ready_sent = now
            return True
        if now - self._last_heard > self.heartbeat_timeout_s:
            log.warning(
                "broker at %s silent for %.1f s; dropping this worker's sessions and registering again",
                self.address,
                now - self._last_heard,
            )
            return False
        if now >= self._next_beat:
            self.beat(beat_meta)
        return True

    def beat(self, meta: dict[str, Any]) -> None:
        """Send a HEARTBEAT now (also out of turn: one that says which sessions the worker closed)."""
        self._control(Message(MsgType.HEARTBEAT, 0, meta))
        self._next_beat = time.monotonic() + self.heartbeat_s

    def on_control(self, msg: Message) -> str | None:
        """Handle a message from the broker itself: "registered" when it registered this worker, "lost" when
        the broker does not know this worker (reconnect), else None. Raises :class:`BrokerRefused` when the
        broker refuses to register it."""
        self._last_heard = time.monotonic()
        if msg.type == MsgType.DISCONNECT:
            log.warning("the broker at %s does not know this worker; registering again", self.address)
            return "lost"
        if msg.request_id != self._ready_id or self.registered:
            return None  # heartbeats, and answers to READYs that were re-sent
        if msg.type == MsgType.ERROR:
            raise BrokerRefused(
                f"the broker at {self.address} refused this worker: {msg.meta.get('message')}"
            )
        if msg.type == MsgType.REPLY:
            meta = msg.meta
            self.handle_base = int(meta["handle_base"])
            self.heartbeat_s = float(meta.get("heartbeat_s", self.heartbeat_s))
            self.heartbeat_timeout_s = float(meta.get("heartbeat_timeout_s", self.heartbeat_timeout_s))
            self.registered, self._next_beat = True, 0.0
            log.info("registered with the broker at %s as worker %s", self.address, meta.get("worker"))
            return "registered"
        return None

    def goodbye(self, died: str = "shut down", why: str = "stopped") -> None:
        """Tell the broker this worker is stopping (best effort) and close the socket. ``died`` is "shut
        down" or "crashed", ``why`` what happened, in words: the broker reports both to the worker's
        clients."""
        if self.socket is None:
            return
        if self.registered:
            self._control(Message(MsgType.DISCONNECT, 0, {"died": died, "why": why}))
        self.socket.close(linger=1000)
        self.socket = None
