"""Wire protocol between simulator clients (DEALER) and the server (ROUTER): one codec for both sides.

A message is a ZeroMQ multipart message::

    frame 0   envelope, 12 bytes: b"DX", version (u8), type (u8), request id (u64, big-endian)
    frame 1   msgpack header: {"meta": {...}, "arrays": [[name, dtype, shape], ...]}
    frame 2+  one raw C-ordered buffer per array, in header order

Nothing is ever pickled: the header holds only msgpack scalars, strings, lists and maps, and arrays travel
as raw bytes whose dtype comes from a short allow-list. :func:`decode` checks every field and raises
:class:`ProtocolError` (with a machine-readable ``code``) for anything malformed, so the server can answer
with an ERROR message and keep serving.

Requests and their REPLY (B sessions, T chunks, K frames per chunk, F = 1 or K frames returned)::

    OPEN   meta scenes=[spec], outputs=[rgb|depth|semantic]  -> meta sessions, scenes (SceneInfo dicts);
           arrays first_frames [B,H,W,3] (optional)              arrays rgb [B,H,W,3], depth, semantic,
                                                                 poses [B,4,4], view_rgb [B,H,W,3]
    RESET  meta sessions, scenes, outputs                     -> as OPEN, same session ids
    STEP   meta sessions, events [B][T][record], outputs,     -> arrays rgb [B,T,F,H,W,3], depth, semantic,
           frames=last|all, resets=[[row, spec]];                poses [B,T,K,4,4], view_rgb;
           arrays relative_poses [B,T,K,4,4] float64             meta scenes=[[row, SceneInfo dict]]
    CHECK  meta sessions, events [B][T][record]               -> meta {} (or ERROR bad_event); nothing
                                                                 is stepped (a laned client asks every
                                                                 lane before any lane steps)
    FORK   meta session, count                                -> meta sessions
    CLOSE  meta sessions                                      -> meta closed
    INFO   -                                                  -> meta protocol_version, backend, keymap,
                                                                 event_menu, event_vocabulary, limits, stats
    PING   -                                                  -> meta time, sessions

A client holding sessions may also send ``HEARTBEAT`` (request id 0, meta ``{}``), which gets no reply:
from its first one on, the server also closes that client's sessions once it has sent nothing (heartbeats
included) for ``client_heartbeat_timeout_s``, besides ``idle_timeout_s`` after its last request, as for
every client. A broker passes a client's heartbeats on to the workers that hold its sessions.

A scene spec is ``{scene_seed, start_pose?, view_pose? | view_goal?, first_frame?}`` (``requests.SceneSpec``),
or, in a RESET or a STEP's resets, ``{scene_seed, start_pose, relocate: true}``: the session's camera moves
to ``start_pose`` in the scene it is in, and it keeps what it has seen where the backend can. An event record
is ``EventRecord.to_dict()``. ERROR replies carry ``meta {code, message}`` (``ErrorCode``); a ``bad_event``
one also ``row``, ``step`` and ``reason`` (which event of the request was refused, and why).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
MAGIC = b"DX"
_ENVELOPE = struct.Struct("!2sBBQ")
ENVELOPE_SIZE = _ENVELOPE.size

MAX_HEADER_BYTES = 1 << 20
MAX_ARRAYS = 64
MAX_ARRAY_BYTES = 1 << 30
MAX_DIMS = 8
ALLOWED_DTYPES: frozenset[str] = frozenset(
    {
        "uint8",
        "int8",
        "uint16",
        "int16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
        "bool",
    }
)


class MsgType(IntEnum):
    OPEN = 1  # open sessions: meta {"scenes": [scene spec, ...]}
    RESET = 2  # re-open existing sessions in (new) scenes: meta {"sessions", "scenes"}
    STEP = 3  # advance sessions by one chunk (or a horizon of chunks): arrays {"relative_poses"}
    FORK = 4  # copy a session's full state: meta {"session", "count"}
    CLOSE = 5  # free sessions: meta {"sessions"}
    INFO = 6  # backend facts, key map, event vocabulary, limits, statistics
    PING = 7  # liveness; the server also answers a repeated in-flight request with PING
    REPLY = 8
    ERROR = 9  # meta {"code", "message"}
    READY = 10  # worker -> broker registration: meta {"name", "backend", "max_sessions"}
    HEARTBEAT = 11  # liveness, never answered: broker <-> worker (meta {"sessions", "pending", "expired"?}
    #                 from the worker), and client -> server while the client holds sessions (meta {})
    DISCONNECT = 12  # worker -> broker: leaving; broker -> worker: unknown here, register again
    CHECK = 13  # would the sessions' worlds carry out these events? meta {"sessions", "events"}


REQUEST_TYPES: frozenset[MsgType] = frozenset(
    {
        MsgType.OPEN,
        MsgType.RESET,
        MsgType.STEP,
        MsgType.CHECK,
        MsgType.FORK,
        MsgType.CLOSE,
        MsgType.INFO,
        MsgType.PING,
    }
)
REQUEST_NAMES = ", ".join(t.name for t in sorted(REQUEST_TYPES))  # for "send one of" errors


class ErrorCode:
    """Values of ``meta["code"]`` in ERROR replies."""

    PROTOCOL = "protocol"  # undecodable message
    VERSION = "version"  # wrong protocol version
    BAD_REQUEST = "bad_request"  # decodable, but fields are wrong
    UNKNOWN_SESSION = "unknown_session"
    TOO_MANY_SESSIONS = "too_many_sessions"
    BACKEND = "backend"  # the backend raised
    BAD_EVENT = "bad_event"  # an event the session's world cannot carry out; nothing was stepped
    SHUTTING_DOWN = "shutting_down"
    NO_WORKERS = "no_workers"  # a broker with no live worker
    WORKER_LOST = "worker_lost"  # the worker that held the session died; its state is gone
    INTERNAL = "internal"  # the server failed on this request (logged there); it serves on
    TOO_LARGE = "too_large"  # over a byte budget (max_reply_bytes, max_client_bytes); nothing was done


class ProtocolError(ValueError):
    """A message that cannot be decoded. ``request_id`` is filled in when the envelope was readable."""

    def __init__(self, message: str, code: str = ErrorCode.PROTOCOL, request_id: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


@dataclass
class Message:
    """One decoded message: type, request id, msgpack-able ``meta`` and named numpy ``arrays``."""

    type: MsgType
    request_id: int
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _to_plain(obj: Any) -> Any:
    """msgpack ``default`` hook: numpy scalars and small arrays become Python values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"cannot send {type(obj).__name__} in a message header; use plain values or arrays")


