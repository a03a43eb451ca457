"""Where servers, brokers and workers may listen and connect: the one place for the security rules.

Listening beyond this machine (anything but loopback TCP, ``ipc://`` or ``inproc://``) needs CURVE keys,
for a server's clients and a broker's clients and workers alike; a worker connecting to a broker on
another host needs the broker's public key. A CURVE server or broker may also list the public keys of the
clients (``client_public_keys``) and workers it admits: the ZAP handler of :func:`start_allow_lists`
refuses every other key during the handshake.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq
import zmq.utils.z85

log = logging.getLogger("world_model.serve")


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


def check_public_key(name: str, key: object, hint: str = "") -> None:
    """Refuse ``key`` unless it is a 40-character z85 CURVE key (``name`` and ``hint`` go in the message)."""
    ok = isinstance(key, str) and len(key) == 40
    if ok:
        try:
            ok = len(zmq.utils.z85.decode(key.encode())) == 32
        except (ValueError, KeyError, TypeError, IndexError):
            ok = False
    if not ok:
        raise ValueError(
            f"{name} must be a 40-character z85 CURVE key (zmq.curve_keypair()), got {key!r:.60}"
            + (f": {hint}" if hint else "")
        )


def curve_keypair(secret_key: str | None, public_key: str | None) -> tuple[str, str] | None:
    """The one test of "CURVE on", for every socket and every bind rule: ``None`` when neither key is set;
    the keypair when both are valid z85 CURVE keys (40 characters, 32 bytes); otherwise a ``ValueError``
    saying which. An empty key (what an unset ``$SECRET`` expands to) is refused, never taken as "off"."""
    if secret_key is None and public_key is None:
        return None
    for name, key in (("curve_secret_key", secret_key), ("curve_public_key", public_key)):
        check_public_key(name, key, "set both keys, or neither for loopback only")
    if zmq.curve_public(secret_key.encode()) != public_key.encode():
        raise ValueError("curve_public_key is not the public key of curve_secret_key")
    return secret_key, public_key


def check_allow_list(name: str, keys: list[str], curve: bool) -> None:
    """An allow-list of CURVE public keys: each a valid z85 key, and only with CURVE on."""
    if isinstance(keys, str) or not isinstance(keys, list | tuple):
        raise ValueError(f"{name} must be a list of z85 CURVE public keys, got {keys!r:.60}")
    for key in keys:
        check_public_key(name, key)
    if keys and not curve:
        raise ValueError(f"{name} need CURVE on: set curve_secret_key and curve_public_key")


class _AllowList:
    """ZAP credentials provider for one domain: a listed key is admitted; an empty list admits any key."""

    def __init__(self, domain: str, keys: list[str]) -> None:
        self.domain, self.keys = domain, {k.encode() for k in keys}

    def callback(self, domain: str, key: bytes) -> bool:
        if self.keys and key not in self.keys:
            log.warning("refused a CURVE key %s on %s: not in its allow-list", key.decode(), domain)
            return False
        return True


def start_allow_lists(ctx: zmq.Context, keys_by_domain: dict[str, list[str]]) -> Any:
    """Start the ZAP handler of ``ctx`` (one per context) checking the CURVE handshakes of the sockets bound
    with each ``zap_domain`` against its list; returns the authenticator, to ``stop()`` when done."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    for domain, keys in keys_by_domain.items():
        auth.configure_curve_callback(domain, _AllowList(domain, keys))
    return auth


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
    send_hwm: int | None = None,
) -> zmq.Socket:
    """The ROUTER socket servers and brokers listen on: no linger, a reconnecting peer keeps its identity
    (and so its sessions), oversized messages dropped by ZeroMQ, CURVE when ``curve_keys`` (secret, public)
    are given, optionally checked by the ZAP handler of ``zap_domain``. ``send_hwm``: at most this many
    messages queued per peer; a ROUTER drops what a peer that does not read has no room for."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    if send_hwm is not None:
        sock.setsockopt(zmq.SNDHWM, send_hwm)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    if curve_keys is not None:
        make_curve_server(sock, *curve_keys)
        if zap_domain is not None:
            sock.zap_domain = zap_domain
    sock.bind(address)
    return sock
