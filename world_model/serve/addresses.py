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
