"""One embedded server for all the envs of a process that ask for the same one.

``gymnasium.make`` called n times (as SB3's ``make_vec_env`` does) would otherwise start n server
processes, each sizing its threads to every core: on a small machine they fight over the cores and all
run several times slower. Envs made with the same embedded settings (backend, its options, server
options, launch mode, lanes) therefore share one server by default; each holds a ``SharedServer`` lease,
and the server stops when the last lease is let go (``close()``, or the env being garbage-collected).
Sessions are per env, so sharing changes no env's frames.

A server that has exited, or that does not answer a ping, is never handed out again: the next env starts
a fresh one, while envs still holding the old one see their errors as before. A forked child starts with
an empty pool (the parent's servers are the parent's to stop).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dreamx_env.launcher import EmbeddedServer
from world_model.serve.cluster import LocalCluster
from world_model.wire.client import ClientConfig, ServerUnavailable, SimulatorClient

Server = EmbeddedServer | LocalCluster


@dataclass(eq=False)
class _Entry:
    key: Any
    server: Server
    owner_pid: int
    users: int = 0


class SharedServer:
    """One env's hold on a shared embedded server. Attributes not defined here are the server's
    (``address``, ``pid``, ``pids``, ``log_tail``, ...); ``close()`` lets go of it, once."""

    def __init__(self, pool: ServerPool, entry: _Entry) -> None:
        self.server = entry.server
        self._entry = entry
        self._finalizer = weakref.finalize(self, pool.release, entry)

    def __getattr__(self, name: str) -> Any:
        if name in ("server", "_entry", "_finalizer"):  # not yet set (during __init__ or copying)
            raise AttributeError(name)
        return getattr(self.server, name)

    @property
    def users(self) -> int:
        """Envs that hold this server now (this one included, until it closes)."""
        return self._entry.users

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


class ServerPool:
    """Embedded servers by key, reference-counted. Thread-safe; one per process (``POOL``)."""

    def __init__(self, ping_timeout_s: float = 2.0) -> None:
        self.ping_timeout_s = ping_timeout_s
        self._lock = threading.Lock()
        self._entries: dict[Any, _Entry] = {}

    def acquire(self, key: Any, start: Callable[[], Server]) -> SharedServer:
        """A lease on the live server under ``key``, started with ``start()`` when there is none (under the
        pool's lock: two threads making envs at once get one server)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not self._answers(entry.server):
                del self._entries[key]  # its envs keep it (and close it); new envs get another
                entry = None
            if entry is None:
                entry = self._entries[key] = _Entry(key, start(), os.getpid())
            entry.users += 1
            return SharedServer(self, entry)

    def release(self, entry: _Entry) -> None:
        """One user fewer; the last one stops the server."""
        if entry.owner_pid != os.getpid():  # a forked child's copy of a parent's lease
            return
        with self._lock:
            entry.users -= 1
            if entry.users > 0:
                return
            if self._entries.get(entry.key) is entry:
                del self._entries[entry.key]
        entry.server.close()

    def servers(self) -> list[Server]:
        """The servers new envs would be given (one per key)."""
        with self._lock:
            return [e.server for e in self._entries.values()]

    def _answers(self, server: Server) -> bool:
        if not server.alive():
            return False
        try:
            with SimulatorClient(server.address, ClientConfig(timeout_s=self.ping_timeout_s)) as client:
                client.ping(timeout_s=self.ping_timeout_s)
            return True
        except ServerUnavailable:
            return False

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._entries = {}


POOL = ServerPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=POOL._forget)
