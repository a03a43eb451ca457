"""The server: batching, ownership, idempotent retries, hostile input, limits, bind policy."""

import threading
import time

import numpy as np
import pytest
import zmq

from world_model.constant import ConstantWorldModel
from world_model.events import EventRecord, parse_prompt
from world_model.geometry import pose_from_yaw_pitch
from world_model.serve.server import ServerConfig, SimulatorServer
from world_model.wire.addresses import check_bind_address
from world_model.wire.client import ClientConfig, ServerError, ServerUnavailable, SimulatorClient
from world_model.wire.protocol import ErrorCode, Message, MsgType, decode, encode
from world_model.wire.requests import SceneSpec


def still_poses(b: int, k: int = 4) -> np.ndarray:
    return np.tile(np.eye(4), (b, 1, k, 1, 1))


def forward_poses(b: int, k: int = 4, step: float = 0.1) -> np.ndarray:
    rel = still_poses(b, k)
    rel[:, 0, :, 2, 3] = step * np.arange(1, k + 1)  # camera +z is forward
    return rel


def raw_socket(address: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    return sock


def raw_reply(sock: zmq.Socket, timeout_ms: int = 3000) -> Message:
    assert sock.poll(timeout_ms), "the server did not answer"
    return decode(sock.recv_multipart())


def test_two_clients_are_batched_into_one_generate_call(serve):
    address, backend, server = serve(max_wait_ms=500.0, active_window_ms=5000.0)
    clients = [SimulatorClient(address) for _ in range(2)]
    sessions = [c.open([SceneSpec(i)]).sessions for i, c in enumerate(clients)]
    backend.batches.clear()
    barrier = threading.Barrier(2)
    results = [None, None]

    def step(i):
        barrier.wait()
        results[i] = clients[i].step(sessions[i], forward_poses(1))

    threads = [threading.Thread(target=step, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert backend.batches == [2], "both clients' steps must share one generate call"
    assert all(r.frames["rgb"].shape == (1, 1, 1, 64, 64, 3) for r in results)
    assert clients[0].info()["stats"]["batch_sizes"] == {"2": 1}


def test_a_lone_client_is_not_made_to_wait(serve):
    address, backend, _ = serve(max_wait_ms=2000.0)
    client = SimulatorClient(address)
    sessions = client.open([SceneSpec(0), SceneSpec(1)]).sessions
    start = time.perf_counter()
    for _ in range(5):
        client.step(sessions, forward_poses(2))
    assert time.perf_counter() - start < 1.0  # all active clients were waiting: no max_wait delay
    assert backend.batches[-5:] == [2] * 5


def test_garbage_and_wrong_versions_get_errors_while_others_are_served(serve):
    address, _, _ = serve()
    good = SimulatorClient(address)
    session = good.open([SceneSpec(3)]).sessions
    hostile = raw_socket(address)
    bad_inputs = [
        [b"\x00\xff garbage"],
        [b"DX" + bytes([99, 3]) + (7).to_bytes(8, "big"), b"\x80"],  # protocol version 99
        [bytes(encode(Message(MsgType.STEP, 8, {"sessions": "all"}))[0]), b"\xc1"],
        [bytes(f) for f in encode(Message(MsgType.REPLY, 9, {}))],  # a reply type sent to the server
        [bytes(f) for f in encode(Message(MsgType.STEP, 10, {"sessions": [10**6]}, {}))],
    ]
    expected = [
        ErrorCode.PROTOCOL,
        ErrorCode.VERSION,
        ErrorCode.PROTOCOL,
        ErrorCode.BAD_REQUEST,
        ErrorCode.BAD_REQUEST,
    ]
    replies = []
    for frames, code in zip(bad_inputs, expected, strict=True):
        hostile.send_multipart(frames)
        replies.append(raw_reply(hostile))
        assert replies[-1].type == MsgType.ERROR and replies[-1].meta["code"] == code, replies[-1].meta
        assert good.step(session, forward_poses(1)).frames["rgb"].shape[0] == 1  # still served
    assert "version 99 is not supported" in replies[1].meta["message"] and replies[1].request_id == 7
    hostile.close()


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda r: r.__setitem__((0, 0, 0, 0, 0), 2.0), "rigid"),
        (lambda r: r.__setitem__((0, 0, 0, 0, 3), np.nan), "finite"),
        (lambda r: r.__setitem__((0, 0, 0, 3, 0), 1.0), "rigid"),
    ],
)
def test_bad_poses_are_refused(serve, mutate, match):
    address, _, _ = serve()
    client = SimulatorClient(address)
    session = client.open([SceneSpec(0)]).sessions
    rel = still_poses(1)
    mutate(rel)
    with pytest.raises(ServerError, match=match) as err:
        client.step(session, rel)
    assert err.value.code == ErrorCode.BAD_REQUEST