def encode(msg: Message) -> list[bytes | memoryview]:
    """Frames for ``msg``. Array buffers are passed without copying when already C-contiguous."""
    specs, buffers = [], []
    for name, arr in msg.arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.name not in ALLOWED_DTYPES:
            raise ProtocolError(f"array {name!r} has dtype {arr.dtype}; allowed: {sorted(ALLOWED_DTYPES)}")
        specs.append([name, arr.dtype.name, list(arr.shape)])
        buffers.append(memoryview(arr).cast("B") if arr.size else b"")
    header = msgpack.packb({"meta": msg.meta, "arrays": specs}, default=_to_plain, use_bin_type=True)
    envelope = _ENVELOPE.pack(MAGIC, PROTOCOL_VERSION, int(msg.type), msg.request_id)
    return [envelope, header, *buffers]


def peek_envelope(frame: Any) -> tuple[int, int] | None:
    """``(type, request id)`` of a message's envelope frame, or None if it is not a DreamX envelope of this
    version. For routing without decoding the rest (the broker's path for replies)."""
    env = bytes(frame)
    if len(env) != ENVELOPE_SIZE:
        return None
    magic, version, mtype, request_id = _ENVELOPE.unpack(env)
    if magic != MAGIC or version != PROTOCOL_VERSION:
        return None
    return mtype, request_id


def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not allowed in headers")


