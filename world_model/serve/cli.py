"""``dreamx-serve``: run the simulator server (Hydra entry point; configs in ``configs/server/``).

    dreamx-serve                                   # default backend, tcp://127.0.0.1:5555
    dreamx-serve backend=constant max_batch=32 address=ipc:///tmp/dreamx.sock
    dreamx-serve backend=oracle backend_kwargs.height=128 backend_kwargs.width=128

``python -m world_model.serve --json '{...}'`` starts the same server from a JSON ``ServerConfig`` without
Hydra; the env's embedded launcher uses it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import threading
from typing import Any

from world_model.backends import DEFAULT_BACKEND
from world_model.serve.requests import Limits
from world_model.serve.server import ServerConfig, SimulatorServer


def server_config(values: dict[str, Any]) -> ServerConfig:
    """A ``ServerConfig`` from plain values (a Hydra config or JSON), with clear errors for unknown keys."""
    values = dict(values)
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown server option(s) {unknown}; options are {sorted(known)}")
    if values.get("backend") is None:
        values["backend"] = DEFAULT_BACKEND
    values["backend_kwargs"] = dict(values.get("backend_kwargs") or {})
    values["limits"] = Limits(**dict(values.get("limits") or {}))
    return ServerConfig(**values)


def keep_freed_memory() -> None:
    """Let glibc reuse freed frame buffers instead of returning them to the OS after every batch: each
    batch allocates megabytes of frames, and fresh pages cost a page fault each (slow in VMs; this made
    the constant backend's frame fill 7x slower). Only done in a dedicated server process."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 512 << 20)


def run(config: ServerConfig) -> None:
    """Serve until SIGTERM/SIGINT (or the parent process dies, when ``parent_pid`` is set)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    keep_freed_memory()
    server = SimulatorServer(config)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: server.stop())
    server.serve_forever()


def main() -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    configs = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "server"))

    @hydra.main(version_base=None, config_path=configs, config_name="default")
    def _main(cfg: DictConfig) -> None:
        run(server_config(OmegaConf.to_container(cfg, resolve=True)))

    _main()


if __name__ == "__main__":
    main()
