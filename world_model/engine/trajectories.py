"""Camera trajectories for the ground-truth engine: held keys per frame plus an event schedule.

A trajectory of T frames holds ``keys[0..T-1]``. Frame 0 is where the camera starts (``keys[0] == ""``);
frame t > 0 is reached by holding ``keys[t]`` for one frame from frame t-1 (the key map of
``world_model.geometry``), so
``geometry.key_trajectory(start, keys)[t]`` is the viewpoint of frame t when nothing blocks the camera.
``events[t]`` are applied just before frame t is rendered.

Kinds (``make_trajectory``):

- ``random``: a walk that holds a key combo for a geometric run of frames (mean ``mean_run``), mostly
  forward and turning, sometimes strafing, backing up or looking up/down; the pitch drifts back to level.
- The revisit protocols of DreamX's memory evaluation, built so that the camera comes back to earlier poses
  exactly (to floating-point rounding) when nothing blocks it: ``out_and_back``, ``closed_loop``,
  ``translate_rotate``. Their frames either translate or rotate, never both, wherever the key sequence is
  undone by the inverse keys, because one frame rotates first and then translates.

Given a scene (``spec``), trajectories start at a random free spot and steer clear of the walls and of
the objects as built (``free_space``), so that revisits are exact in the rendered world too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from world_model.engine.navigation import (
    FreeSpace,
    free_run,
    free_space,
    open_side,
    random_start,
    stays_free,
    turn_toward_open,
)
from world_model.engine.scenes import EYE_HEIGHT, ProceduralScene
from world_model.events import EVENT_MENU, EventRecord, parse_prompt
from world_model.geometry import KeyMap, Viewpoint, parse_keys, step_keys

DEFAULT_KEYMAP = KeyMap()
KINDS: tuple[str, ...] = ("random", "out_and_back", "closed_loop", "translate_rotate")
_MOVES = ("W", "", "WA", "WD", "A", "D", "S")
_MOVE_P = (0.45, 0.2, 0.08, 0.08, 0.06, 0.06, 0.07)
_YAWS = ("", "J", "L")
_YAW_P = (0.5, 0.25, 0.25)
_INVERSE = str.maketrans("WSADIKJL", "SWDAKILJ")
_TRANSLATIONS = ("W", "S", "A", "D", "WA", "WD", "SA", "SD")


@dataclass
class Trajectory:
    """Held keys per frame (``keys[0] == ""``), events per frame index, the protocol's name and the start
    viewpoint (None: the scene's own start)."""

    keys: list[str]
    events: dict[int, list[EventRecord]] = field(default_factory=dict)
    kind: str = "random"
    start: Viewpoint | None = None

    def __post_init__(self) -> None:
        if not self.keys or self.keys[0] != "":
            raise ValueError("a trajectory's keys[0] must be '' (frame 0 is the start, reached by no keys)")
        self.keys = [parse_keys(k) for k in self.keys]
        bad = [t for t in self.events if not 0 <= t < len(self.keys)]
        if bad:
            raise ValueError(f"event frame(s) {bad} outside the trajectory's frames 0..{len(self.keys) - 1}")

    def __len__(self) -> int:
        return len(self.keys)


def invert_keys(keys: str) -> str:
    """The keys that undo a frame of pure translation or pure rotation (W<->S, A<->D, J<->L, I<->K)."""
    return keys.translate(_INVERSE)


def _frames_for(degrees: float, keymap: KeyMap) -> int:
    n = degrees / keymap.yaw_step_deg
    if abs(n - round(n)) > 1e-9:
        raise ValueError(f"revisit protocols turn in whole frames: yaw_step_deg must divide {degrees}°")
    return round(n)


def min_frames(kind: str, keymap: KeyMap = DEFAULT_KEYMAP) -> int:
    """The fewest frames a trajectory of ``kind`` can have (closed loops need their four 90° corners)."""
    if kind not in KINDS:
        raise ValueError(f"unknown trajectory kind {kind!r}; choose one of {', '.join(KINDS)}")
    return {"random": 1, "closed_loop": 4 * _frames_for(90, keymap) + 1}.get(kind, 3)


def _check_length(kind: str, n_frames: int, keymap: KeyMap) -> None:
    if n_frames < min_frames(kind, keymap):
        raise ValueError(
            f"a {kind} trajectory needs at least {min_frames(kind, keymap)} frames with "
            f"yaw_step_deg={keymap.yaw_step_deg}, got {n_frames}"
        )


def _origin(start: Viewpoint | None) -> Viewpoint:
    return start if start is not None else Viewpoint(0.0, 0.0, EYE_HEIGHT, 0.0, 0.0)


def _walk(
    rng: np.random.Generator,
    n_steps: int,
    keymap: KeyMap,
    start: Viewpoint | None,
    is_free: FreeSpace | None,
    decoupled: bool,
    mean_run: float = 6.0,
    max_pitch_deg: float = 30.0,
) -> list[str]:
    """Keys for ``n_steps`` frames of a random walk. ``decoupled``: each frame translates or rotates."""
    view, keys, pitch = _origin(start), [], 0  # pitch in whole key steps, so that level is exact
    max_pitch = int(max_pitch_deg // keymap.pitch_step_deg)
    while len(keys) < n_steps:
        length = int(rng.geometric(1.0 / mean_run))
        move = _MOVES[rng.choice(len(_MOVES), p=_MOVE_P)]
        look = _YAWS[rng.choice(len(_YAWS), p=_YAW_P)]
        leveling = pitch != 0 and rng.random() < 0.5
        if leveling:
            look = ("K" if pitch > 0 else "I") + look
        elif rng.random() < 0.1:
            look = "IK"[int(rng.integers(2))] + look
        if decoupled and move and look:
            move, look = (move, "") if rng.random() < 0.5 else ("", look)
        blocked, steer = False, is_free is not None and not decoupled and "W" in move
        for _ in range(min(length, n_steps - len(keys))):
            if steer and look.strip("IK") == "" and free_run(view, move, 15, keymap, is_free) < 15:
                look += open_side(view, keymap, is_free)  # something ahead: curve away while walking
            k = move + look
            d = ("I" in k) - ("K" in k)
            if d and (abs(pitch + d) > max_pitch or (leveling and pitch == 0)):
                k, d = k.replace("I", "").replace("K", ""), 0
            nxt = step_keys(view, k, keymap)
            blocked = is_free is not None and (nxt.x, nxt.y) != (view.x, view.y) and not is_free(nxt.x, nxt.y)
            if blocked:
                break
            keys.append(k)
            view, pitch = nxt, pitch + d
        if blocked:  # about to bump into something: turn in place toward open space instead
            for k in turn_toward_open(rng, view, keymap, is_free)[: n_steps - len(keys)]:
                keys.append(k)
                view = step_keys(view, k, keymap)
    return keys


def _excursion(
    rng: np.random.Generator, n_steps: int, keymap: KeyMap, start: Viewpoint | None, is_free: FreeSpace | None
) -> list[str]:
    """``n_steps`` keys that walk out, pause (0 or 1 frame) and retrace the walk backwards to ``start``."""
    out = _walk(rng, n_steps // 2, keymap, start, is_free, decoupled=True)
    return out + [""] * (n_steps % 2) + [invert_keys(k) for k in reversed(out)]


def random_walk(
    rng: np.random.Generator,
    n_frames: int,
    keymap: KeyMap = DEFAULT_KEYMAP,
    start: Viewpoint | None = None,
    is_free: FreeSpace | None = None,
    mean_run: float = 6.0,
    max_pitch_deg: float = 30.0,
) -> Trajectory:
    """A random walk of ``n_frames`` frames: key combos held for geometric runs of frames (mean
    ``mean_run``), pitch within ``max_pitch_deg``. With ``is_free`` (see ``navigation.free_space``) a run
    that would enter occupied space stops and the camera turns in place toward open space."""
    _check_length("random", n_frames, keymap)
    keys = _walk(rng, n_frames - 1, keymap, start, is_free, False, mean_run, max_pitch_deg)
    return Trajectory([""] + keys, kind="random", start=start)


def out_and_back(
    rng: np.random.Generator,
    n_frames: int,
    keymap: KeyMap = DEFAULT_KEYMAP,
    start: Viewpoint | None = None,
    is_free: FreeSpace | None = None,
    turn_around: bool | None = None,
) -> Trajectory:
    """Walk out for half the frames, then retrace the path back to the start viewpoint.

    ``turn_around=False``: the camera walks back facing the way it went, through the outbound poses in
    reverse (frame t and frame T-1-t coincide, T-1-t counted without the pause of odd lengths).
    ``turn_around=True``: it turns 180° in place, walks back through the same positions facing the other
    way, and turns 180° again at the start. ``None`` (default) picks one at random."""
    _check_length("out_and_back", n_frames, keymap)
    steps, half = n_frames - 1, _frames_for(180, keymap)
    if turn_around is None:
        turn_around = bool(rng.random() < 0.5)
    if not turn_around or steps < 2 * half + 2:
        return Trajectory([""] + _excursion(rng, steps, keymap, start, is_free), {}, "out_and_back", start)
    n_out = (steps - 2 * half) // 2
    out = _walk(rng, n_out, keymap, start, is_free, decoupled=True)
    turn = ["JL"[int(rng.integers(2))]] * half
    # Facing the other way, the same move keys retrace a translation; rotations are undone as usual.
    back = [k if k in _TRANSLATIONS else invert_keys(k) for k in reversed(out)]
    pause = [""] * (steps - 2 * half - 2 * n_out)
    return Trajectory([""] + out + pause + turn + back + turn, kind="out_and_back", start=start)


def closed_loop(
    rng: np.random.Generator,
    n_frames: int,
    keymap: KeyMap = DEFAULT_KEYMAP,
    start: Viewpoint | None = None,
    is_free: FreeSpace | None = None,
    candidates: int = 24,
) -> Trajectory:
    """Walk a rectangle back to the start viewpoint, lapping it while a lap fits in the frames; frames
    left over walk out and retrace their way back (``out_and_back``), so the last frame is the first.

    Legs go straight ahead; the four 90° corners turn in place or walk a quarter circle (W+J or W+L), the
    same at opposite corners so that the loop closes. Of ``candidates`` random rectangles, the largest
    whose frames all stand in free space (with ``is_free``) is walked; a full turn in place if none."""
    _check_length("closed_loop", n_frames, keymap)
    steps, quarter, origin = n_frames - 1, _frames_for(90, keymap), _origin(start)
    longest = (steps - 4 * quarter) // 4
    loop, best = ["JL"[int(rng.integers(2))]] * (4 * quarter), 0
    for _ in range(candidates if longest > 0 else 0):
        side, arc = "JL"[int(rng.integers(2))], bool(rng.random() < 0.5)
        a, b = (int(v) for v in rng.integers(1, longest + 1, size=2))
        corner = [("W" if arc else "") + side] * quarter
        candidate = (["W"] * a + corner + ["W"] * b + corner) * 2
        if a + b > best and stays_free(origin, candidate, keymap, is_free):
            loop, best = candidate, a + b
    laps = steps // len(loop)
    rest = _excursion(rng, steps - laps * len(loop), keymap, start, is_free)
    return Trajectory([""] + loop * laps + rest, kind="closed_loop", start=start)


def translate_rotate(
    rng: np.random.Generator,
    n_frames: int,
    keymap: KeyMap = DEFAULT_KEYMAP,
    start: Viewpoint | None = None,
    is_free: FreeSpace | None = None,
    max_translation_m: float = 3.0,
) -> Trajectory:
    """Translate away without turning, rotate a full 360° in place, translate back to the start; repeat in
    other directions while frames remain (without the rotation when too few are left for it)."""
    _check_length("translate_rotate", n_frames, keymap)
    full, view = _frames_for(360, keymap), _origin(start)
    longest = max(1, int(max_translation_m / max(keymap.move_step, keymap.strafe_step)))
    keys: list[str] = []
    remaining = n_frames - 1
    while remaining >= 2:
        rotate = remaining >= full + 2
        budget = min(longest, (remaining - (full if rotate else 0)) // 2)
        want = int(rng.integers(max(1, budget // 2), budget + 1))
        moves = [str(m) for m in rng.permutation(_TRANSLATIONS)]
        length, move = max(((free_run(view, m, want, keymap, is_free), m) for m in moves), key=lambda r: r[0])
        if length == 0 and not rotate:
            break
        turn = ["JL"[int(rng.integers(2))]] * (full if rotate else 0)
        segment = [move] * length + turn + [invert_keys(move)] * length
        keys += segment
        remaining -= len(segment)
    return Trajectory([""] + keys + [""] * remaining, kind="translate_rotate", start=start)


def random_events(
    rng: np.random.Generator, n_frames: int, probability: float, max_events: int = 2
) -> dict[int, list[EventRecord]]:
    """With ``probability``, 1 to ``max_events`` events from ``EVENT_MENU`` at random frames 1..T-1."""
    if rng.random() >= probability or n_frames < 2:
        return {}
    count = min(int(rng.integers(1, max_events + 1)), n_frames - 1)
    frames = sorted(int(f) for f in rng.choice(np.arange(1, n_frames), size=count, replace=False))
    return {f: parse_prompt(EVENT_MENU[int(rng.integers(1, len(EVENT_MENU)))]) for f in frames}


_BUILDERS = {
    "random": random_walk,
    "out_and_back": out_and_back,
    "closed_loop": closed_loop,
    "translate_rotate": translate_rotate,
}


def make_trajectory(
    kind: str,
    rng: np.random.Generator,
    n_frames: int,
    keymap: KeyMap = DEFAULT_KEYMAP,
    spec: ProceduralScene | None = None,
    event_probability: float = 0.0,
) -> Trajectory:
    """A trajectory of ``kind`` (one of ``KINDS``) with ``n_frames`` frames, deterministic given ``rng``.
    With ``spec`` it starts at a random free spot of that scene and keeps clear of walls and objects."""
    min_frames(kind, keymap)  # checks the kind
    start = random_start(rng, spec) if spec is not None else None
    is_free = free_space(spec) if spec is not None else None
    traj = _BUILDERS[kind](rng, n_frames, keymap, start=start, is_free=is_free)
    traj.events = random_events(rng, n_frames, event_probability)
    return traj
