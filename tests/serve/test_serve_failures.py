"""When things end badly: a laned env's owner killed leaves nothing behind, a crashed worker is reported as
crashed (not as having said goodbye), and a request too large for the server is refused with the reason
instead of going unanswered."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from process_checks import alive

from world_model.constant import ConstantWorldModel
from world_model.serve.broker import Broker, BrokerConfig
from world_model.serve.server import ServerConfig, SimulatorServer
from world_model.wire.client import ClientConfig, RequestTooLarge, ServerError, SimulatorClient
from world_model.wire.protocol import ErrorCode
from world_model.wire.requests import SceneSpec

FAST = {"heartbeat_s": 0.1, "heartbeat_timeout_s": 2.0}


def still_poses(b: int, t: int = 1, k: int = 1) -> np.ndarray:
    return np.tile(np.eye(4), (b, t, k, 1, 1))


def test_a_killed_owner_of_a_laned_env_leaves_no_folder_or_process_behind():
    code = (
        "import time; from dreamx_env.envs.explore import ExploreVectorEnv; "
        "env = ExploreVectorEnv(num_envs=2, backend='constant', lanes=2); env.reset(seed=0); "
        "cluster = env.core.embedded; print(cluster.folder, *cluster.pids, flush=True); time.sleep(60)"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        folder, *pids = owner.stdout.readline().split()
        assert folder and os.path.isdir(folder) and len(pids) == 3
        owner.kill()  # no chance to clean up: the cluster's own processes must
        owner.wait(5)
        deadline = time.monotonic() + 10
        while (os.path.exists(folder) or any(alive(int(p)) for p in pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(int(p)) for p in pids), "a broker or worker outlived its owner"
        assert not os.path.exists(folder), f"{folder} was left behind: {os.listdir(folder)}"
    finally:
        owner.kill()


def _broker_and_worker(tmp_path, serving) -> tuple[SimulatorServer, list, SimulatorClient]:
    cfg = BrokerConfig(address=f"ipc://{tmp_path}/c.sock", worker_address=f"ipc://{tmp_path}/w.sock", **FAST)
    serving(Broker(cfg))
    worker = SimulatorServer(
        ServerConfig(broker=cfg.worker_address, worker_name="w0"), backend=ConstantWorldModel()
    )
    errors = serving(worker)
    client = SimulatorClient(cfg.address, ClientConfig(timeout_s=5.0))
    deadline = time.monotonic() + 10
    while client.ping()["workers"] < 1:
        assert time.monotonic() < deadline, "the worker did not register"
        time.sleep(0.02)
    return worker, errors, client


def test_a_crashed_worker_is_reported_as_crashed_with_its_error(tmp_path, serving):
    worker, errors, client = _broker_and_worker(tmp_path, serving)
    sessions = client.open([SceneSpec(0)]).sessions

    def broken():
        raise RuntimeError("the disk is full")

    worker._expire_idle = broken  # runs in the worker's loop at least once a second
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        time.sleep(0.02)
    assert errors and "the disk is full" in str(errors[0])
    with pytest.raises(ServerError) as err:
        client.step(sessions, still_poses(1))
    assert err.value.code == ErrorCode.WORKER_LOST
    assert "worker 'w0', which crashed" in err.value.message
    assert "(RuntimeError: the disk is full)" in err.value.message
    assert "goodbye" not in err.value.message


def test_a_stopped_worker_is_reported_as_shut_down(tmp_path, serving):
    worker, errors, client = _broker_and_worker(tmp_path, serving)
    sessions = client.open([SceneSpec(0)]).sessions
    worker.stop()
    deadline = time.monotonic() + 10
    while client.ping()["workers"] > 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(ServerError, match=r"worker 'w0', which shut down [0-9.]+ s ago \(it was stopped\)"):
        client.step(sessions, still_poses(1))
    assert errors == []


def test_a_request_over_the_servers_message_limit_is_refused_with_the_reason(tmp_path, serving):
    limit = 64 << 10  # 512 poses of 128 bytes
    cfg = ServerConfig(address=f"ipc://{tmp_path}/s.sock", max_message_bytes=limit)
    serving(SimulatorServer(cfg, backend=ConstantWorldModel()))
    client = SimulatorClient(cfg.address, ClientConfig(timeout_s=2.0))
    assert client.info()["server"]["max_message_bytes"] == limit
    assert client.max_message_bytes == limit  # learned from INFO
    sessions = client.open([SceneSpec(0)]).sessions
    assert client.step(sessions, still_poses(1, 8, 64)).frames["rgb"].shape[:2] == (1, 8)  # at the limit
    start = time.monotonic()
    with pytest.raises(RequestTooLarge, match=f"'relative_poses' is 73,728 bytes, over the {limit:,} bytes"):
        client.step(sessions, still_poses(1, 9, 64))
    assert time.monotonic() - start < 1.0  # refused at once, not after waiting for an answer
    client.step(sessions, still_poses(1))  # the connection is fine


def test_a_client_refuses_a_frame_over_the_default_limit_before_sending():
    client = SimulatorClient("ipc:///tmp/dreamx-nobody-here.sock", ClientConfig(timeout_s=0.5))
    big = np.zeros((1024, 64, 33, 4, 4))  # 277 MB, over the servers' default 256 MiB (zeros: not touched)
    with pytest.raises(RequestTooLarge, match="over the 268,435,456 bytes .* raise max_message_bytes"):
        client.step([1], big)
    client.close()
