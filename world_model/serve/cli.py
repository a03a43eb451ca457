"""``dreamx-serve``: run the simulator server (Hydra entry point; configs in ``configs/server/``).

    dreamx-serve                                   # default backend, tcp://127.0.0.1:5555
    dreamx-serve backend=constant max_batch=32 address=ipc:///tmp/dreamx.sock
    dreamx-serve backend=oracle backend_kwargs.height=128 backend_kwargs.width=128

Scale-out (``world_model.serve.broker``): one broker, any number of workers (one per GPU or host), envs
pointed at the broker's ``address`` as at a single server::

    dreamx-serve role=broker address=tcp://127.0.0.1:5555 worker_address=tcp://127.0.0.1:5556
    dreamx-serve role=worker broker=tcp://127.0.0.1:5556 backend=learned worker_name=gpu0
    dreamx-serve role=worker broker=tcp://127.0.0.1:5556 backend=learned worker_name=gpu1

Workers on other hosts need CURVE: the broker gets ``curve_secret_key``/``curve_public_key`` and the
workers' public keys in ``worker_public_keys``; each worker gets its own keypair and ``broker_public_key``.

``python -m world_model.serve --json '{...}'`` starts the same from JSON (a ``ServerConfig``, or with
``"role": "broker"`` a ``BrokerConfig``) without Hydra; the env's embedded launcher uses it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
from typing import Any

import zmq

from world_model.backend_registry import DEFAULT_BACKEND
from world_model.host_memory import keep_freed_memory
from world_model.options import check_options, model_flag_overrides
from world_model.serve.broker import Broker, BrokerConfig
from world_model.serve.server import ServerConfig, SimulatorServer
from world_model.wire.requests import Limits

ROLES = ("server", "broker", "worker")


def server_config(values: dict[str, Any]) -> ServerConfig:
    """A ``ServerConfig`` from plain values (a Hydra config or JSON), with clear errors for unknown keys."""
    values = dict(values)
    check_options(values, ServerConfig, "server")
    if values.get("backend") is None:
        values["backend"] = DEFAULT_BACKEND
    values["backend_kwargs"] = dict(values.get("backend_kwargs") or {})
    values["limits"] = Limits(**dict(values.get("limits") or {}))
    return ServerConfig(**values)


def role_config(values: dict[str, Any]) -> ServerConfig | BrokerConfig:
    """The config for ``values["role"]`` (server, broker or worker) from the flat option set of
    ``configs/server/default.yaml``: options that belong to the other role are ignored."""
    values = dict(values)
    role = values.pop("role", None) or "server"
    if role not in ROLES:
        raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
    server_keys = {f.name for f in dataclasses.fields(ServerConfig)}
    broker_keys = {f.name for f in dataclasses.fields(BrokerConfig)}
    unknown = sorted(set(values) - server_keys - broker_keys)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; options are {sorted(server_keys | broker_keys)}")
    if role == "broker":
        picked = {k: v for k, v in values.items() if k in broker_keys}
        picked["worker_public_keys"] = list(picked.get("worker_public_keys") or [])
        return BrokerConfig(**picked)
    if role == "worker" and not values.get("broker"):
        raise ValueError("role=worker needs broker=tcp://HOST:PORT (the broker's worker_address)")
    if role == "server" and values.get("broker"):
        raise ValueError(f"broker={values['broker']} is an option of role=worker; add role=worker")
    return server_config({k: v for k, v in values.items() if k in server_keys})


def run(config: ServerConfig | BrokerConfig) -> None:
    """Serve (or broker) until SIGTERM/SIGINT, or until the parent process dies when ``parent_pid`` is set."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if isinstance(config, BrokerConfig):
        server: Broker | SimulatorServer = Broker(config)
    else:
        keep_freed_memory()
        server = SimulatorServer(config)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: server.stop())
    try:
        server.serve_forever()
    finally:
        # a worker's goodbye (also a crashed one's) may still be queued on its socket, closed with a
        # linger: let it go out
        zmq.Context.instance().destroy(linger=0)


def main() -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    configs = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "server"))

    @hydra.main(version_base=None, config_path=configs, config_name="default")
    def _main(cfg: DictConfig) -> None:
        run(role_config(OmegaConf.to_container(cfg, resolve=True)))

    sys.argv[1:] = model_flag_overrides(sys.argv[1:], "backend_kwargs")  # the model flags
    _main()


if __name__ == "__main__":
    main()
