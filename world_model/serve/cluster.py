"""A broker and N worker processes on this machine, over ``ipc://``: scale-out for tests, benchmarks, and
trying it before spreading workers over hosts.

    with LocalCluster(ClusterConfig(workers=2, backend="constant")) as cluster:
        env = gymnasium.make("DreamX/Explore-v0", backend="constant", server=cluster.address)

Every process gets ``parent_pid`` (it stops when this process dies) and is stopped by ``close()``; the
socket and log folder is removed, by ``close()`` or, when this process dies without closing, by the broker
as it stops. Process ``i`` is the worker named ``worker{i}``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from world_model.backend_registry import DEFAULT_BACKEND


@dataclass
class ClusterConfig:
    workers: int = 2
    backend: str = DEFAULT_BACKEND
    backend_kwargs: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)  # other ServerConfig fields for every worker
    threads: int | None = None  # CPU threads per worker (OMP_NUM_THREADS); None: the library default
    heartbeat_s: float = 0.5
    heartbeat_timeout_s: float = 3.0
    startup_timeout_s: float = 120.0


class LocalCluster:
    """Start the broker and workers; ``address`` is where clients connect."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.folder = tempfile.mkdtemp(prefix="dreamx-cluster-")
        self.address = f"ipc://{self.folder}/clients.sock"
        self.worker_address = f"ipc://{self.folder}/workers.sock"
        self.broker: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._closed = False
        try:
            broker = {
                "role": "broker",
                "address": self.address,
                "worker_address": self.worker_address,
                "heartbeat_s": config.heartbeat_s,
                "heartbeat_timeout_s": config.heartbeat_timeout_s,
                "cleanup_folder": self.folder,
            }
            if "max_sessions_per_client" in config.server:  # the workers' quota, held over all of them
                broker["max_sessions_per_client"] = config.server["max_sessions_per_client"]
            self.broker = self._start("broker", broker)
            threads = {} if config.threads is None else {"OMP_NUM_THREADS": str(config.threads)}
            for i in range(config.workers):
                self.workers.append(self._start(f"worker{i}", self.worker_options(f"worker{i}"), threads))
            self.wait_for_workers(config.workers, config.startup_timeout_s)
        except BaseException:
            self.close()
            raise

    def worker_options(self, name: str) -> dict[str, Any]:
        cfg = self.config
        return dict(
            cfg.server,
            role="worker",
            broker=self.worker_address,
            worker_name=name,
            backend=cfg.backend,
            backend_kwargs=dict(cfg.backend_kwargs),
        )

    def _start(self, name: str, options: dict[str, Any], env: dict | None = None) -> subprocess.Popen:
        options = dict(options, parent_pid=os.getpid())
        with open(os.path.join(self.folder, f"{name}.log"), "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "world_model.serve", "--json", json.dumps(options)],
                env=dict(os.environ, **(env or {})),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self, name: str, n: int = 4000) -> str:
        """The last ``n`` bytes printed by ``broker`` or ``worker{i}``."""
        try:
            with open(os.path.join(self.folder, f"{name}.log"), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_workers(self, n: int, timeout_s: float) -> None:
        """Block until ``n`` workers are registered with the broker."""
        from world_model.wire.client import ClientConfig, ServerUnavailable, SimulatorClient

        deadline = time.monotonic() + timeout_s
        with SimulatorClient(self.address, ClientConfig(timeout_s=1.0)) as client:
            while True:
                names = ["broker"] + [f"worker{i}" for i in range(len(self.workers))]
                for name, proc in zip(names, [self.broker, *self.workers], strict=True):
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{self.log(name)}")
                try:
                    if client.ping(timeout_s=1.0)["workers"] >= n:
                        return
                except ServerUnavailable:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{n} workers did not register within {timeout_s:.0f} s")
                time.sleep(0.05)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in [self.broker, *self.workers] if p is not None]

    @property
    def backend_processes(self) -> int:
        """Processes running a backend on this machine's cores: the workers, while the cluster is open."""
        return 0 if self._closed else len(self.workers)

    def alive(self) -> bool:
        """Not closed, and the broker and every worker still run."""
        procs = [self.broker, *self.workers]
        return not self._closed and all(p is not None and p.poll() is None for p in procs)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        procs = [p for p in [*self.workers, self.broker] if p is not None]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
