"""A vector env's sessions in lanes: one connection per lane, each lane's requests sent at once.

Behind a broker (``world_model.serve.cluster``), each lane's sessions open on the least-loaded worker, so
the lanes of one vector env land on different workers and their frames are generated at the same time, in
different processes. On the CPU that keeps both cores busy through the single-threaded parts of a step
(memory, collision, the client's own work), which one process with two threads leaves half idle (the
measurement: ``docs/speed.md``).

``LanedClient`` has the calls of ``SimulatorClient`` that ``DreamXCore`` makes, with the same arguments
and results: rows are split by lane, sent together and put back in order.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from world_model.events import EventRecord
from world_model.wire.client import ClientConfig, OpenResult, ServerError, SimulatorClient, StepResult
from world_model.wire.protocol import ErrorCode, bad_event_text
from world_model.wire.requests import SceneSpec


class LanedClient:
    """``lanes`` connections to ``address``; a session belongs to the lane that opened it."""

    def __init__(self, address: str, lanes: int, config: ClientConfig | None = None) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        self.address = address
        self.lanes = [SimulatorClient(address, config) for _ in range(lanes)]
        self._pool = ThreadPoolExecutor(lanes, thread_name_prefix="dreamx-lane")
        self._lane_of: dict[int, int] = {}
        self._refuses: bool | None = None  # whether the backend may refuse events (see step)

    @property
    def closed(self) -> bool:
        return self.lanes[0].closed

    def info(self) -> dict[str, Any]:
        meta = self.lanes[0].info()
        for lane in self.lanes[1:]:  # every lane talks to the same server (or broker)
            lane.learn_limits(meta)
        return meta

    def open(self, specs: list[SceneSpec], outputs: tuple[str, ...] = ("rgb",)) -> OpenResult:
        """Open ``specs`` split into contiguous lanes, one OPEN after the other: a broker places each on its
        least-loaded worker, so it sees the previous lane's sessions before placing the next."""
        sizes = [len(part) for part in np.array_split(np.arange(len(specs)), len(self.lanes))]
        bounds = np.cumsum([0, *sizes])
        results = []
        for lane, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            if hi > lo:
                res = self.lanes[lane].open(specs[lo:hi], outputs)
                self._lane_of.update(dict.fromkeys(res.sessions, lane))
                results.append(res)
        return _merge_opened(results)

    def reset(
        self, sessions: list[int], specs: list[SceneSpec], outputs: tuple[str, ...] = ("rgb",)
    ) -> OpenResult:
        rows = self._rows_by_lane(sessions)
        parts = self._each(
            rows, lambda lane, r: lane.reset([sessions[i] for i in r], [specs[i] for i in r], outputs)
        )
        order = np.argsort(np.concatenate(list(rows.values())), kind="stable")
        merged = _merge_opened(parts)
        return OpenResult(
            [merged.sessions[j] for j in order],
            {k: v[order] for k, v in merged.frames.items()},
            [merged.scenes[j] for j in order],
        )

    def step(
        self,
        sessions: list[int],
        relative_poses: np.ndarray,
        events: list[list[list[EventRecord]]] | None = None,
        outputs: tuple[str, ...] = ("rgb",),
        frames: str = "last",
        resets: dict[int, SceneSpec] | None = None,
    ) -> StepResult:
        """``SimulatorClient.step`` with every lane's rows sent at once; ``resets`` are keyed by row. With a
        backend that can refuse an event (the oracle, for an object its scene lacks), every lane whose rows
        carry events is asked first (CHECK), so a refusal leaves all lanes unstepped, as one lane would."""
        resets = resets or {}
        rows = self._rows_by_lane(sessions)
        if events is not None and self._refuses_events():
            carrying = {
                lane: [i for i in r if i not in resets and any(events[i])] for lane, r in rows.items()
            }
            self._each({lane: r for lane, r in carrying.items() if r}, partial(_check, sessions, events))

        def step_lane(lane: SimulatorClient, r: list[int]) -> StepResult:
            return lane.step(
                [sessions[i] for i in r],
                relative_poses[r],
                None if events is None else [events[i] for i in r],
                outputs,
                frames,
                {j: resets[i] for j, i in enumerate(r) if i in resets},
            )

        parts = self._each(rows, step_lane)
        merged: dict[str, np.ndarray] = {}
        scenes = {}
        for r, part in zip(rows.values(), parts, strict=True):
            for key, value in part.frames.items():
                if key not in merged:
                    merged[key] = np.empty((len(sessions), *value.shape[1:]), value.dtype)
                merged[key][r] = value
            scenes.update({r[j]: scene for j, scene in part.scenes.items()})
        return StepResult(merged, scenes)

    def fork(self, session: int, count: int = 1) -> list[int]:
        """Forks live where their session does (a worker holds a session's whole state)."""
        lane = self._lane_of[session]
        forks = self.lanes[lane].fork(session, count)
        self._lane_of.update(dict.fromkeys(forks, lane))
        return forks

    def close_sessions(self, sessions: list[int], timeout_s: float | None = None) -> None:
        rows = self._rows_by_lane(sessions)
        try:
            self._each(rows, lambda lane, r: lane.close_sessions([sessions[i] for i in r], timeout_s))
        finally:  # a lane that failed (its worker lost) no longer holds them either
            for s in sessions:
                self._lane_of.pop(s, None)

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()
        self._pool.shutdown(wait=True)

    def _refuses_events(self) -> bool:
        """Whether the backend may refuse an event (its INFO says so), asked once."""
        if self._refuses is None:
            self._refuses = bool((self.info()["backend"].get("extra") or {}).get("refuses_events"))
        return self._refuses

    # -- rows and lanes -------------------------------------------------------------------------------------
    def _rows_by_lane(self, sessions: list[int]) -> dict[int, list[int]]:
        """The rows of ``sessions`` on each lane, in row order; a lane with no rows is left out."""
        rows: dict[int, list[int]] = {}
        for i, s in enumerate(sessions):
            if s not in self._lane_of:
                raise KeyError(f"session {s} was not opened through this client")
            rows.setdefault(self._lane_of[s], []).append(i)
        return dict(sorted(rows.items()))

    def _each(self, rows: dict[int, list[int]], call) -> list:
        """``call(lane client, rows)`` for every lane at once; the results in lane order. Every lane's
        request is waited for before an error is raised, so none is left half-read."""
        futures = [self._pool.submit(call, self.lanes[lane], r) for lane, r in rows.items()]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]

    def __enter__(self) -> LanedClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check(
    sessions: list[int], events: list[list[list[EventRecord]]], lane: SimulatorClient, rows: list[int]
) -> None:
    """CHECK ``rows`` of a step on their lane; a refusal names the row of the whole step, not the lane's."""
    try:
        lane.check_events([sessions[i] for i in rows], [events[i] for i in rows])
    except ServerError as exc:
        d = exc.details
        if exc.code != ErrorCode.BAD_EVENT or not {"row", "step", "reason"} <= d.keys():
            raise
        row = rows[d["row"]]
        text = bad_event_text(row, d["step"], d["reason"])
        raise ServerError(exc.code, text, exc.address, d | {"row": row}) from None


def _merge_opened(parts: list[OpenResult]) -> OpenResult:
    return OpenResult(
        [s for p in parts for s in p.sessions],
        {k: np.concatenate([p.frames[k] for p in parts]) for k in parts[0].frames},
        [scene for p in parts for scene in p.scenes],
    )