def decode(frames: list[bytes], arrays: bool = True) -> Message:
    """Parse and validate a multipart message; raise :class:`ProtocolError` on anything unexpected.
    With ``arrays=False`` the array specs are checked against the buffers' sizes but no array is built
    (``Message.arrays`` stays empty): what a broker needs to route a message it forwards untouched."""
    if not frames or len(frames) < 2:
        raise ProtocolError(f"expected at least 2 frames (envelope, header), got {len(frames)}")
    env = bytes(frames[0])
    if len(env) != ENVELOPE_SIZE:
        raise ProtocolError(f"envelope must be {ENVELOPE_SIZE} bytes, got {len(env)}")
    magic, version, mtype, request_id = _ENVELOPE.unpack(env)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}; this is not a DreamX protocol message")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version} is not supported; this side speaks version {PROTOCOL_VERSION}",
            ErrorCode.VERSION,
            request_id,
        )
    try:
        msg_type = MsgType(mtype)
    except ValueError:
        raise ProtocolError(
            f"unknown message type {mtype}; known: {[t.name for t in MsgType]}", request_id=request_id
        ) from None
    header_bytes = bytes(frames[1])
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ProtocolError(
            f"header of {len(header_bytes)} bytes exceeds {MAX_HEADER_BYTES}", request_id=request_id
        )
    try:
        header = msgpack.unpackb(header_bytes, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except ProtocolError as exc:
        exc.request_id = request_id
        raise
    except Exception as exc:  # msgpack raises a zoo of types for corrupt input
        raise ProtocolError(f"header is not valid msgpack: {exc}", request_id=request_id) from None
    if not isinstance(header, dict) or set(header) != {"meta", "arrays"}:
        raise ProtocolError(
            "header must be a map with exactly the keys 'meta' and 'arrays'", request_id=request_id
        )
    meta, specs = header["meta"], header["arrays"]
    if not isinstance(meta, dict) or not isinstance(specs, list):
        raise ProtocolError("header 'meta' must be a map and 'arrays' a list", request_id=request_id)
    if len(specs) > MAX_ARRAYS or len(specs) != len(frames) - 2:
        raise ProtocolError(
            f"header lists {len(specs)} arrays but {len(frames) - 2} buffers follow (at most {MAX_ARRAYS})",
            request_id=request_id,
        )
    out: dict[str, np.ndarray] = {}
    names: set[str] = set()
    for spec, buf in zip(specs, frames[2:], strict=True):
        buf = memoryview(buf)  # bytes or zmq.Frame; zero-copy either way
        name, dtype, shape = _array_spec(spec, buf.nbytes, request_id)
        if name in names:
            raise ProtocolError(f"array {name!r} appears twice", request_id=request_id)
        names.add(name)
        if arrays:
            out[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return Message(msg_type, request_id, meta, out)


def _array_spec(spec: Any, nbytes: int, request_id: int) -> tuple[str, np.dtype, list[int]]:
    if not (
        isinstance(spec, list)
        and len(spec) == 3
        and isinstance(spec[0], str)
        and isinstance(spec[1], str)
        and isinstance(spec[2], list)
    ):
        raise ProtocolError(
            f"array spec must be [name, dtype, shape], got {spec!r:.200}", request_id=request_id
        )
    name, dtype, shape = spec
    if dtype not in ALLOWED_DTYPES:
        raise ProtocolError(
            f"array {name!r}: dtype {dtype!r} not allowed; allowed: {sorted(ALLOWED_DTYPES)}",
            request_id=request_id,
        )
    if len(shape) > MAX_DIMS or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape
    ):
        raise ProtocolError(f"array {name!r}: bad shape {shape!r:.200}", request_id=request_id)
    dt = np.dtype(dtype)
    needed = math.prod(shape) * dt.itemsize
    if needed > MAX_ARRAY_BYTES or needed != nbytes:
        raise ProtocolError(
            f"array {name!r}: shape {shape} of {dtype} needs {needed} bytes, buffer has {nbytes}",
            request_id=request_id,
        )
    return name, dt, shape


def error_message(request_id: int, code: str, message: str, **details: Any) -> Message:
    """An ERROR reply; ``details``: more fields of its meta (a bad event's ``row``, ``step``, ``reason``)."""
    return Message(MsgType.ERROR, request_id, {"code": code, "message": message, **details})


def bad_event_text(row: int, step: int, reason: str) -> str:
    """The message of a ``bad_event`` ERROR, whose meta also carries ``row``, ``step`` and ``reason``."""
    return f"row {row}, step {step}: {reason}; nothing was stepped"
