"""Embedded servers, dead servers and orphans: the client never hangs and nothing is left running."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from process_checks import alive

from dreamx_env.envs.explore import ExploreEnv
from dreamx_env.launcher import launch
from world_model.backend_registry import DEFAULT_BACKEND, make_backend
from world_model.wire.client import ClientConfig, ServerUnavailable, SimulatorClient


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_killed_server_raises_a_clear_error_within_the_timeout():
    env = ExploreEnv(backend="constant", timeout_s=1.5)
    try:
        env.reset(seed=0)
        env.step(env.action_space.sample())
        server = env.unwrapped.core.embedded
        os.kill(server.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(ServerUnavailable, match=server.address.replace("/", ".")):
            env.step(env.action_space.sample())
        assert time.monotonic() - start < 1.5 + 1.0
    finally:
        env.close()


def test_unreachable_address_fails_fast_and_names_it():
    client = SimulatorClient("ipc:///tmp/dreamx-nobody-here.sock", ClientConfig(timeout_s=0.5))
    start = time.monotonic()
    with pytest.raises(ServerUnavailable, match="dreamx-nobody-here"):
        client.ping()
    assert time.monotonic() - start < 1.5
    client.close()


def test_close_leaves_no_process_or_socket_behind():
    env = ExploreEnv(backend="constant")
    env.reset(seed=1)
    server = env.unwrapped.core.embedded
    pid, path = server.pid, server.address[len("ipc://") :]
    assert alive(pid) and os.path.exists(path)
    env.close()
    assert not alive(pid) and not os.path.exists(path)
    env.close()  # closing twice is allowed


def test_embedded_server_exits_when_its_parent_dies():
    code = (
        "from dreamx_env.launcher import launch; import time; "
        "s = launch(backend='constant'); print(s.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(parent.stdout.readline())
        assert alive(server_pid)
        parent.kill()  # no chance to clean up: only the watchdog can stop the server
        parent.wait(5)
        assert wait_dead(server_pid, 5.0), "the orphaned server did not exit"
    finally:
        parent.kill()


def test_thread_mode_needs_no_process():
    with launch(backend="constant", mode="thread") as server:
        assert server.pid is None and server.address.startswith("inproc://")
        assert SimulatorClient(server.address).ping()["sessions"] == []


def test_a_server_that_cannot_start_reports_why():
    with pytest.raises(RuntimeError, match="has no option"):
        launch(backend="constant", backend_kwargs={"colour": "red"}, startup_timeout_s=20)


def test_backend_registry(tmp_path):
    assert DEFAULT_BACKEND in ("oracle", "learned")
    with pytest.raises(FileNotFoundError, match="dreamx-train"):
        make_backend("learned", weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="has no option"):
        make_backend("learned", wieghts="x")
    with pytest.raises(ValueError, match="choose one of"):
        make_backend("magic")
    backend = make_backend("constant", height=32, width=48)
    sid, frames, scene = backend.open(7)
    assert frames.rgb.shape == (1, 32, 48, 3) and scene.seed == 7
    assert np.array_equal(backend.open(7)[1].rgb, frames.rgb)  # same seed, same world


def test_dreamx_serve_cli_serves_with_hydra_overrides(tmp_path):
    address = f"ipc://{tmp_path}/cli.sock"
    cmd = [sys.executable, "-m", "world_model.serve", "backend=constant", f"address={address}", "max_batch=7"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = SimulatorClient(address, ClientConfig(timeout_s=30))
        info = client.info()
        assert info["backend"]["name"] == "constant" and info["server"]["max_batch"] == 7
        client.close()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert os.listdir(tmp_path) == []  # no Hydra output folders, and the socket was removed
