"""Held keys -> DreamX actions, and the viewer's key scripts (``dreamx-play --script "W*10,J*5,1"``).

Keys are the camera keys of ``world_model.geometry``: W/S forward/back, A/D strafe left/right, J/L turn
left/right, I/K look up/down.
Opposite keys held together cancel; the rest combine (W+J walks in an arc). :func:`keys_to_action` gives the
``MultiDiscrete([move, look, event])`` action indexing ``geometry.MOVE_COMBOS``, ``geometry.LOOK_COMBOS`` and
``events.EVENT_MENU``.

A script is a comma-separated list of tokens, one or more frames each:

| token          | meaning                                                       |
|----------------|---------------------------------------------------------------|
| ``W``, ``WJ``  | hold these keys (any of WASDIJKL) for one frame               |
| ``WJ*5``       | ... for 5 frames (any token takes ``*N``)                     |
| ``-``          | hold nothing for one frame (``-*10``: wait 10 frames)         |
| ``1`` .. ``8`` | trigger event-menu entry N (``EVENT_MENU[N]``) this frame     |
| ``T:<text>``   | send ``env.unwrapped.command(text)`` this frame (no commas)   |
| ``R``          | toggle MP4 recording                                          |
| ``P``          | toggle control between the keyboard and a loaded policy       |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from world_model.events import EVENT_MENU
from world_model.geometry import LOOK_COMBOS, MOVE_COMBOS

KEYS = "WASDIJKL"
SCRIPT_HELP = "tokens: WASDIJKL combos ('WJ'), '-' (no key), 1-8 (event), 'T:<text>', 'R', 'P', all with '*N'"


def keys_to_action(held: set[str] | frozenset[str], event: int = 0) -> np.ndarray:
    """``[move, look, event]`` for the set of held keys (letters of ``KEYS``) and an event-menu index."""
    fwd = "W" if "W" in held and "S" not in held else "S" if "S" in held and "W" not in held else ""
    side = "A" if "A" in held and "D" not in held else "D" if "D" in held and "A" not in held else ""
    pitch = "I" if "I" in held and "K" not in held else "K" if "K" in held and "I" not in held else ""
    yaw = "J" if "J" in held and "L" not in held else "L" if "L" in held and "J" not in held else ""
    return np.array([MOVE_COMBOS.index(fwd + side), LOOK_COMBOS.index(pitch + yaw), event], np.int64)


@dataclass(frozen=True)
class ScriptFrame:
    """What one scripted frame does (the same things a person does with the keyboard)."""

    held: frozenset[str] = frozenset()
    event: int = 0
    text: str | None = None
    toggle_record: bool = False
    toggle_policy: bool = False


def parse_script(script: str) -> list[ScriptFrame]:
    """Frames of a key script such as ``"W*10,WJ*5,1,T:drop a red ball,-*3"``; ``ValueError`` if bad."""
    frames: list[ScriptFrame] = []
    for raw in filter(None, (t.strip() for t in script.split(","))):
        token, count = raw, 1
        if "*" in raw and not raw.upper().startswith("T:"):
            token, _, n = raw.rpartition("*")
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"bad repeat count in script token {raw!r}: use e.g. 'W*10'; {SCRIPT_HELP}")
            count = int(n)
        up = token.upper()
        if up.startswith("T:") and token[2:].strip():
            frame = ScriptFrame(text=token[2:].strip())
        elif up == "R":
            frame = ScriptFrame(toggle_record=True)
        elif up == "P":
            frame = ScriptFrame(toggle_policy=True)
        elif up == "-":
            frame = ScriptFrame()
        elif up.isdigit() and 1 <= int(up) < len(EVENT_MENU):
            frame = ScriptFrame(event=int(up))
        elif up and set(up) <= set(KEYS):
            frame = ScriptFrame(held=frozenset(up))
        else:
            raise ValueError(f"unknown script token {raw!r}; {SCRIPT_HELP} (events 1-{len(EVENT_MENU) - 1})")
        frames.extend([frame] * count)
    return frames