def test_sessions_belong_to_their_client(serve):
    address, _, _ = serve()
    owner, other = SimulatorClient(address), SimulatorClient(address)
    session = owner.open([SceneSpec(0)]).sessions
    for call in (
        lambda: other.step(session, still_poses(1)),
        lambda: other.fork(session[0]),
        lambda: other.close_sessions(session),
    ):
        with pytest.raises(ServerError, match="not open for this client") as err:
            call()
        assert err.value.code == ErrorCode.UNKNOWN_SESSION
    owner.step(session, still_poses(1))


def test_session_cap_and_unknown_events(serve):
    address, _, _ = serve(max_sessions=3)
    client = SimulatorClient(address)
    sessions = client.open([SceneSpec(0), SceneSpec(1)]).sessions
    with pytest.raises(ServerError) as err:
        client.open([SceneSpec(2), SceneSpec(3)])
    assert err.value.code == ErrorCode.TOO_MANY_SESSIONS
    meta = {"sessions": sessions[:1], "events": [[[{"predicate": "explode", "entity": "room"}]]]}
    with pytest.raises(ServerError, match="unknown event predicate 'explode'"):
        client.request(MsgType.STEP, meta, {"relative_poses": still_poses(1)})
    client.close_sessions(sessions)
    client.open([SceneSpec(2), SceneSpec(3), SceneSpec(4)])


def refuse_pushes(session, events):
    if any(ev.predicate == "push" for ev in events):
        raise ValueError("nothing to push here")


def test_an_event_the_world_cannot_carry_out_is_refused_and_nothing_steps(serve):
    address, backend, _ = serve()
    backend.check_events = refuse_pushes  # a world in which nothing can be pushed
    client = SimulatorClient(address)
    sessions = client.open([SceneSpec(0), SceneSpec(1)]).sessions
    before = {s: backend.pose(s).copy() for s in (1, 2)}
    events = [[[EventRecord("lights", "room", {"state": "off"})]], [parse_prompt("push the nearest box")]]
    with pytest.raises(ServerError, match="row 1, step 0: nothing to push here; nothing was stepped") as err:
        client.step(sessions, forward_poses(2), events)
    assert err.value.code == ErrorCode.BAD_EVENT
    assert backend.batches == [] and all(np.array_equal(backend.pose(s), p) for s, p in before.items())
    moved = client.step(sessions, forward_poses(2))  # the sessions go on
    assert backend.batches == [2] and not np.allclose(moved.frames["poses"][0, 0, -1], before[1])


def test_check_asks_about_events_and_steps_nothing(serve):
    address, backend, _ = serve()
    backend.check_events = refuse_pushes
    client = SimulatorClient(address)
    sessions = client.open([SceneSpec(0), SceneSpec(1)]).sessions
    before = {s: backend.pose(s).copy() for s in (1, 2)}
    lights, push = [EventRecord("lights", "room", {"state": "off"})], parse_prompt("push the nearest box")
    client.check_events(sessions, [[lights], [[]]])  # carried out: an empty REPLY
    with pytest.raises(ServerError, match="row 1, step 1: nothing to push here; nothing was stepped") as err:
        client.check_events(sessions, [[lights, []], [[], push]])
    assert err.value.code == ErrorCode.BAD_EVENT
    assert err.value.details == {"row": 1, "step": 1, "reason": "nothing to push here"}
    assert backend.batches == [] and all(np.array_equal(backend.pose(s), p) for s, p in before.items())
    assert backend._sessions[1].lights_on  # checked, not applied
    with pytest.raises(ServerError, match="the same T for all"):
        client.check_events(sessions, [[lights, []], [[]]])
    client.close_sessions(sessions[1:])
    with pytest.raises(ServerError) as err:
        client.check_events(sessions, [[lights], [push]])
    assert err.value.code == ErrorCode.UNKNOWN_SESSION


