import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

# The agents are tested on the ground truth: deterministic, so imagined rollouts are exact.
BACKEND = "oracle"


@pytest.fixture(scope="session")
def oracle_server():
    """One oracle server subprocess (64x64) for the agent tests; MuJoCo's GL stays out of pytest's process."""
    from dreamx_env.launcher import launch

    with launch(backend=BACKEND) as server:
        yield server.address


@pytest.fixture
def make(oracle_server):
    """``make(env_id, **kwargs)``: ``gymnasium.make`` on the shared oracle server; closed afterwards."""
    import gymnasium as gym

    import dreamx_env  # noqa: F401

    made = []

    def _make(env_id: str, **kwargs):
        env = gym.make(env_id, backend=BACKEND, server=oracle_server, **kwargs)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()
