"""The server's batching policy, on a clock the test moves."""

import numpy as np

from world_model.serve.batching import BatchPolicy, StepBatcher
from world_model.wire.requests import StepRequest


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += ms / 1000


def step(session: int, horizon: int = 1) -> StepRequest:
    return StepRequest([session], np.tile(np.eye(4), (1, horizon, 1, 1, 1)), [[[]] * horizon])


def batcher(**policy) -> tuple[StepBatcher, Clock]:
    clock = Clock()
    return StepBatcher(BatchPolicy(**policy), clock), clock


def sessions(batch) -> list[int]:
    return [s for p in batch for s in p.request.sessions]


def test_steps_queued_during_a_batch_wait_for_the_clients_it_answered():
    # a and b step in lock step. b's step arrives while a's batch runs: when it is done, a gets
    # max_wait_ms to send its next step, and both go together (counted from arrival, b's step would be
    # overdue at once, and a and b would take turns in batches of one).
    b_, clock = batcher(max_wait_ms=2.0)
    b_.add(b"a", 1, step(0))
    assert b_.take({b"a", b"b"}) is None  # b is active too, and 0 ms have passed
    clock.advance_ms(3)
    assert sessions(b_.take({b"a", b"b"})) == [0]  # a's step waited max_wait_ms: it goes alone
    b_.add(b"b", 2, step(1))
    clock.advance_ms(40)  # the batch generates
    b_.finished()
    assert b_.take({b"a", b"b"}) is None  # b's step has waited 40 ms, but only 0 since the backend is free
    assert b_.timeout_ms() == 2.0
    clock.advance_ms(0.5)
    b_.add(b"a", 3, step(0))  # a, answered, steps again
    assert sessions(b_.take({b"a", b"b"})) == [1, 0]


def test_a_client_that_does_not_come_back_delays_the_others_by_max_wait_ms_at_most():
    b_, clock = batcher(max_wait_ms=2.0)
    b_.add(b"a", 1, step(0))
    assert sessions(b_.take({b"a"})) == [0]
    b_.add(b"b", 2, step(1))
    clock.advance_ms(40)
    b_.finished()
    clock.advance_ms(1.5)
    assert b_.take({b"a", b"b"}) is None
    assert abs(b_.timeout_ms() - 0.5) < 1e-6
    clock.advance_ms(0.6)
    assert sessions(b_.take({b"a", b"b"})) == [1]


def test_nothing_is_taken_while_a_batch_runs_and_full_or_all_active_batches_go_at_once():
    b_, clock = batcher(max_wait_ms=50.0, max_batch=2)
    b_.add(b"a", 1, step(0))
    b_.add(b"b", 2, step(1))
    b_.add(b"c", 3, step(2))
    assert sessions(b_.take({b"a", b"b", b"c", b"d"})) == [0, 1]  # max_batch sessions: no wait
    assert b_.take({b"c"}) is None  # busy
    assert b_.timeout_ms(idle_ms=7.0) == 7.0
    b_.finished()
    assert sessions(b_.take({b"c"})) == [2]  # the only active client has its step waiting


def test_a_session_goes_once_a_batch_and_multi_chunk_requests_go_alone():
    b_, _ = batcher(max_wait_ms=0.0)
    b_.add(b"a", 1, step(0))
    b_.add(b"a", 2, step(0))
    b_.add(b"b", 3, step(1, horizon=3))
    assert sessions(b_.take(set())) == [0]
    b_.finished()
    assert sessions(b_.take(set())) == [0]
    b_.finished()
    batch = b_.take(set())
    assert sessions(batch) == [1] and batch[0].request.horizon == 3
