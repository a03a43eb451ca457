"""Scale-out: a broker with two worker processes on loopback. Sessions spread over the workers and stay
pinned; a killed worker's sessions fail clearly while the others keep working; garbage gets ERRORs; the
security rules hold; nothing is left running."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from process_checks import alive

from dreamx_env.envs.explore import ExploreEnv, ExploreVectorEnv
from dreamx_env.planning import imagine
from world_model.constant import ConstantConfig, ConstantWorldModel
from world_model.serve.broker import HANDLE_SHIFT, Broker, BrokerConfig
from world_model.serve.cluster import ClusterConfig, LocalCluster
from world_model.serve.link import BrokerRefused
from world_model.serve.server import ServerConfig, SimulatorServer
from world_model.wire.client import ClientConfig, ServerError, SimulatorClient
from world_model.wire.protocol import ErrorCode, Message, MsgType, decode, encode
from world_model.wire.requests import SceneSpec

FAST = {"heartbeat_s": 0.1, "heartbeat_timeout_s": 1.0}


def forward_poses(b: int, k: int = 4, step: float = 0.1) -> np.ndarray:
    rel = np.tile(np.eye(4), (b, 1, k, 1, 1))
    rel[:, 0, :, 2, 3] = step * np.arange(1, k + 1)  # camera +z is forward
    return rel


def owners(client: SimulatorClient) -> dict[int, str]:
    """Worker key (session id >> 32) -> worker name, from the broker section of INFO."""
    return {w["handle_base"] >> HANDLE_SHIFT: w["name"] for w in client.info()["broker"]["workers"]}


@pytest.fixture
def cluster():
    with LocalCluster(ClusterConfig(workers=2, backend="constant", **FAST)) as c:
        pids = c.pids
        yield c
    assert not any(alive(pid) for pid in pids), "a broker or worker process outlived close()"
    assert not os.path.exists(c.folder)


def test_sessions_spread_over_workers_and_stay_pinned(cluster):
    clients = [SimulatorClient(cluster.address) for _ in range(4)]
    opened = [c.open([SceneSpec(i), SceneSpec(i + 10)]) for i, c in enumerate(clients)]
    sessions = [o.sessions for o in opened]
    names = owners(clients[0])
    held_by = [{names[h >> HANDLE_SHIFT] for h in s} for s in sessions]
    assert all(len(h) == 1 for h in held_by), "the sessions of one OPEN share a worker"
    assert sorted(h.pop() for h in held_by) == ["worker0", "worker0", "worker1", "worker1"]
    for _ in range(3):  # state lives on the owning worker: a wrong route would be an unknown session
        results = [c.step(s, forward_poses(2)) for c, s in zip(clients, sessions, strict=True)]
    for o, r in zip(opened, results, strict=True):
        moved = r.frames["poses"][:, 0, -1, :3, 3] - o.frames["poses"][:, :3, 3]
        assert np.allclose(np.linalg.norm(moved, axis=-1), 1.2, atol=0.05)  # 3 chunks of 0.4 m
    info = clients[0].info()
    assert info["backend"]["name"] == "constant"
    assert sorted(w["sessions"] for w in info["broker"]["workers"]) == [4, 4]
    forks = clients[0].fork(sessions[0][0], 2)  # forks live with their original
    assert {f >> HANDLE_SHIFT for f in forks} == {sessions[0][0] >> HANDLE_SHIFT}
    clients[0].step([sessions[0][0], *forks], forward_poses(3))
    assert clients[0].ping()["sessions"] == sorted([*sessions[0], *forks])
    clients[0].close_sessions(forks)
    assert clients[0].ping()["sessions"] == sorted(sessions[0])


def test_a_killed_worker_fails_its_sessions_clearly_and_the_rest_keep_working(cluster):
    timeout = 3.0
    a, b = (SimulatorClient(cluster.address, ClientConfig(timeout_s=timeout)) for _ in range(2))
    sa, sb = a.open([SceneSpec(0)]).sessions, b.open([SceneSpec(1)]).sessions
    names = owners(a)
    victim, survivor = names[sa[0] >> HANDLE_SHIFT], names[sb[0] >> HANDLE_SHIFT]
    assert victim != survivor
    a.step(sa, forward_poses(1))
    os.kill(cluster.workers[int(victim[-1])].pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(ServerError) as err:
        a.step(sa, forward_poses(1))
    assert time.monotonic() - start < timeout
    assert err.value.code == ErrorCode.WORKER_LOST
    text = str(err.value)
    assert f"worker {victim!r}" in text and str(sa[0]) in text and cluster.address in text, text
    assert b.step(sb, forward_poses(1)).frames["rgb"].shape == (1, 1, 1, 64, 64, 3)  # still served
    fresh = a.open([SceneSpec(2)]).sessions  # new sessions go to the survivor
    assert names[fresh[0] >> HANDLE_SHIFT] == survivor
    a.step(fresh, forward_poses(1))
    start = time.monotonic()
    with pytest.raises(ServerError, match="worker_lost"):  # and it stays a clear error, at once
        a.step(sa, forward_poses(1))
    assert time.monotonic() - start < 0.5
    info = b.info()["broker"]
    assert [w["name"] for w in info["workers"]] == [survivor]
    assert info["lost_workers"][0]["name"] == victim


def test_a_paused_worker_is_dropped_and_comes_back_as_a_new_worker(cluster):
    client = SimulatorClient(cluster.address, ClientConfig(timeout_s=3.0))
    session = client.open([SceneSpec(0)]).sessions
    victim = owners(client)[session[0] >> HANDLE_SHIFT]
    pid = cluster.workers[int(victim[-1])].pid
    os.kill(pid, signal.SIGSTOP)  # a long GC pause, a network partition
    try:
        with pytest.raises(ServerError, match="stopped answering"):
            client.step(session, forward_poses(1))
    finally:
        os.kill(pid, signal.SIGCONT)
    cluster.wait_for_workers(2, timeout_s=5.0)  # it learns it was dropped and registers again
    assert sorted(owners(client).values()) == ["worker0", "worker1"]
    with pytest.raises(ServerError, match="worker_lost"):  # under a new handle base: old ids stay lost
        client.step(session, forward_poses(1))
    others = [SimulatorClient(cluster.address) for _ in range(2)]
    opened = [c.open([SceneSpec(i)]).sessions[0] for i, c in enumerate(others)]
    assert len({h >> HANDLE_SHIFT for h in opened}) == 2


def test_garbage_gets_errors_and_the_broker_keeps_serving(cluster):
    good = SimulatorClient(cluster.address)
    session = good.open([SceneSpec(3)]).sessions
    other = SimulatorClient(cluster.address).open([SceneSpec(4)]).sessions
    keys = list(owners(good))
    stranger = (max(keys) + 7) << HANDLE_SHIFT
    hostile = zmq.Context.instance().socket(zmq.DEALER)
    hostile.setsockopt(zmq.LINGER, 0)
    hostile.connect(cluster.address)

    def step(rid, sessions, poses=True):
        arrays = {"relative_poses": forward_poses(len(sessions))} if poses else {}
        return [bytes(f) for f in encode(Message(MsgType.STEP, rid, {"sessions": sessions}, arrays))]

    bad_inputs = [
        ([b"\x00\xff garbage"], ErrorCode.PROTOCOL),
        ([b"DX" + bytes([99, 3]) + (7).to_bytes(8, "big"), b"\x80"], ErrorCode.VERSION),
        ([bytes(encode(Message(MsgType.STEP, 8, {}))[0]), b"\xc1"], ErrorCode.PROTOCOL),
        ([bytes(f) for f in encode(Message(MsgType.READY, 9, {"name": "me"}))], ErrorCode.BAD_REQUEST),
        (step(10, "all"), ErrorCode.BAD_REQUEST),
        (step(11, [keys[0] << HANDLE_SHIFT | 1, keys[1] << HANDLE_SHIFT | 1]), ErrorCode.BAD_REQUEST),
        (step(12, [stranger]), ErrorCode.UNKNOWN_SESSION),
        (step(13, other), ErrorCode.UNKNOWN_SESSION),  # forwarded: the worker guards its client's sessions
        (step(14, session, poses=False), ErrorCode.BAD_REQUEST),  # forwarded: no relative_poses
    ]
    replies = []
    for frames, code in bad_inputs:
        hostile.send_multipart(frames)
        assert hostile.poll(3000), f"no answer to {frames[:1]}"
        replies.append(decode(hostile.recv_multipart()))
        assert replies[-1].type == MsgType.ERROR and replies[-1].meta["code"] == code, replies[-1].meta
        assert good.step(session, forward_poses(1)).frames["rgb"].shape[0] == 1
    assert "version 99" in replies[1].meta["message"] and replies[1].request_id == 7
    assert "different workers" in replies[5].meta["message"]
    assert "not open for this client" in replies[7].meta["message"]
    hostile.close()


def test_envs_and_planners_work_through_the_broker_unchanged(cluster):
    envs = ExploreVectorEnv(num_envs=3, backend="constant", server=cluster.address)
    env = ExploreEnv(backend="constant", server=cluster.address)
    try:
        envs.reset(seed=0)
        env.reset(seed=1)
        for _ in range(3):
            envs.step(envs.action_space.sample())
            env.step(env.action_space.sample())
        plan = imagine(env, np.stack([env.action_space.sample() for _ in range(8)]).reshape(4, 2, -1))
        assert plan.returns.shape == (4,)
        held = {h >> HANDLE_SHIFT for h in [*envs.unwrapped.core.sessions, *env.unwrapped.core.sessions]}
        assert len(held) == 2, "the two envs' sessions went to different workers"
    finally:
        envs.close()
        env.close()


def test_a_broker_without_workers_says_how_to_start_one(tmp_path, serving):
    cfg = BrokerConfig(address=f"ipc://{tmp_path}/c.sock", worker_address=f"ipc://{tmp_path}/w.sock")
    broker = Broker(cfg)
    serving(broker)
    assert broker.ready.wait(5)
    client = SimulatorClient(cfg.address)
    assert client.ping()["workers"] == 0
    with pytest.raises(ServerError, match=f"role=worker broker={cfg.worker_address}") as err:
        client.open([SceneSpec(0)])
    assert err.value.code == ErrorCode.NO_WORKERS


def test_a_worker_registers_again_with_a_restarted_broker(tmp_path, serving):
    cfg = BrokerConfig(address=f"ipc://{tmp_path}/c.sock", worker_address=f"ipc://{tmp_path}/w.sock", **FAST)
    first = Broker(cfg)
    serving(first)
    worker = SimulatorServer(ServerConfig(broker=cfg.worker_address), backend=ConstantWorldModel())
    serving(worker)
    client = SimulatorClient(cfg.address)
    deadline = time.monotonic() + 5
    while client.ping()["workers"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    session = client.open([SceneSpec(0)]).sessions
    first.stop()
    time.sleep(0.3)
    second = Broker(cfg)
    serving(second)
    deadline = time.monotonic() + 5
    while client.ping()["workers"] < 1:  # the worker noticed the silence and registered again
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(ServerError, match="earlier broker run") as err:
        client.step(session, forward_poses(1))
    assert err.value.code == ErrorCode.UNKNOWN_SESSION
    assert worker.table.n_sessions == 0  # the old sessions were dropped
    client.step(client.open([SceneSpec(1)]).sessions, forward_poses(1))


def test_a_worker_with_another_backend_is_refused(tmp_path, serving):
    cfg = BrokerConfig(address=f"ipc://{tmp_path}/c.sock", worker_address=f"ipc://{tmp_path}/w.sock", **FAST)
    broker = Broker(cfg)
    serving(broker)
    serving(SimulatorServer(ServerConfig(broker=cfg.worker_address), backend=ConstantWorldModel()))
    deadline = time.monotonic() + 10.0
    while not broker.workers and time.monotonic() < deadline:  # the 64x64 worker registers first
        time.sleep(0.02)
    small = ConstantWorldModel(ConstantConfig(height=32, width=32))
    errors = serving(SimulatorServer(ServerConfig(broker=cfg.worker_address), backend=small), ready=False)
    deadline = time.monotonic() + 5.0
    while not errors and time.monotonic() < deadline:  # its serve_forever ends with the refusal
        time.sleep(0.02)
    assert len(errors) == 1 and isinstance(errors[0], BrokerRefused), errors
    assert "same backend, resolution and checkpoint" in str(errors[0])
    assert len(broker.workers) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_curve_broker_admits_only_listed_workers(serving):
    broker_pub, broker_sec = (k.decode() for k in zmq.curve_keypair())
    listed_pub, listed_sec = (k.decode() for k in zmq.curve_keypair())
    cfg = BrokerConfig(
        address=f"tcp://127.0.0.1:{free_port()}",
        worker_address=f"tcp://127.0.0.1:{free_port()}",
        curve_secret_key=broker_sec,
        curve_public_key=broker_pub,
        worker_public_keys=[listed_pub],
        **FAST,
    )
    broker = Broker(cfg)
    serving(broker)
    base = {"broker": cfg.worker_address, "broker_public_key": broker_pub}
    listed = ServerConfig(**base, curve_public_key=listed_pub, curve_secret_key=listed_sec, worker_name="ok")
    serving(SimulatorServer(listed, backend=ConstantWorldModel()))
    serving(SimulatorServer(ServerConfig(**base, worker_name="stranger"), backend=ConstantWorldModel()))
    client = SimulatorClient(cfg.address, ClientConfig(server_public_key=broker_pub))
    deadline = time.monotonic() + 5
    while client.ping()["workers"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.2)  # time for the stranger to try (READY is re-sent every second)
    assert [w.name for w in broker.workers.values()] == ["ok"]
    client.step(client.open([SceneSpec(0)]).sessions, forward_poses(1))


def test_bind_and_connect_policy():
    with pytest.raises(ValueError, match="CURVE"):
        Broker(BrokerConfig(address="tcp://0.0.0.0:5555"))
    with pytest.raises(ValueError, match="CURVE"):
        Broker(BrokerConfig(worker_address="tcp://0.0.0.0:5556"))
    public, secret = (k.decode() for k in zmq.curve_keypair())
    keys = {"curve_secret_key": secret, "curve_public_key": public}
    with pytest.raises(ValueError, match="worker_public_keys"):
        Broker(BrokerConfig(worker_address="tcp://0.0.0.0:5556", **keys))
    Broker(
        BrokerConfig(
            address="tcp://0.0.0.0:5555",
            worker_address="tcp://0.0.0.0:5556",
            worker_public_keys=[public],
            **keys,
        )
    )
    with pytest.raises(ValueError, match="broker_public_key"):
        SimulatorServer(ServerConfig(broker="tcp://10.1.2.3:5556", backend="constant"))
    SimulatorServer(ServerConfig(broker="tcp://10.1.2.3:5556", broker_public_key=public, backend="constant"))


def test_dreamx_serve_broker_and_worker_roles(tmp_path):
    front, back = f"ipc://{tmp_path}/c.sock", f"ipc://{tmp_path}/w.sock"
    serve = [sys.executable, "-m", "world_model.serve"]
    refused = subprocess.run([*serve, "role=worker"], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode != 0 and "role=worker needs broker=" in refused.stderr + refused.stdout
    procs = [
        subprocess.Popen(
            [*serve, "role=broker", f"address={front}", f"worker_address={back}"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*serve, "role=worker", f"broker={back}", "backend=constant", "worker_name=cli"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        client = SimulatorClient(front, ClientConfig(timeout_s=30))
        deadline = time.monotonic() + 30
        while client.ping()["workers"] < 1:
            assert time.monotonic() < deadline, "the worker did not register"
            time.sleep(0.1)
        assert [w["name"] for w in client.info()["broker"]["workers"]] == ["cli"]
        client.close()
    finally:
        for p in procs[::-1]:
            p.terminate()
        assert [p.wait(10) for p in procs] == [0, 0]
    assert os.listdir(tmp_path) == []  # no Hydra output folders, and the sockets were removed
