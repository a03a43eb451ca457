"""Envs recover when their sessions are gone on the server (closed after its idle timeout, or lost with a
broker's worker): a step says reset() recovers, and reset() opens fresh sessions with one warning."""

import time
import uuid

import gymnasium as gym
import numpy as np
import pytest
import zmq

import dreamx_env  # noqa: F401
from world_model.constant import ConstantWorldModel
from world_model.serve.broker import Broker, BrokerConfig
from world_model.serve.server import ServerConfig, SimulatorServer
from world_model.wire.client import ServerError
from world_model.wire.protocol import ErrorCode


def wait_for(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def server(**overrides) -> SimulatorServer:
    cfg = ServerConfig(address=f"inproc://env-{uuid.uuid4().hex[:8]}", backend="constant", **overrides)
    return SimulatorServer(cfg, backend=ConstantWorldModel(), context=zmq.Context.instance())


def make(address: str, num_envs: int = 0) -> gym.Env:
    kwargs = {"backend": "constant", "server": address, "event_actions": False}
    if num_envs:
        return gym.make_vec(
            "DreamX/Explore-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
        )
    return gym.make("DreamX/Explore-v0", **kwargs)


@pytest.mark.parametrize("num_envs", [0, 2])
def test_after_the_idle_timeout_a_step_says_reset_recovers_and_reset_does(serving, num_envs):
    srv = server(idle_timeout_s=0.2)
    serving(srv)
    env = make(srv.config.address, num_envs)
    try:
        env.reset(seed=1)
        old = list(env.unwrapped.core.sessions)
        wait_for(lambda: srv.table.n_sessions == 0, "the server to close the idle sessions")
        action = env.action_space.sample()
        with pytest.raises(ServerError, match="sessions are gone; call reset\\(\\) to open new ones") as err:
            env.step(action)
        assert err.value.code == ErrorCode.UNKNOWN_SESSION
        with pytest.warns(RuntimeWarning, match=r"sessions .* are gone .*reset\(\) opened new ones"):
            obs, _ = env.reset(seed=2)
        assert not set(env.unwrapped.core.sessions) & set(old)
        assert srv.table.n_sessions == max(1, num_envs)
        for _ in range(3):
            obs, *_ = env.step(action)
        assert np.asarray(obs).dtype == np.uint8
    finally:
        env.close()


def test_sessions_lost_with_a_worker_are_reopened_on_another(serving, tmp_path):
    fast = {"heartbeat_s": 0.1, "heartbeat_timeout_s": 1.0}
    back = f"ipc://{tmp_path}/workers"
    broker = Broker(BrokerConfig(address=f"ipc://{tmp_path}/clients", worker_address=back, **fast))
    serving(broker)

    def worker(name: str) -> SimulatorServer:
        cfg = ServerConfig(backend="constant", broker=back, worker_name=name)
        srv = SimulatorServer(cfg, backend=ConstantWorldModel(), context=zmq.Context())
        serving(srv)
        return srv

    first = worker("first")
    wait_for(lambda: len(broker.workers) == 1, "the first worker to register")
    env = make(broker.config.address, 2)
    try:
        env.reset(seed=1)
        action = env.action_space.sample()
        env.step(action)
        first.stop()  # says goodbye: its sessions are lost
        wait_for(lambda: not broker.workers, "the broker to drop the first worker")
        worker("second")
        wait_for(lambda: len(broker.workers) == 1, "the second worker to register")
        with pytest.raises(ServerError, match="sessions are gone; call reset") as err:
            env.step(action)
        assert err.value.code == ErrorCode.WORKER_LOST
        with pytest.warns(RuntimeWarning, match="worker_lost"):
            env.reset(seed=2)
        env.step(action)
        (live,) = broker.workers.values()
        assert live.name == "second" and live.sessions == 2
    finally:
        env.close()