def test_retry_with_the_same_request_id_is_answered_from_cache(serve):
    address, backend, _ = serve()
    client = SimulatorClient(address)
    session = client.open([SceneSpec(0)]).sessions
    sock = client._sock  # speak raw protocol on the client's own identity
    frames = encode(
        Message(MsgType.STEP, 424242, {"sessions": session}, {"relative_poses": forward_poses(1)})
    )
    backend.batches.clear()
    sock.send_multipart(frames)
    first = raw_reply(sock)
    sock.send_multipart(frames)
    second = raw_reply(sock)
    assert backend.batches == [1], "a retried request must not step the world twice"
    assert first.type == second.type == MsgType.REPLY
    assert np.array_equal(first.arrays["poses"], second.arrays["poses"])


def test_fork_copies_state_without_touching_the_original(serve):
    address, backend, _ = serve()
    client = SimulatorClient(address)
    session = client.open([SceneSpec(5)]).sessions
    before = backend.pose(1).copy()
    forks = client.fork(session[0], 3)
    assert len(set(forks)) == 3 and session[0] not in forks
    moved = client.step(forks, forward_poses(3, step=0.2))
    assert np.allclose(moved.frames["poses"][:, 0, -1], moved.frames["poses"][0, 0, -1])
    assert np.allclose(backend.pose(1), before)
    again = client.step(session, still_poses(1))
    assert np.allclose(again.frames["poses"][0, 0, -1], before)


def test_idle_sessions_are_closed_with_a_clear_error(serve):
    address, _, server = serve(idle_timeout_s=0.4)
    client = SimulatorClient(address)
    session = client.open([SceneSpec(0)]).sessions
    time.sleep(1.0)
    with pytest.raises(ServerError, match="closed after 0.4 s without requests"):
        client.step(session, still_poses(1))
    assert server.table.n_sessions == 0


def test_info_reports_backend_keymap_and_vocabulary(serve):
    address, _, _ = serve()
    info = SimulatorClient(address).info()
    assert info["backend"]["name"] == "constant" and (
        info["backend"]["height"],
        info["backend"]["width"],
    ) == (64, 64)
    assert info["keymap"]["yaw_step_deg"] == 3.0 and "lights off" in info["event_menu"]
    assert "predicates" in info["event_vocabulary"]


def test_bind_policy_refuses_public_interfaces_without_curve():
    for ok in (
        "tcp://127.0.0.1:5555",
        "tcp://localhost:1",
        "ipc:///tmp/x.sock",
        "inproc://x",
        "tcp://[::1]:9",
    ):
        check_bind_address(ok, curve=False)
    for bad in ("tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.1.2.3:80"):
        with pytest.raises(ValueError, match="CURVE"):
            SimulatorServer(ServerConfig(address=bad, backend="constant"))
    check_bind_address("tcp://0.0.0.0:5555", curve=True)
    with pytest.raises(ValueError, match="unsupported address"):
        check_bind_address("udp://127.0.0.1:1", curve=False)


def test_curve_encrypted_server(serve):
    import socket

    public, secret = zmq.curve_keypair()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    cfg = ServerConfig(
        address=address,
        backend="constant",
        curve_secret_key=secret.decode(),
        curve_public_key=public.decode(),
    )
    server = SimulatorServer(cfg, backend=ConstantWorldModel())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server.ready.wait(10)
        good = SimulatorClient(address, ClientConfig(server_public_key=public.decode()))
        assert good.ping()["sessions"] == []
        plain = SimulatorClient(address, ClientConfig(timeout_s=0.5))  # no key: the handshake never completes
        with pytest.raises(ServerUnavailable, match="no answer"):
            plain.ping()
    finally:
        server.stop()
        thread.join(5)


