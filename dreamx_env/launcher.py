"""The embedded default: start a simulator server for an env that was given ``server=None``.

``launch(LaunchConfig(...))`` starts either a subprocess (``python -m world_model.serve --json ...``)
listening on a private ``ipc://`` socket, or, with ``mode="thread"``, an in-process server thread over ``inproc://``
(no process at all; handy in tests). ``close()`` stops it; a subprocess also stops by itself when this
process dies (its parent-death watchdog), so no backend is ever orphaned. A laned env (``lanes`` > 1)
gets ``embedded_cluster`` instead: a broker and one worker per lane. Envs share these servers through
``dreamx_env.server_pool``.

Backend processes size their CPU threads (``OMP_NUM_THREADS``, which torch and BLAS follow) to the cores
this process may run on, divided among the embedded backend processes it runs at the time one starts, so
several servers never each take every core; a value the user set in ``OMP_NUM_THREADS`` is left alone. With
``server_options={"adapt_threads": True}`` that count is the most a server uses: while other processes keep
cores busy it uses fewer (``world_model.serve.threads``).

Prefer the subprocess when training: a thread server runs the backend in your process, and MuJoCo's
Mesa GL loaded there before triton makes ``import triton`` crash (torch optimizers import it).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

import zmq

from world_model.backend_registry import DEFAULT_BACKEND, check_backend
from world_model.serve.cluster import ClusterConfig, LocalCluster
from world_model.wire.client import ServerUnavailable, SimulatorClient


@dataclass
class LaunchConfig:
    backend: str = DEFAULT_BACKEND
    backend_kwargs: dict[str, Any] = field(default_factory=dict)
    mode: str = "subprocess"  # "subprocess" (ipc://) or "thread" (inproc://, same process)
    address: str | None = None  # default: a fresh ipc:// path or inproc:// name
    startup_timeout_s: float = 120.0
    server: dict[str, Any] = field(default_factory=dict)  # other ServerConfig fields (max_batch, ...)
    threads: int | None = None  # subprocess's OMP_NUM_THREADS; None: $OMP_NUM_THREADS, else share_of_cores


class EmbeddedServer:
    """A running server owned by this process. ``address`` is where clients connect."""

    def __init__(self, config: LaunchConfig) -> None:
        if config.mode not in ("subprocess", "thread"):
            raise ValueError(f"launch mode must be 'subprocess' or 'thread', got {config.mode!r}")
        check_backend(config.backend)  # fail here, clearly, rather than in a child process
        self.config = config
        self.mode = config.mode
        tag = f"dreamx-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if config.address:
            self.address = config.address
        elif config.mode == "thread":
            self.address = f"inproc://{tag}"
        else:
            self.address = f"ipc://{os.path.join(tempfile.gettempdir(), tag + '.sock')}"
        values = dict(
            config.server,
            backend=config.backend,
            backend_kwargs=dict(config.backend_kwargs),
            address=self.address,
        )
        self.process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._log_fd: int | None = None
        if config.mode == "subprocess":
            self._start_process(values)
        else:
            self._start_thread(values)
        self._finalizer = weakref.finalize(
            self, _stop, self.process, self._thread_server(), self._thread, self.address, self._log_fd
        )
        atexit.register(self.close)
        _running.add(self)
        self._wait_ready()

    def _thread_server(self) -> Any:
        return getattr(self, "_server", None)

    def _start_process(self, values: dict[str, Any]) -> None:
        values["parent_pid"] = os.getpid()
        # The server's output goes to a file that is unlinked at once: readable here through the open
        # descriptor (for error messages), and gone with the last descriptor however either side exits.
        self._log_fd, path = tempfile.mkstemp(prefix="dreamx-serve-", suffix=".log")
        os.unlink(path)
        threads = self.config.threads or share_of_cores(1)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "world_model.serve", "--json", json.dumps(values)],
            env=os.environ if threads is None else dict(os.environ, OMP_NUM_THREADS=str(threads)),
            stdin=subprocess.DEVNULL,
            stdout=self._log_fd,
            stderr=subprocess.STDOUT,
        )

    def _start_thread(self, values: dict[str, Any]) -> None:
        from world_model.serve.cli import server_config
        from world_model.serve.server import SimulatorServer

        self._server = SimulatorServer(server_config(values), context=zmq.Context.instance())
        self._thread_error: BaseException | None = None

        def serve() -> None:
            try:
                self._server.serve_forever()
            except BaseException as exc:
                self._thread_error = exc

        self._thread = threading.Thread(target=serve, name="dreamx-embedded-server", daemon=True)
        self._thread.start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        with SimulatorClient(self.address) as client:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    log = self.log_tail()
                    self.close()
                    raise RuntimeError(
                        f"the embedded {self.config.backend!r} server exited with code "
                        f"{self.process.returncode} while starting; its log ends with:\n{log}"
                    )
                if self._thread is not None and not self._thread.is_alive():
                    self.close()
                    raise RuntimeError(
                        f"the embedded {self.config.backend!r} server failed to start: {self._thread_error}"
                    ) from self._thread_error
                try:
                    client.ping(timeout_s=0.5)
                    return
                except ServerUnavailable:
                    if time.monotonic() > deadline:
                        log = self.log_tail()
                        self.close()
                        raise RuntimeError(
                            f"the embedded {self.config.backend!r} server did not answer within "
                            f"{self.config.startup_timeout_s:.0f} s; log:\n{log}"
                        ) from None

    def log_tail(self, n: int = 4000) -> str:
        """The last ``n`` bytes the server subprocess printed."""
        if self._log_fd is None or self._closed:
            return ""
        size = os.fstat(self._log_fd).st_size
        return os.pread(self._log_fd, n, max(0, size - n)).decode(errors="replace")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def backend_processes(self) -> int:
        """Processes running a backend on this machine's cores: 1 for a subprocess, 0 for a thread."""
        return 0 if self._closed or self.process is None else 1

    def alive(self) -> bool:
        """Not closed, and its process (or thread) still runs."""
        if self._closed:
            return False
        if self.process is not None:
            return self.process.poll() is None
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            atexit.unregister(self.close)
            self._finalizer()

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _stop(
    process: subprocess.Popen | None,
    server: Any,
    thread: threading.Thread | None,
    address: str,
    log_fd: int | None,
) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if server is not None:
        server.stop()
    if thread is not None:
        thread.join(10)
    if address.startswith("ipc://") and os.path.exists(address[len("ipc://") :]):
        os.unlink(address[len("ipc://") :])
    if log_fd is not None:
        os.close(log_fd)


