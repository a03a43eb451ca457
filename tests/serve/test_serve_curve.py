"""CURVE client allow-lists: a server (or broker) with ``client_public_keys`` serves the listed keypairs and
refuses every other key during the handshake; clients and envs take the server's key and their own pair."""

import socket

import gymnasium as gym
import pytest
import zmq

import dreamx_env  # noqa: F401
from world_model.constant import ConstantWorldModel
from world_model.serve.broker import Broker, BrokerConfig
from world_model.serve.server import ServerConfig, SimulatorServer
from world_model.wire.client import ClientConfig, ServerUnavailable, SimulatorClient


def keypair() -> tuple[str, str]:
    """(public, secret), z85 strings."""
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def client(address: str, server_key: str, pair: tuple[str, str] | None) -> SimulatorClient:
    public, secret = pair or (None, None)
    cfg = ClientConfig(
        timeout_s=0.5, server_public_key=server_key, curve_public_key=public, curve_secret_key=secret
    )
    return SimulatorClient(address, cfg)


@pytest.mark.parametrize("kind", ["server", "broker"])
def test_only_listed_client_keys_are_served(serving, kind):
    (server_public, server_secret), listed, stranger = keypair(), keypair(), keypair()
    curve = {"curve_secret_key": server_secret, "curve_public_key": server_public}
    address = free_address()
    if kind == "server":
        cfg = ServerConfig(address=address, backend="constant", client_public_keys=[listed[0]], **curve)
        serving(SimulatorServer(cfg, backend=ConstantWorldModel()))
    else:
        cfg = BrokerConfig(
            address=address, worker_address=f"inproc://w-{id(curve)}", client_public_keys=[listed[0]], **curve
        )
        serving(Broker(cfg))
    with client(address, server_public, listed) as good:
        assert good.ping()["sessions"] == []
    for pair in (stranger, None):  # another keypair, a fresh one
        with client(address, server_public, pair) as bad, pytest.raises(ServerUnavailable, match="no answer"):
            bad.ping()


def test_allow_lists_need_curve_and_valid_keys():
    public, secret = keypair()
    with pytest.raises(ValueError, match="client_public_keys need CURVE on"):
        SimulatorServer(ServerConfig(client_public_keys=[public]))
    with pytest.raises(ValueError, match="client_public_keys must be a 40-character"):
        SimulatorServer(
            ServerConfig(curve_secret_key=secret, curve_public_key=public, client_public_keys=[""])
        )
    with pytest.raises(ValueError, match="client_public_keys need CURVE on"):
        Broker(BrokerConfig(client_public_keys=[public]))
    with pytest.raises(ValueError, match="set client_public_keys there"):
        SimulatorServer(
            ServerConfig(
                broker="inproc://b",
                curve_secret_key=secret,
                curve_public_key=public,
                client_public_keys=[public],
            )
        )


def test_client_keys_are_checked():
    public, secret = keypair()
    with pytest.raises(ValueError, match="server_public_key must be a 40-character"):
        SimulatorClient("tcp://127.0.0.1:1", ClientConfig(server_public_key=""))
    with pytest.raises(ValueError, match="needs server_public_key too"):
        SimulatorClient("tcp://127.0.0.1:1", ClientConfig(curve_public_key=public, curve_secret_key=secret))
    with pytest.raises(ValueError, match="not the public key of curve_secret_key"):
        SimulatorClient(
            "tcp://127.0.0.1:1",
            ClientConfig(server_public_key=public, curve_public_key=keypair()[0], curve_secret_key=secret),
        )


def test_an_env_steps_on_a_curve_server_with_its_listed_keypair(serving):
    (server_public, server_secret), (public, secret) = keypair(), keypair()
    address = free_address()
    cfg = ServerConfig(
        address=address,
        backend="constant",
        curve_secret_key=server_secret,
        curve_public_key=server_public,
        client_public_keys=[public],
    )
    serving(SimulatorServer(cfg, backend=ConstantWorldModel()))
    env = gym.make(
        "DreamX/Explore-v0",
        backend="constant",
        server=address,
        server_public_key=server_public,
        curve_public_key=public,
        curve_secret_key=secret,
    )
    try:
        env.reset(seed=0)
        assert env.step(env.action_space.sample())[0].shape == (64, 64, 3)
    finally:
        env.close()
    with pytest.raises(ValueError, match="are for a remote CURVE server"):
        gym.make("DreamX/Explore-v0", backend="constant", server="thread", server_public_key=server_public)
