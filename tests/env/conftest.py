import importlib.util
import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _oracle_available() -> bool:
    try:
        return importlib.util.find_spec("world_model.engine.oracle") is not None
    except ImportError:
        return False


# The ground truth once it is in the tree; the constant backend before that.
BACKEND = "oracle" if _oracle_available() else "constant"


@pytest.fixture
def make():
    """``make(env_id, **kwargs)``: gymnasium.make on an in-process server; closes everything afterwards."""
    import gymnasium as gym

    import dreamx_env  # noqa: F401

    made = []

    def _make(env_id: str, vector: int = 0, **kwargs):
        kwargs.setdefault("backend", BACKEND)
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
