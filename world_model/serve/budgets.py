"""Byte budgets: how large one reply may be, and how many bytes the server may hold for one client.

A reply's size is known before any work is done (sessions x chunks x frames x pixels x the outputs' bytes,
plus poses), so a request whose reply would exceed ``max_reply_bytes`` is refused up front with a
``too_large`` ERROR that says the limit and how to split the request. Per client, the server holds the
requests it is working on (their bytes and their replies' bytes) and the replies it keeps for retries;
``max_client_bytes`` bounds both: a new request that would take the work in progress beyond it is refused
(unless it is the client's only one), and older cached replies are dropped to fit (the newest one, the only
one a client retries, is always kept).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from world_model.wire.protocol import ErrorCode
from world_model.wire.requests import OUTPUT_DTYPES, SceneSpec, StepRequest

POSE_BYTES = 16 * 8  # one float64 4x4 pose
RGB_BYTES = 3


class TooLarge(Exception):
    """A request refused by a byte budget (ERROR ``too_large``)."""

    code = ErrorCode.TOO_LARGE


def _pixel_bytes(outputs: Iterable[str]) -> int:
    return sum(np.dtype(OUTPUT_DTYPES[o]).itemsize * (3 if o == "rgb" else 1) for o in outputs)


def _has_view(spec: SceneSpec) -> bool:
    return spec.view_pose is not None or spec.view_goal is not None


def open_reply_bytes(specs: list[SceneSpec], outputs: tuple[str, ...], height: int, width: int) -> int:
    """Array bytes of an OPEN/RESET reply: one first frame and pose per session (+ goal views)."""
    b, pixels = len(specs), height * width
    views = b * pixels * RGB_BYTES if any(_has_view(s) for s in specs) else 0
    return b * (pixels * _pixel_bytes(outputs) + POSE_BYTES) + views


def step_reply_bytes(req: StepRequest, height: int, width: int) -> int:
    """Array bytes of a STEP reply: ``[B, T, F]`` frames of the outputs asked for, ``[B, T, K]`` poses."""
    b, t, k = req.relative_poses.shape[:3]
    f = k if req.frames == "all" else 1
    pixels = height * width
    views = b * pixels * RGB_BYTES if any(_has_view(s) for s in req.resets.values()) else 0
    return b * t * (f * pixels * _pixel_bytes(req.outputs) + k * POSE_BYTES) + views


def check_reply(nbytes: int, limit: int, what: str) -> None:
    """Refuse a request whose reply would be ``nbytes`` (over ``limit``, the server's ``max_reply_bytes``)."""
    if nbytes > limit:
        raise TooLarge(
            f"the reply to this {what} would be {nbytes} bytes, over the server's max_reply_bytes={limit}; "
            "split the request (fewer sessions per request, a shorter horizon T, frames='last', fewer "
            "outputs) or raise max_reply_bytes"
        )


def check_client(held: int, nbytes: int, limit: int) -> None:
    """Refuse new work of ``nbytes`` from a client whose work in progress already holds ``held`` bytes
    (``limit``: the server's ``max_client_bytes``); a client's only request is never refused here."""
    if held and held + nbytes > limit:
        raise TooLarge(
            f"this client's requests in progress hold {held} bytes and this one needs {nbytes}, over the "
            f"server's max_client_bytes={limit}; wait for the replies before sending more"
        )
