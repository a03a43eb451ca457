"""The wire codec: round trips, and every kind of malformed input rejected with a clear ProtocolError."""

import struct

import msgpack
import numpy as np
import pytest

from world_model.wire.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    Message,
    MsgType,
    ProtocolError,
    decode,
    encode,
)


def frames_of(msg: Message) -> list[bytes]:
    return [bytes(f) for f in encode(msg)]


def test_round_trip_keeps_meta_and_arrays():
    arrays = {
        "rgb": np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3),
        "poses": np.tile(np.eye(4), (2, 1, 1)),
        "depth": np.full((2, 4, 4), np.inf, np.float32),
        "empty": np.zeros((0, 3), np.int64),
    }
    msg = Message(MsgType.STEP, 2**40 + 7, {"sessions": [1, 2], "events": [[{"predicate": "x"}]]}, arrays)
    out = decode(frames_of(msg))
    assert out.type == MsgType.STEP and out.request_id == 2**40 + 7 and out.meta == msg.meta
    for k, v in arrays.items():
        assert out.arrays[k].dtype == v.dtype and np.array_equal(out.arrays[k], v)


def test_numpy_scalars_in_meta_become_plain_values():
    out = decode(frames_of(Message(MsgType.REPLY, 1, {"n": np.int64(3), "x": np.float32(0.5)})))
    assert out.meta == {"n": 3, "x": 0.5}


def test_object_arrays_are_never_sent():
    with pytest.raises(ProtocolError, match="dtype"):
        encode(Message(MsgType.REPLY, 1, {}, {"o": np.array([{"a": 1}], dtype=object)}))
    with pytest.raises(TypeError):
        encode(Message(MsgType.REPLY, 1, {"f": object()}))


@pytest.mark.parametrize(
    "frames, code",
    [
        ([], ErrorCode.PROTOCOL),
        ([b"garbage"], ErrorCode.PROTOCOL),
        ([b"\x00" * 12, b""], ErrorCode.PROTOCOL),  # bad magic
        ([struct.pack("!2sBBQ", b"DX", PROTOCOL_VERSION + 1, 3, 9), b"\x80"], ErrorCode.VERSION),
        ([struct.pack("!2sBBQ", b"DX", PROTOCOL_VERSION, 99, 9), b"\x80"], ErrorCode.PROTOCOL),
        ([struct.pack("!2sBBQ", b"DX", PROTOCOL_VERSION, 3, 9), b"\xc1\xc1"], ErrorCode.PROTOCOL),
    ],
)
def test_malformed_envelopes_are_rejected(frames, code):
    with pytest.raises(ProtocolError) as err:
        decode(frames)
    assert err.value.code == code


def header(meta, specs):
    return msgpack.packb({"meta": meta, "arrays": specs})


ENV = struct.pack("!2sBBQ", b"DX", PROTOCOL_VERSION, int(MsgType.STEP), 5)


@pytest.mark.parametrize(
    "frames, match",
    [
        ([ENV, msgpack.packb([1, 2])], "exactly the keys"),
        ([ENV, header([], [])], "'meta' must be a map"),
        ([ENV, header({}, [["a", "float64", [2]]])], "buffers follow"),
        ([ENV, header({}, [["a", "object", [1]]]), b"x" * 8], "not allowed"),
        ([ENV, header({}, [["a", "float64", [3]]]), b"x" * 16], "needs 24 bytes"),
        ([ENV, header({}, [["a", "uint8", [-1]]]), b""], "bad shape"),
        ([ENV, header({}, [["a", "uint8", [1]], ["a", "uint8", [1]]]), b"x", b"y"], "twice"),
        ([ENV, msgpack.packb({"meta": msgpack.ExtType(1, b"x"), "arrays": []})], "extension"),
        ([ENV, msgpack.packb({1: 2})], "msgpack"),
    ],
)
def test_malformed_headers_are_rejected_with_the_request_id(frames, match):
    with pytest.raises(ProtocolError, match=match) as err:
        decode(frames)
    assert err.value.request_id == 5
