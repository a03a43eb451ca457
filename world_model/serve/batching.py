"""Dynamic batching of STEP requests across clients.

A batch goes to the backend when it holds ``max_batch`` sessions, when every recently active client has
a step waiting (so lock-step clients never wait), or when its oldest step has waited ``max_wait_ms``.
Only one batch is generated at a time; steps arriving meanwhile form the next one. A session appears at
most once per batch, and multi-chunk (horizon > 1) requests run in a batch of their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from world_model.serve.requests import StepRequest


@dataclass
class BatchPolicy:
    max_batch: int = 64
    max_wait_ms: float = 2.0
    active_window_ms: float = 250.0


@dataclass
class PendingStep:
    identity: bytes
    request_id: int
    request: StepRequest
    arrived: float


class StepBatcher:
    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self.pending: list[PendingStep] = []
        self.busy = False  # a batch is being generated

    def add(self, identity: bytes, request_id: int, request: StepRequest) -> None:
        self.pending.append(PendingStep(identity, request_id, request, time.monotonic()))

    def timeout_ms(self, idle_ms: float = 100.0) -> float:
        """How long the I/O loop may sleep before the oldest pending step is due."""
        if self.pending and not self.busy:
            waited = (time.monotonic() - self.pending[0].arrived) * 1000
            return max(0.0, self.policy.max_wait_ms - waited)
        return idle_ms

    def take(self, active: set[bytes]) -> list[PendingStep] | None:
        """The next batch if one is due (see the module docstring), else None."""
        if not self.pending or self.busy:
            return None
        p = self.policy
        total = sum(len(s.request.sessions) for s in self.pending)
        waited_ms = (time.monotonic() - self.pending[0].arrived) * 1000
        if (
            total < p.max_batch
            and not active <= {s.identity for s in self.pending}
            and waited_ms < p.max_wait_ms
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
