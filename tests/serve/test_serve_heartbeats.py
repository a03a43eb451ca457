"""Clients that stop heartbeating lose their sessions after ``client_heartbeat_timeout_s``, on a server and
behind a broker, while an idle client that heartbeats keeps them and one that never heartbeats keeps the
idle time-out; a broker holds ``max_sessions_per_client`` over all its workers."""

import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from world_model.constant import ConstantWorldModel
from world_model.serve.broker import HANDLE_SHIFT, Broker, BrokerConfig
from world_model.serve.server import ServerConfig, SimulatorServer
from world_model.wire.client import ClientConfig, ServerError, SimulatorClient
from world_model.wire.protocol import ErrorCode, Message, MsgType, decode, encode
from world_model.wire.requests import SceneSpec

HEARTBEAT_TIMEOUT_S = 0.6
FAST = {"heartbeat_s": 0.1, "heartbeat_timeout_s": 2.0}  # broker <-> worker


def still_poses(b: int) -> np.ndarray:
    return np.tile(np.eye(4), (b, 1, 1, 1, 1))


def wait_for(condition, what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def held(servers: list[SimulatorServer]) -> set[int]:
    """Every session the servers' tables hold, of any client."""
    return {h for s in servers for c in list(s.table.clients.values()) for h in c.sessions}


def start(serving, tmp_path, role: str, workers: int = 2, broker: dict | None = None, **server):
    """A server, or a broker with ``workers`` workers, on ipc://; returns (address, broker, servers)."""
    if role == "server":
        cfg = ServerConfig(address=f"ipc://{tmp_path}/server.sock", **server)
        srv = SimulatorServer(cfg, backend=ConstantWorldModel())
        serving(srv)
        return cfg.address, None, [srv]
    bcfg = BrokerConfig(
        address=f"ipc://{tmp_path}/c.sock",
        worker_address=f"ipc://{tmp_path}/w.sock",
        **FAST,
        **(broker or {}),
    )
    brk = Broker(bcfg)
    serving(brk)
    servers = []
    for i in range(workers):
        cfg = ServerConfig(broker=bcfg.worker_address, worker_name=f"w{i}", **server)
        servers.append(SimulatorServer(cfg, backend=ConstantWorldModel()))
        serving(servers[-1])
    with SimulatorClient(bcfg.address) as probe:
        wait_for(lambda: probe.ping()["workers"] == workers, "the workers to register")
    return bcfg.address, brk, servers


KILLED_CLIENT = """
import sys, time
from world_model.wire.client import SimulatorClient
from world_model.wire.requests import SceneSpec
client = SimulatorClient(sys.argv[1])
client.info()  # learns the server's heartbeat time-out
print(*client.open([SceneSpec(0), SceneSpec(1)]).sessions, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("role", ["server", "broker"])
def test_sessions_of_a_client_whose_heartbeats_stop_are_closed_after_the_heartbeat_timeout(
    serving, tmp_path, role
):
    address, broker, servers = start(
        serving, tmp_path, role, idle_timeout_s=60.0, client_heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S
    )
    beating = SimulatorClient(address)
    assert beating.info()["server"]["client_heartbeat_timeout_s"] == HEARTBEAT_TIMEOUT_S
    never = SimulatorClient(address, ClientConfig(heartbeat_s=0))  # an older client: no heartbeats
    mine = beating.open([SceneSpec(2)]).sessions + never.open([SceneSpec(3)]).sessions

    # a raw protocol user that heartbeats once, then goes quiet
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(address)
    raw.send_multipart(encode(Message(MsgType.OPEN, 1, {"scenes": [{"scene_seed": 4}]})))
    assert raw.poll(5000)
    quiet = decode(raw.recv_multipart()).meta["sessions"]
    raw.send_multipart(encode(Message(MsgType.HEARTBEAT, 0)))  # never answered

    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, address], stdout=subprocess.PIPE, text=True
    )
    try:
        theirs = [int(h) for h in killed.stdout.readline().split()]
        assert len(theirs) == 2 and set(theirs) <= held(servers)
        killed.kill()
        killed.wait(5)
        gone = time.monotonic()
        wait_for(
            lambda: not (set(theirs) | set(quiet)) & held(servers), "the silent clients' sessions to close"
        )
        assert time.monotonic() - gone < 3 * HEARTBEAT_TIMEOUT_S + 1.0
    finally:
        killed.kill()
        killed.wait(5)
    if broker is not None:  # the workers told the broker, whose per-client books follow
        wait_for(
            lambda: not {h for c in broker.clients.values() for h in c.sessions} & (set(theirs) | set(quiet)),
            "the broker to forget the closed sessions",
        )

    time.sleep(2 * HEARTBEAT_TIMEOUT_S)  # idle, well past the heartbeat time-out
    assert set(mine) <= held(servers)
    assert beating.step(mine[:1], still_poses(1)).frames["rgb"].shape[0] == 1
    assert never.step(mine[1:], still_poses(1)).frames["rgb"].shape[0] == 1

    raw.send_multipart(
        encode(Message(MsgType.STEP, 2, {"sessions": quiet}, {"relative_poses": still_poses(1)}))
    )
    assert raw.poll(5000)
    err = decode(raw.recv_multipart())
    raw.close()
    assert err.type == MsgType.ERROR and err.meta["code"] == ErrorCode.UNKNOWN_SESSION
    assert f"closed {HEARTBEAT_TIMEOUT_S:g} s after its client's heartbeats stopped" in err.meta["message"]
    beating.close()
    never.close()


def test_heartbeats_do_not_extend_the_idle_timeout(serving, tmp_path):
    _, _, (server,) = start(serving, tmp_path, "server", idle_timeout_s=0.5, client_heartbeat_timeout_s=60.0)
    client = SimulatorClient(server.config.address)  # heartbeats, but the idle time-out still holds
    client.info()
    session = client.open([SceneSpec(0)]).sessions
    wait_for(lambda: not held([server]), "the idle session to close")
    with pytest.raises(ServerError, match="closed after 0.5 s without requests from its client"):
        client.step(session, still_poses(1))
    client.close()


def test_a_broker_holds_the_per_client_quota_over_all_its_workers(serving, tmp_path):
    address, broker, servers = start(serving, tmp_path, "broker", broker={"max_sessions_per_client": 3})
    greedy, other = SimulatorClient(address), SimulatorClient(address)
    mine = [h for _ in range(3) for h in greedy.open([SceneSpec(0)]).sessions]
    assert len({h >> HANDLE_SHIFT for h in mine}) == 2  # on both workers: no one worker sees 3 of them
    for call in (lambda: greedy.open([SceneSpec(1)]), lambda: greedy.fork(mine[0])):
        with pytest.raises(ServerError, match="holds 3 of at most 3 sessions per client") as err:
            call()
        assert err.value.code == ErrorCode.TOO_MANY_SESSIONS
        assert "broker's max_sessions_per_client" in err.value.message
    assert len(held(servers)) == 3  # nothing was opened by the refused requests
    assert len(other.open([SceneSpec(i) for i in range(3)]).sessions) == 3  # another client is served
    greedy.close_sessions(mine[:1])
    assert len(greedy.fork(mine[1])) == 1
    assert greedy.info()["broker"]["max_sessions_per_client"] == 3
    greedy.close()
    other.close()


def test_a_brokers_quota_frees_up_when_workers_close_idle_sessions(serving, tmp_path):
    address, broker, servers = start(
        serving, tmp_path, "broker", workers=1, broker={"max_sessions_per_client": 2}, idle_timeout_s=0.3
    )
    client = SimulatorClient(address, ClientConfig(heartbeat_s=0))
    client.open([SceneSpec(0), SceneSpec(1)])
    with pytest.raises(ServerError, match="holds 2 of at most 2"):
        client.open([SceneSpec(2)])
    wait_for(lambda: not held(servers), "the worker to close the idle sessions")
    wait_for(lambda: not any(c.sessions for c in broker.clients.values()), "the broker to hear of it")
    assert len(client.open([SceneSpec(2), SceneSpec(3)]).sessions) == 2
    client.close()


def test_timeouts_and_quotas_are_checked():
    with pytest.raises(ValueError, match="client_heartbeat_timeout_s must be a positive number"):
        ServerConfig(client_heartbeat_timeout_s=0)
    with pytest.raises(ValueError, match="max_sessions_per_client must be a positive integer"):
        BrokerConfig(max_sessions_per_client=0)