@pytest.mark.parametrize("outputs", [[["rgb"]], [{"rgb": 1}], [None], [1.5], "rgb"])
def test_malformed_outputs_get_a_bad_request_and_the_server_serves_on(serve, outputs):
    address, _, server = serve()
    good = SimulatorClient(address)
    session = good.open([SceneSpec(3)]).sessions
    hostile = raw_socket(address)
    requests = [
        Message(MsgType.OPEN, 1, {"scenes": [{"scene_seed": 1}], "outputs": outputs}),
        Message(MsgType.RESET, 2, {"sessions": session, "scenes": [{"scene_seed": 1}], "outputs": outputs}),
        Message(
            MsgType.STEP, 3, {"sessions": session, "outputs": outputs}, {"relative_poses": still_poses(1)}
        ),
    ]
    for msg in requests:
        hostile.send_multipart([bytes(f) for f in encode(msg)])
        reply = raw_reply(hostile)
        assert reply.type == MsgType.ERROR and reply.meta["code"] == ErrorCode.BAD_REQUEST, reply.meta
        assert "'outputs'" in reply.meta["message"]
        assert good.step(session, forward_poses(1)).frames["rgb"].shape[0] == 1  # still served
    hostile.close()


def test_an_unexpected_failure_is_an_internal_error_and_the_server_serves_on(serve, monkeypatch):
    address, _, server = serve()
    client = SimulatorClient(address)
    session = client.open([SceneSpec(3)]).sessions

    def broken(*args, **kwargs):
        raise KeyError("a bug of the server's own")

    monkeypatch.setattr(server, "_info", broken)
    with pytest.raises(ServerError, match="internal server error handling INFO: KeyError") as err:
        client.info()
    assert err.value.code == ErrorCode.INTERNAL
    assert client.step(session, forward_poses(1)).frames["rgb"].shape[0] == 1


def test_curve_keys_are_both_valid_or_both_absent():
    public, secret = (k.decode() for k in zmq.curve_keypair())
    other_public = zmq.curve_keypair()[0].decode()
    for sk, pk, match in (
        ("", public, "curve_secret_key must be a 40-character"),  # an unset $SECRET
        (secret, "", "curve_public_key must be a 40-character"),
        (secret, None, "curve_public_key must be a 40-character"),
        (secret, other_public, "not the public key of curve_secret_key"),
        ("~" * 40, public, "curve_secret_key must be a 40-character z85"),
    ):
        with pytest.raises(ValueError, match=match):
            SimulatorServer(
                ServerConfig(address="tcp://0.0.0.0:5555", curve_secret_key=sk, curve_public_key=pk)
            )
    SimulatorServer(
        ServerConfig(address="tcp://0.0.0.0:5555", curve_secret_key=secret, curve_public_key=public)
    )


def test_a_broker_refuses_an_empty_key_and_an_allow_list_without_curve():
    from world_model.serve.broker import Broker, BrokerConfig

    public, _ = (k.decode() for k in zmq.curve_keypair())
    with pytest.raises(ValueError, match="curve_secret_key must be a 40-character"):
        Broker(BrokerConfig(curve_secret_key="", curve_public_key=public, worker_public_keys=[public]))
    with pytest.raises(ValueError, match="worker_public_keys need CURVE on"):
        Broker(BrokerConfig(worker_public_keys=[public]))
    with pytest.raises(ValueError, match="worker_public_keys must be a 40-character"):
        Broker(BrokerConfig(worker_public_keys=[""]))


def test_a_reset_with_relocate_moves_an_open_session_and_an_open_cannot(serve):
    address, _, _ = serve()
    client = SimulatorClient(address)
    opened = client.open([SceneSpec(3)])
    (sid,), start = opened.sessions, opened.frames["poses"][0]
    there = pose_from_yaw_pitch(np.array([1.5, 2.0, 1.0]), 0.3, 0.0)
    res = client.reset([sid], [SceneSpec(3, start_pose=there, relocate=True)])
    assert res.sessions == [sid] and np.allclose(res.frames["poses"][0], there)
    step = client.step([sid], forward_poses(1), resets={0: SceneSpec(3, start_pose=start, relocate=True)})
    assert np.allclose(step.frames["poses"][0, 0, -1], start)  # also as a STEP's reset
    with pytest.raises(ServerError, match="send it in a RESET") as err:
        client.open([SceneSpec(3, start_pose=there, relocate=True)])
    assert err.value.code == ErrorCode.BAD_REQUEST
    client.close_sessions([sid])
    with pytest.raises(ServerError) as err:  # a closed session cannot be moved
        client.step([sid], forward_poses(1), resets={0: SceneSpec(3, start_pose=there, relocate=True)})
    assert err.value.code == ErrorCode.UNKNOWN_SESSION