# The embedded servers and clusters this process runs, for share_of_cores.
_running: weakref.WeakSet[EmbeddedServer | LocalCluster] = weakref.WeakSet()


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and ``taskset`` set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def share_of_cores(new_processes: int) -> int | None:
    """CPU threads for each of ``new_processes`` backend processes about to start: the available cores
    divided among them and the embedded backend processes this process already runs (at least 1). ``None``
    when the user set ``OMP_NUM_THREADS``: the processes inherit it."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    running = sum(s.backend_processes for s in list(_running))
    return max(1, available_cores() // (running + new_processes))


def embedded_cluster(
    backend: str, backend_kwargs: dict[str, Any], server: dict[str, Any], workers: int
) -> LocalCluster:
    """The embedded default of a laned env (``lanes`` > 1): a broker and ``workers`` workers over ``ipc://``,
    sharing this machine's cores (``share_of_cores``; the user's ``OMP_NUM_THREADS`` when set)."""
    check_backend(backend)
    threads = share_of_cores(workers)
    cluster = LocalCluster(
        ClusterConfig(workers, backend, dict(backend_kwargs), dict(server), threads=threads)
    )
    _running.add(cluster)
    return cluster


def launch(config: LaunchConfig | None = None, **overrides: Any) -> EmbeddedServer:
    """Start an embedded server; ``overrides`` are ``LaunchConfig`` fields."""
    config = dataclasses.replace(config or LaunchConfig(), **overrides)
    return EmbeddedServer(config)
