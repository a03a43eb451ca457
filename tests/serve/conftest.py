import threading
import uuid

import pytest
import zmq

from world_model.constant import ConstantWorldModel
from world_model.serve.server import ServerConfig, SimulatorServer


class SpyBackend(ConstantWorldModel):
    """The constant backend, recording the batch size of every generate call."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def generate(self, sessions, relative_poses, events):
        self.batches.append(len(sessions))
        return super().generate(sessions, relative_poses, events)


@pytest.fixture
def serve():
    """Start in-process servers over inproc://; returns (address, backend, server); stops them afterwards."""
    started = []

    def start(backend=None, **overrides):
        backend = backend or SpyBackend()
        cfg = ServerConfig(address=f"inproc://test-{uuid.uuid4().hex[:8]}", backend="constant", **overrides)
        server = SimulatorServer(cfg, backend=backend, context=zmq.Context.instance())
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        assert server.ready.wait(10)
        started.append((server, thread))
        return cfg.address, backend, server

    yield start
    for server, thread in started:
        server.stop()
        thread.join(5)
        assert not thread.is_alive()
