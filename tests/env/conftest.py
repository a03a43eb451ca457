import importlib.util
import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _oracle_available() -> bool:
    try:
        return importlib.util.find_spec("world_model.engine.oracle") is not None
    except ImportError:
        return False


# The ground truth once it is in the tree, the constant backend before that. DREAMX_TEST_BACKEND overrides
# the backend; DREAMX_TEST_SERVER points the env tests at a running server of that backend instead.
BACKEND = os.environ.get("DREAMX_TEST_BACKEND") or ("oracle" if _oracle_available() else "constant")


@pytest.fixture(scope="session")
def shared_server():
    """One server process for the env tests when the backend is a renderer. It stays out of the pytest
    process on purpose: Mesa's GL (MuJoCo) loaded before triton makes ``import triton`` (and so torch
    optimizers, SB3) crash in the same process. The constant backend runs in-process threads instead."""
    if os.environ.get("DREAMX_TEST_SERVER"):
        yield os.environ["DREAMX_TEST_SERVER"]
    elif BACKEND == "constant":
        yield "thread"
    else:
        from dreamx_env.launcher import launch

        with launch(backend=BACKEND) as server:
            yield server.address


@pytest.fixture
def make(shared_server):
    """``make(env_id, **kwargs)``: gymnasium.make (or make_vec with ``vector=n``) on the test backend;
    closes everything afterwards."""
    import gymnasium as gym

    import dreamx_env  # noqa: F401

    made = []

    def _make(env_id: str, vector: int = 0, **kwargs):
        kwargs.setdefault("backend", BACKEND)
        if kwargs["backend"] == BACKEND and "resolution" not in kwargs:
            kwargs.setdefault("server", shared_server)
        elif kwargs["backend"] != "constant":
            kwargs.setdefault("server", None)  # an embedded subprocess of its own
        kwargs.setdefault("server", "thread")
        if vector:
            env = gym.make_vec(env_id, num_envs=vector, vectorization_mode="vector_entry_point", **kwargs)
        else:
            env = gym.make(env_id, **kwargs)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()
