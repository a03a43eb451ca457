"""``command()`` checks everything it is given before queuing (types, every field, the server's events per
step), so a step never fails on what was queued; and a step that fails after the server moved leaves the
env's pose in step with the server's."""

import threading
import uuid

import gymnasium as gym
import numpy as np
import pytest
import zmq

import dreamx_env  # noqa: F401
from world_model.constant import ConstantWorldModel
from world_model.events import EventRecord
from world_model.serve.server import ServerConfig, SimulatorServer

STILL = np.array([0, 0])
FORWARD = np.array([1, 0])  # W


def _changed_after_it_was_built() -> EventRecord:
    record = EventRecord("push", "nearest")
    record.attributes["note"] = 3  # a frozen record's attributes dict is still a dict
    return record


@pytest.fixture
def served():
    """``served(**env_kwargs)``: an Explore env on an in-process constant server; returns (env, backend)."""
    started = []

    def _served(num_envs: int = 0, **kwargs):
        backend = ConstantWorldModel()
        cfg = ServerConfig(address=f"inproc://cmd-{uuid.uuid4().hex[:8]}", backend="constant")
        server = SimulatorServer(cfg, backend=backend, context=zmq.Context.instance())
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        assert server.ready.wait(10)
        kwargs = {"backend": "constant", "server": cfg.address, **kwargs}
        if num_envs:
            env = gym.make_vec(
                "DreamX/Explore-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
            )
        else:
            env = gym.make("DreamX/Explore-v0", **kwargs)
        started.append((env, server, thread))
        return env, backend

    yield _served
    for env, server, thread in started:
        env.close()
        server.stop()
        thread.join(5)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (None, TypeError, "takes a prompt"),
        (123, TypeError, "got int 123"),
        ([["lights off"]], TypeError, "got list"),
        ({"predicate": "push", "entity": "nearest", "anchor": "abc"}, ValueError, "anchor must be a number"),
        ({"predicate": "push", "entity": "nearest", "anchor": float("nan")}, ValueError, "anchor must be"),
        ({"predicate": "push", "entity": "nearest", "attributes": {"note": 3}}, ValueError, "must map names"),
        (_changed_after_it_was_built(), ValueError, "must map names"),
        ({"predicate": "lights"}, ValueError, "need predicate, entity"),
        (["lights off"] * 1000, ValueError, "at most 16 commanded events"),
        ("lights off, " * 1000, ValueError, "event prompt of 12,000 characters, at most 1000"),
        (["lights off", 7], TypeError, "got int 7"),  # the good part of a bad list is not queued either
    ],
    ids=[
        "none",
        "int",
        "nested",
        "anchor-str",
        "anchor-nan",
        "attribute-int",
        "changed",
        "dict",
        "1000",
        "long",
        "mixed",
    ],
)
def test_a_bad_command_is_refused_at_the_call_and_nothing_is_queued(served, bad, error, match):
    env, _ = served()
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.unwrapped.command(bad)
    assert env.unwrapped.core.queued == [[]]
    _, _, _, _, info = env.step(FORWARD)  # the env goes on
    assert info["events"] == []


@pytest.mark.parametrize("event_actions, limit", [(False, 16), (True, 15)])
def test_commands_add_up_to_the_server_limit_and_no_further(served, event_actions, limit):
    """The server takes 16 events a step; with event actions one is kept for the action's menu event."""
    env, _ = served(event_actions=event_actions)
    env.reset(seed=0)
    env.unwrapped.command({"predicate": "lights", "entity": "room", "attributes": {"state": "off"}})
    for _ in range(limit - 1):
        env.unwrapped.command(EventRecord("lights", "room", {"state": "on"}))
    with pytest.raises(ValueError, match=f"would queue {limit + 1} for the next step"):
        env.unwrapped.command("lights off")
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape, np.int64))
    assert len(info["events"]) == limit and info["events"][0] == "lights(room state=off)"


def test_a_vector_command_checks_its_env_index(served):
    envs, _ = served(num_envs=2)
    envs.reset(seed=0)
    for bad in (2, -1, "0", True):
        with pytest.raises(ValueError, match=r"env_index must be None or an int in \[0, 2\)"):
            envs.unwrapped.command("lights off", env_index=bad)
    assert envs.unwrapped.core.queued == [[], []]
    envs.unwrapped.command("lights off", env_index=np.int64(1))
    assert [len(q) for q in envs.unwrapped.core.queued] == [0, 1]


def test_a_step_that_fails_after_the_server_moved_keeps_the_pose_in_step(served, monkeypatch):
    envs, backend = served(num_envs=2)
    envs.reset(seed=0)
    core = envs.unwrapped.core

    def broken(*args, **kwargs):
        raise RuntimeError("scoring failed")

    monkeypatch.setattr("dreamx_env.envs.core.score_step", broken)
    with pytest.raises(RuntimeError, match="scoring failed"):
        envs.step(np.stack([FORWARD, FORWARD]))
    for i, session in enumerate(core.sessions):
        assert np.allclose(core.frames[i].poses[-1], backend.pose(session))
    monkeypatch.undo()
    _, _, _, _, info = envs.step(np.stack([STILL, STILL]))
    assert np.allclose(info["pose"], [backend.pose(s) for s in core.sessions])
