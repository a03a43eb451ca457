"""Protocol fuzzing: wrong types in every meta field of every request type, and random frames, sent while a
well-behaved client steps. The server answers each bad message with an ERROR and keeps serving; the good
client never fails."""

import random
import threading

import msgpack
import numpy as np
import zmq

from world_model.wire.client import SimulatorClient
from world_model.wire.protocol import (
    ENVELOPE_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    Message,
    MsgType,
    decode,
    encode,
)
from world_model.wire.requests import SceneSpec

JUNK = [
    None,
    True,
    -1,
    2**63,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x" * 10_000,
    b"\x00\xff",
    [],
    [None],
    [[]],
    [1.5],
    ["rgb", 3],
    [[[[[[[[[[[]]]]]]]]]]],
    list(range(2000)),
    {},
    {"a": 1},
    {"scene_seed": "abc"},
    [{"predicate": 1}],
    [[0, {"scene_seed": -5}]],
]


def still(b: int = 1, t: int = 1, k: int = 2) -> np.ndarray:
    return np.tile(np.eye(4), (b, t, k, 1, 1))


def requests(session: int) -> dict[MsgType, tuple[dict, dict]]:
    """A valid (meta, arrays) of every request type, for the session the hostile client holds."""
    scenes = [{"scene_seed": 1}]
    return {
        MsgType.OPEN: ({"scenes": scenes, "outputs": ["rgb"]}, {}),
        MsgType.RESET: ({"sessions": [session], "scenes": scenes, "outputs": ["rgb"]}, {}),
        MsgType.STEP: (
            {"sessions": [session], "events": [[[]]], "outputs": ["rgb"], "frames": "last", "resets": []},
            {"relative_poses": still()},
        ),
        MsgType.CHECK: ({"sessions": [session], "events": [[[]]]}, {}),
        MsgType.FORK: ({"session": session, "count": 1}, {}),
        MsgType.CLOSE: ({"sessions": [session]}, {}),
        MsgType.INFO: ({}, {}),
        MsgType.PING: ({}, {}),
    }


def random_frames(rng: random.Random, request_id: int) -> list[bytes]:
    """A message no decoder may accept: garbage frames, a valid envelope with a header that is not the
    header map, or a valid header whose array specs do not match the buffers."""
    kind = rng.randrange(3)
    if kind == 0:
        frames = [rng.randbytes(rng.randrange(0, 40)) for _ in range(rng.randrange(1, 5))]
        frames[0] = b"XX" + frames[0]  # never the magic
        return frames
    mtype = rng.choice(list(MsgType))
    envelope = bytes(encode(Message(mtype, request_id))[0])
    if kind == 1:
        junk = rng.choice([*JUNK[:3], *JUNK[7:], {"meta": {}}, {"meta": [], "arrays": []}])
        header = msgpack.packb(junk) if rng.random() < 0.7 else b"\xc1" + rng.randbytes(rng.randrange(20))
        return [envelope, header, *[rng.randbytes(rng.randrange(9)) for _ in range(rng.randrange(3))]]
    shape = [rng.randrange(1, 5) for _ in range(rng.randrange(1, 4))]
    spec = [["x", rng.choice(["float64", "uint8", "complex128", "object"]), shape]]
    header = msgpack.packb({"meta": {}, "arrays": spec})
    return [envelope, header, rng.randbytes(int(np.prod(shape)) * 8 + rng.choice([-1, 1, 3]))]


def test_fuzzed_requests_get_errors_and_the_good_client_is_served_throughout(serve):
    address, _, server = serve(max_wait_ms=1.0)
    good = SimulatorClient(address)
    good_sessions = good.open([SceneSpec(7), SceneSpec(8)]).sessions
    stop, failures, steps = threading.Event(), [], [0]

    def step_throughout():
        try:
            while not stop.is_set():
                good.step(good_sessions, still(2))
                steps[0] += 1
        except Exception as exc:  # noqa: BLE001 - any failure of the good client fails the test
            failures.append(exc)

    stepping = threading.Thread(target=step_throughout)
    stepping.start()
    hostile = zmq.Context.instance().socket(zmq.DEALER)
    hostile.setsockopt(zmq.LINGER, 0)
    hostile.connect(address)
    rid = iter(range(1, 1_000_000))

    def ask(frames: list) -> Message:
        hostile.send_multipart([bytes(f) for f in frames])
        assert hostile.poll(5000), f"no answer to {frames[:2]!r:.200}; the server stopped serving"
        return decode(hostile.recv_multipart())

    opened = ask(encode(Message(MsgType.OPEN, next(rid), {"scenes": [{"scene_seed": 3}]})))
    session = opened.meta["sessions"][0]
    try:
        for mtype, (meta, arrays) in requests(session).items():
            for field in [*meta, "unknown_field"]:
                for junk in JUNK:
                    if (field, junk) == ("resets", []) or field == "unknown_field":
                        continue  # an empty resets list is valid; unknown fields are ignored
                    bad = Message(mtype, next(rid), {**meta, field: junk}, arrays)
                    reply = ask(encode(bad))
                    assert reply.request_id == bad.request_id
                    assert reply.type == MsgType.ERROR, (mtype.name, field, junk, reply.meta)
            if mtype in (MsgType.STEP,):
                for poses in (still().astype(np.float32), still()[0], np.full((1, 1, 2, 4, 4), np.nan)):
                    reply = ask(encode(Message(mtype, next(rid), meta, {"relative_poses": poses})))
                    assert reply.type == MsgType.ERROR, reply.meta
            if mtype in (MsgType.INFO, MsgType.PING):  # no fields: junk ones are ignored, the reply comes
                reply = ask(encode(Message(mtype, next(rid), {"junk": JUNK[-1]})))
                assert reply.type == MsgType.REPLY
        rng = random.Random(40)
        for _ in range(300):
            request_id = next(rid)
            frames = random_frames(rng, request_id)
            reply = ask(frames)
            assert reply.type == MsgType.ERROR, (frames[:2], reply.meta)
            if len(frames[0]) == ENVELOPE_SIZE and frames[0][:3] == MAGIC + bytes([PROTOCOL_VERSION]):
                assert reply.request_id == request_id
    finally:
        stop.set()
        stepping.join(10)
        hostile.close()
    assert not failures, failures
    assert steps[0] > 0 and not server._stop.is_set()
    assert server.stats["errors"] > 600  # every fuzzed message above was answered with an ERROR
    again = good.step(good_sessions, still(2))
    assert again.frames["rgb"].shape[:2] == (2, 1)
