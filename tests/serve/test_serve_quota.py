"""One client cannot take every session of a server: ``max_sessions_per_client``."""

import pytest

from world_model.serve.server import ServerConfig
from world_model.wire.client import ServerError, SimulatorClient
from world_model.wire.protocol import ErrorCode
from world_model.wire.requests import SceneSpec


def test_a_client_gets_at_most_its_quota_and_others_still_get_theirs(serve):
    address, _, server = serve(max_sessions=8, max_sessions_per_client=3)
    greedy, other = SimulatorClient(address), SimulatorClient(address)
    held = greedy.open([SceneSpec(0), SceneSpec(1)]).sessions
    for call in (lambda: greedy.open([SceneSpec(2), SceneSpec(3)]), lambda: greedy.fork(held[0], 2)):
        with pytest.raises(ServerError, match="holds 2 of at most 3 sessions per client") as err:
            call()
        assert err.value.code == ErrorCode.TOO_MANY_SESSIONS
    assert server.table.n_sessions == 2  # nothing was opened by the refused requests
    held += greedy.fork(held[0], 1)
    assert len(other.open([SceneSpec(i) for i in range(3)]).sessions) == 3
    greedy.close_sessions(held[:1])
    assert len(greedy.open([SceneSpec(4)]).sessions) == 1
    assert greedy.info()["server"]["max_sessions_per_client"] == 3


def test_the_quota_is_a_positive_integer():
    with pytest.raises(ValueError, match="max_sessions_per_client must be a positive integer"):
        ServerConfig(max_sessions_per_client=0)
