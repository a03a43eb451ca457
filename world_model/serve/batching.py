"""Dynamic batching of STEP requests across clients.

A batch goes to the backend when it holds ``max_batch`` sessions, when every recently active client has
a step waiting (so lock-step clients never wait), or when its oldest step has waited ``max_wait_ms``.
Only one batch is generated at a time; steps arriving meanwhile form the next one, and their wait counts
from when the backend is free again: the clients just answered get ``max_wait_ms`` to send their next steps
and join them. (Counted from arrival, those steps would always be overdue, and lock-step clients split
into two halves that take turns, each half a batch.) A session appears at most once per batch, and
multi-chunk (horizon > 1) requests run in a batch of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from world_model.wire.requests import StepRequest


@dataclass
class BatchPolicy:
    max_batch: int = 64  # sessions per generate call
    # Longest a STEP waits for others to join its batch. 8 lock-step clients on the learned backend
    # (`dreamx-bench-serve --clients 8`, 2-core CPU) were all batched together from 5 ms, not at 2.
    max_wait_ms: float = 5.0
    active_window_ms: float = 250.0  # clients that stepped this recently are waited for


@dataclass
class PendingStep:
    identity: bytes
    request_id: int
    request: StepRequest
    arrived: float


class StepBatcher:
    def __init__(self, policy: BatchPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self.pending: list[PendingStep] = []
        self.busy = False  # a batch is being generated
        self.free_since = clock()  # when the backend last became free

    def add(self, identity: bytes, request_id: int, request: StepRequest) -> None:
        self.pending.append(PendingStep(identity, request_id, request, self.clock()))

    def finished(self) -> None:
        """The batch being generated is done (answered or failed): the backend is free from now."""
        self.busy = False
        self.free_since = self.clock()

    def waited_ms(self) -> float:
        """How long the oldest pending step has waited for a free backend (see the module docstring)."""
        return (self.clock() - max(self.pending[0].arrived, self.free_since)) * 1000

    def timeout_ms(self, idle_ms: float = 100.0) -> float:
        """How long the I/O loop may sleep before the oldest pending step is due."""
        if self.pending and not self.busy:
            return max(0.0, self.policy.max_wait_ms - self.waited_ms())
        return idle_ms

    def take(self, active: set[bytes]) -> list[PendingStep] | None:
        """The next batch if one is due (see the module docstring), else None."""
        if not self.pending or self.busy:
            return None
        p = self.policy
        total = sum(len(s.request.sessions) for s in self.pending)
        if (
            total < p.max_batch
            and not active <= {s.identity for s in self.pending}
            and self.waited_ms() < p.max_wait_ms
        ):
            return None
        batch: list[PendingStep] = []
        used: set[int] = set()
        n = 0
        for s in self.pending:
            sessions = set(s.request.sessions)
            if s.request.horizon > 1 or (batch and batch[0].request.horizon > 1):
                if not batch:
                    batch.append(s)
                break
            if used & sessions or (batch and n + len(sessions) > p.max_batch):
                break
            batch.append(s)
            used |= sessions
            n += len(sessions)
        self.pending = self.pending[len(batch) :]
        self.busy = True
        return batch
