"""The server's session table: which client identity owns which session handles, idle time-outs, the
session caps, each client's reply cache (what makes retries idempotent) and the bytes held for each client
(``world_model.serve.budgets``).

Two time-outs close a client's sessions: ``idle_timeout_s`` after its last request, for every client, and
the shorter ``heartbeat_timeout_s`` after its last message of any kind, for a client that has sent a
HEARTBEAT (so its heartbeats stopping means it is gone: killed, hung, disconnected). Heartbeats never
extend the idle time-out; clients that never heartbeat keep only the idle time-out."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from world_model.wire.protocol import ErrorCode


class SessionError(Exception):
    """A request names a session it may not use, or asks for more sessions than the server allows."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ClientState:
    last_seen: float  # last request (anything but a HEARTBEAT)
    last_beat: float | None = None  # last HEARTBEAT; None: this client does not heartbeat
    sessions: set[int] = field(default_factory=set)
    last_step: float = 0.0  # last OPEN/RESET/STEP: "active" clients are waited for when batching
    inflight: dict[int, int] = field(default_factory=dict)  # request id being worked on -> bytes held
    cache: OrderedDict[int, list] = field(default_factory=OrderedDict)  # request id -> encoded reply
    cache_bytes: int = 0

    @property
    def inflight_bytes(self) -> int:
        return sum(self.inflight.values())


class ClientTable:
    """Bookkeeping on the server's I/O thread; the backend worker maps handles to backend sessions."""

    def __init__(
        self,
        max_sessions: int,
        idle_timeout_s: float,
        reply_cache_per_client: int,
        first_handle: int = 1,
        max_client_bytes: int = 256 << 20,
        max_sessions_per_client: int | None = None,
        heartbeat_timeout_s: float | None = None,
    ) -> None:
        self.max_sessions = max_sessions
        self.max_sessions_per_client = max_sessions_per_client or max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.heartbeat_timeout_s = heartbeat_timeout_s or idle_timeout_s
        self.reply_cache_per_client = reply_cache_per_client
        self.max_client_bytes = max_client_bytes
        self.clients: dict[bytes, ClientState] = {}
        self.n_sessions = 0
        self._next_handle = first_handle  # a worker behind a broker numbers from the base it was given
        self._expired: OrderedDict[int, str] = OrderedDict()  # handle -> why it was closed

    def seen(self, identity: bytes) -> ClientState:
        now = time.monotonic()
        client = self.clients.setdefault(identity, ClientState(now))
        client.last_seen = now
        return client

    def heartbeat(self, identity: bytes) -> None:
        """A HEARTBEAT from ``identity``: from now on its sessions close ``heartbeat_timeout_s`` after its
        last message. One from a client with no state here (no request yet) is ignored."""
        client = self.clients.get(identity)
        if client is not None:
            client.last_beat = time.monotonic()

    def check_owned(self, client: ClientState, handles: list[int]) -> None:
        for h in handles:
            if h not in client.sessions:
                why = self._expired.get(h, "it is not open for this client")
                raise SessionError(
                    ErrorCode.UNKNOWN_SESSION, f"session {h} is unknown: {why}; open a new one"
                )

    def allocate(self, client: ClientState, n: int) -> list[int]:
        if len(client.sessions) + n > self.max_sessions_per_client:
            raise SessionError(
                ErrorCode.TOO_MANY_SESSIONS,
                f"cannot open {n} session(s): this client holds {len(client.sessions)} of at most "
                f"{self.max_sessions_per_client} sessions per client; close some or raise the server's "
                "max_sessions_per_client",
            )
        if self.n_sessions + n > self.max_sessions:
            raise SessionError(
                ErrorCode.TOO_MANY_SESSIONS,
                f"cannot open {n} session(s): {self.n_sessions} of at most {self.max_sessions} are open; "
                "close some or raise the server's max_sessions",
            )
        handles = list(range(self._next_handle, self._next_handle + n))
        self._next_handle += n
        self.n_sessions += n
        client.sessions.update(handles)
        return handles

    def release(self, identity: bytes, handles: list[int]) -> None:
        client = self.clients.get(identity)
        for h in handles:
            if client is not None and h in client.sessions:
                client.sessions.discard(h)
                self.n_sessions -= 1

    def remember(self, identity: bytes, request_id: int, frames: list) -> None:
        """Cache the reply to ``request_id`` for retries; older replies are dropped beyond
        ``reply_cache_per_client`` or when the cache and the work in progress would hold more than
        ``max_client_bytes`` (the newest reply is always kept: it is the one a client retries)."""
        client = self.clients.get(identity)
        if client is not None:
            client.inflight.pop(request_id, None)
            client.cache[request_id] = frames
            client.cache_bytes += _nbytes(frames)
            while len(client.cache) > 1 and (
                len(client.cache) > self.reply_cache_per_client
                or client.cache_bytes + client.inflight_bytes > self.max_client_bytes
            ):
                client.cache_bytes -= _nbytes(client.cache.popitem(last=False)[1])

    def active(self, window_s: float) -> set[bytes]:
        now = time.monotonic()
        return {i for i, c in self.clients.items() if c.sessions and now - c.last_step <= window_s}

    def expire_idle(self) -> list[int]:
        """Release the sessions of clients without a request for ``idle_timeout_s``, and of heartbeating
        clients silent for ``heartbeat_timeout_s``; returns the handles to close."""
        now, closed = time.monotonic(), []
        for identity, client in list(self.clients.items()):
            idle = now - client.last_seen
            why = None
            if client.sessions and not client.inflight:
                if idle > self.idle_timeout_s:
                    why = f"it was closed after {self.idle_timeout_s:g} s without requests from its client"
                elif client.last_beat is not None and now - max(client.last_beat, client.last_seen) > (
                    self.heartbeat_timeout_s
                ):
                    why = (
                        f"it was closed {self.heartbeat_timeout_s:g} s after its client's heartbeats stopped "
                        "(client_heartbeat_timeout_s)"
                    )
            if why is not None:
                handles = sorted(client.sessions)
                self.release(identity, handles)
                self._expired.update(dict.fromkeys(handles, why))
                closed.extend(handles)
            if not client.sessions and not client.inflight and idle > max(self.idle_timeout_s, 60.0):
                del self.clients[identity]
        while len(self._expired) > 100_000:
            self._expired.popitem(last=False)
        return closed


def _nbytes(frames: list) -> int:
    return sum(memoryview(f).nbytes for f in frames)
