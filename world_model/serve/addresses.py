"""Where servers, brokers and workers may listen and connect: the one place for the security rules.

Listening beyond this machine (anything but loopback TCP, ``ipc://`` or ``inproc://``) needs CURVE keys,
for a server's clients and a broker's clients and workers alike; a worker connecting to a broker on
another host needs the broker's public key.
"""

from __future__ import annotations

import zmq


def _scheme_and_host(address: str) -> tuple[str, str]:
    if address.startswith(("ipc://", "inproc://")):
        return address.split("://", 1)[0], ""
    if not address.startswith("tcp://"):
        raise ValueError(
            f"unsupported address {address!r}; use tcp://127.0.0.1:PORT, ipc://PATH or inproc://NAME"
        )
    return "tcp", address[len("tcp://") :].rsplit(":", 1)[0].strip("[]")


def is_local(address: str) -> bool:
    """True for ``ipc://``, ``inproc://`` and loopback TCP addresses."""
    scheme, host = _scheme_and_host(address)
    return scheme != "tcp" or host in ("localhost", "::1") or host.startswith("127.")


def check_bind_address(address: str, curve: bool) -> None:
    """Refuse to listen beyond this machine unless CURVE encryption is on."""
    if is_local(address) or curve:
        return
    raise ValueError(
        f"refusing to bind {address!r}: only loopback, ipc:// and inproc:// are allowed without "
        "CURVE keys; set curve_secret_key/curve_public_key (zmq.curve_keypair()) to serve remotely"
    )


def make_curve_server(sock: zmq.Socket, secret_key: str, public_key: str | None) -> None:
    """Turn ``sock`` into a CURVE server with the given z85 keypair (before bind)."""
    sock.curve_server = True
    sock.curve_secretkey = secret_key.encode()
    sock.curve_publickey = (public_key or "").encode()


def bind_router(
    ctx: zmq.Context,
    address: str,
    max_message_bytes: int,
    curve_keys: tuple[str, str | None] | None = None,
    zap_domain: bytes | None = None,
) -> zmq.Socket:
    """The ROUTER socket servers and brokers listen on: no linger, a reconnecting peer keeps its identity
    (and so its sessions), oversized messages dropped by ZeroMQ, CURVE when ``curve_keys`` (secret, public)
    are given, optionally checked by the ZAP handler of ``zap_domain``."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    if curve_keys is not None:
        make_curve_server(sock, *curve_keys)
        if zap_domain is not None:
            sock.zap_domain = zap_domain
    sock.bind(address)
    return sock
