"""Byte budgets: replies over ``max_reply_bytes`` are refused up front, one client's work in progress and
cached replies stay within ``max_client_bytes``, and a client that never reads gets only a few replies
queued; the worker holds no more of a STEP's frames than its reply carries."""

import threading
import time
import tracemalloc

import numpy as np
import pytest
import zmq

from world_model.constant import ConstantWorldModel
from world_model.serve import budgets
from world_model.serve.batching import PendingStep
from world_model.serve.worker import BackendWorker
from world_model.wire.client import ServerError, SimulatorClient
from world_model.wire.protocol import ErrorCode, Message, MsgType, decode, encode
from world_model.wire.requests import SceneSpec, StepRequest


def poses(b: int, t: int = 1, k: int = 4) -> np.ndarray:
    rel = np.tile(np.eye(4), (b, t, k, 1, 1))
    rel[..., 2, 3] = 0.05  # camera +z is forward
    return rel


def wait_for(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def array_bytes(msg: Message) -> int:
    return sum(a.nbytes for a in msg.arrays.values())


@pytest.mark.parametrize(
    "b, t, k, outputs, frames, view",
    [
        (1, 1, 4, ("rgb",), "last", False),
        (2, 3, 4, ("rgb", "depth", "semantic"), "all", False),
        (3, 1, 2, ("depth",), "all", True),
    ],
)
def test_reply_sizes_are_known_before_the_work(serve, b, t, k, outputs, frames, view):
    address, _, _ = serve()
    client = SimulatorClient(address)
    specs = [SceneSpec(i, view_goal=0 if view else None) for i in range(b)]
    opened = client.request(MsgType.OPEN, {"scenes": [s.to_meta() for s in specs], "outputs": list(outputs)})
    assert array_bytes(opened) == budgets.open_reply_bytes(specs, outputs, 64, 64)
    resets = {0: specs[0]} if t == 1 else {}
    req = StepRequest(opened.meta["sessions"], poses(b, t, k), [[[]] * t] * b, outputs, frames, resets)
    meta = {"sessions": req.sessions, "outputs": list(outputs), "frames": frames}
    if resets:
        meta["resets"] = [[0, specs[0].to_meta()]]
    stepped = client.request(MsgType.STEP, meta, {"relative_poses": req.relative_poses})
    assert array_bytes(stepped) == budgets.step_reply_bytes(req, 64, 64)
    assert stepped.arrays["poses"].shape == (b, t, k, 4, 4)
    assert stepped.arrays[outputs[0]].shape[:3] == (b, t, k if frames == "all" else 1)


def test_a_reply_over_the_budget_is_refused_up_front_and_nothing_steps(serve):
    address, backend, _ = serve()  # the default budget
    client = SimulatorClient(address)
    session = client.open([SceneSpec(0)]).sessions
    before = backend.pose(session[0]).copy()
    backend.batches.clear()
    all_outputs = ("rgb", "depth", "semantic")
    with pytest.raises(ServerError, match=r"max_reply_bytes=67108864; split the request") as err:
        client.step(session, poses(1, 64, 64), outputs=all_outputs, frames="all")  # ~170 MB of frames
    assert err.value.code == ErrorCode.TOO_LARGE
    assert backend.batches == [] and np.array_equal(backend.pose(session[0]), before)
    ok = client.step(session, poses(1, 64, 64), outputs=all_outputs, frames="last")  # the split asked for
    assert ok.frames["depth"].shape == (1, 64, 1, 64, 64)


def test_an_open_over_the_budget_is_refused_and_opens_nothing(serve):
    address, _, server = serve(max_reply_bytes=100_000)
    client = SimulatorClient(address)
    with pytest.raises(ServerError, match="max_reply_bytes=100000") as err:
        client.open([SceneSpec(i) for i in range(4)], outputs=("rgb", "depth"))
    assert err.value.code == ErrorCode.TOO_LARGE and server.table.n_sessions == 0
    assert len(client.open([SceneSpec(0)], outputs=("rgb", "depth")).sessions) == 1


class GatedBackend(ConstantWorldModel):
    """The constant backend, whose ``generate`` waits until the test opens the gate."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.batches: list[int] = []

    def generate(self, sessions, relative_poses, events):
        assert self.gate.wait(10)
        self.batches.append(len(sessions))
        return super().generate(sessions, relative_poses, events)


def raw_dealer(address: str, rcvhwm: int | None = None) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.connect(address)
    return sock


def send(sock: zmq.Socket, msg: Message) -> None:
    sock.send_multipart([bytes(f) for f in encode(msg)])


def receive(sock: zmq.Socket) -> Message:
    assert sock.poll(5000), "the server did not answer"
    return decode(sock.recv_multipart())


def step_message(request_id: int, sessions: list[int], t: int = 8) -> Message:
    meta = {"sessions": sessions, "outputs": ["rgb", "depth"], "frames": "all"}
    return Message(MsgType.STEP, request_id, meta, {"relative_poses": poses(len(sessions), t)})


def test_a_client_cannot_pile_up_work_beyond_its_budget(serve):
    backend = GatedBackend()
    one = budgets.step_reply_bytes(StepRequest([1], poses(1, 8), [], ("rgb", "depth"), "all"), 64, 64)
    address, _, _ = serve(backend, max_client_bytes=3 * one)
    sock = raw_dealer(address)
    send(sock, Message(MsgType.OPEN, 1, {"scenes": [{"scene_seed": 0}]}))
    session = receive(sock).meta["sessions"]
    for rid in (2, 3, 4):  # sent without waiting: the first is generating (held at the gate), two wait
        send(sock, step_message(rid, session))
    refused = receive(sock)
    assert refused.request_id == 4 and refused.type == MsgType.ERROR
    assert refused.meta["code"] == ErrorCode.TOO_LARGE
    assert (
        "requests in progress" in refused.meta["message"]
        and f"max_client_bytes={3 * one}" in (refused.meta["message"])
    )
    backend.gate.set()
    assert {receive(sock).request_id, receive(sock).request_id} == {2, 3}
    good = SimulatorClient(address)  # other clients have budgets of their own
    assert good.step(good.open([SceneSpec(1)]).sessions, poses(1)).frames["rgb"].shape[0] == 1
    sock.close()


def test_cached_replies_stay_within_the_client_budget_and_the_newest_is_kept(serve):
    one = budgets.step_reply_bytes(StepRequest([1], poses(1, 8), [], ("rgb", "depth"), "all"), 64, 64)
    address, backend, server = serve(max_client_bytes=3 * one, reply_cache_per_client=100)
    sock = raw_dealer(address)
    send(sock, Message(MsgType.OPEN, 1, {"scenes": [{"scene_seed": 0}]}))
    session = receive(sock).meta["sessions"]
    for rid in range(2, 12):
        send(sock, step_message(rid, session))
        assert receive(sock).type == MsgType.REPLY
    (client,) = server.table.clients.values()
    wait_for(lambda: 11 in client.cache, "the server to cache its last reply")  # it caches after sending
    assert 1 <= len(client.cache) <= 3 and client.cache_bytes <= 3 * one
    stepped = len(backend.batches)
    send(sock, step_message(11, session))  # a retry of the newest request: answered from the cache
    assert receive(sock).type == MsgType.REPLY and len(backend.batches) == stepped
    sock.close()


def test_a_client_that_never_reads_gets_only_a_few_replies_queued(serve):
    address, _, server = serve(send_queue_per_client=2)
    sock = raw_dealer(address, rcvhwm=2)  # inproc queues SNDHWM + RCVHWM messages per pipe
    send(sock, Message(MsgType.OPEN, 1, {"scenes": [{"scene_seed": 0}]}))
    session = receive(sock).meta["sessions"]
    for rid in range(2, 42):  # 40 large STEPs, none of whose replies is read while they are served
        send(sock, step_message(rid, session))
    wait_for(lambda: server.stats["steps"] == 40 * 8, "the server to answer all 40 steps")
    queued = []
    while sock.poll(200):
        queued.append(decode(sock.recv_multipart()).request_id)
    assert 1 <= len(queued) <= 4, f"{len(queued)} replies were queued for a client that does not read"
    send(sock, step_message(41, session))  # the client's retry of its last request gets the cached reply
    retried = receive(sock)
    assert retried.request_id == 41 and retried.type == MsgType.REPLY
    sock.close()


def test_the_worker_holds_only_what_the_reply_carries():
    worker = BackendWorker(ConstantWorldModel, max_batch=8, wake_fd=-1)
    worker.backend = ConstantWorldModel()  # the job runs on the calling thread here
    worker.open_sessions([1], [SceneSpec(0)], ("rgb",), 1)
    req = StepRequest([1], poses(1, 32, 32), [[[]] * 32], ("rgb",), "last")
    tracemalloc.start()
    try:
        ((_, reply),) = worker.step_batch([PendingStep(b"c", 2, req, 0.0)])[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reply.arrays["rgb"].shape == (1, 32, 1, 64, 64, 3)
    all_frames = 32 * 32 * 64 * 64 * 8  # every frame generated, all outputs: 33.5 MB
    assert peak < all_frames / 4, f"peak {peak} bytes while stepping; the reply is {array_bytes(reply)}"


@pytest.mark.parametrize("name", ["max_reply_bytes", "max_client_bytes", "send_queue_per_client"])
def test_budgets_are_positive_integers(name):
    from world_model.serve.server import ServerConfig

    for bad in (0, -1, 1.5, "64MB"):
        with pytest.raises(ValueError, match=f"ServerConfig.{name} must be a positive integer"):
            ServerConfig(**{name: bad})
