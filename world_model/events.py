"""Event records and their vocabulary: the one source of truth for what can happen in a world.

An event is ``EventRecord(predicate, entity, attributes, anchor)``, as in DreamX's event data::

    EventRecord("drop", "ball", {"color": "red"}, anchor=1.5)    # 1.5 m ahead of the camera
    EventRecord("lights", "room", {"state": "off"})
    EventRecord("open", "door")
    EventRecord("paint", "nearest box", {"color": "blue"})
    EventRecord("push", "nearest")
    EventRecord("spawn", "cylinder", {"color": "green"}, anchor=2.0)

Several records in one step compose, in order. :func:`parse_prompt` turns short English prompts
("turn the lights off and drop a red ball") into records and raises a ``ValueError`` that lists the
vocabulary for anything it cannot read. Prompts are at most ``MAX_PROMPT_CHARS`` characters and each clause
at most ``MAX_CLAUSE_CHARS``; within that, parsing reads each clause once (time linear in its length).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

from world_model.semantics import COLORS, OBJECT_SHAPES

PREDICATES: tuple[str, ...] = ("lights", "drop", "spawn", "push", "open", "close", "paint")
DROPPABLE: tuple[str, ...] = ("ball", "box", "cylinder")
TARGETED: tuple[str, ...] = ("paint", "push")  # predicates that act on an object already in the scene
ANCHOR_RANGE_M: tuple[float, float] = (0.5, 3.0)
DEFAULT_ANCHOR_M = 1.5
# A step carries at most 16 events (the server's default), each a few words: these caps leave room for that,
# and bound the parser's work and the size of its error messages for anything longer.
MAX_PROMPT_CHARS = 1000
MAX_CLAUSE_CHARS = 200
# Fixed menu of events for discrete action spaces: index 0 is "no event".
EVENT_MENU: tuple[str, ...] = (
    "",
    "lights off",
    "lights on",
    "drop a red ball",
    "drop a blue box",
    "open the door",
    "close the door",
    "push the nearest object",
    "paint the nearest object green",
)


@dataclass(frozen=True)
class EventRecord:
    """One structured event. ``anchor`` is a distance in metres ahead of the camera (drop/spawn)."""

    predicate: str
    entity: str
    attributes: dict[str, Any] = field(default_factory=dict)
    anchor: float | None = None

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "predicate": self.predicate,
            "entity": self.entity,
            "attributes": dict(self.attributes),
            "anchor": self.anchor,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EventRecord:
        try:
            return cls(
                str(d["predicate"]), str(d["entity"]), dict(d.get("attributes") or {}), d.get("anchor")
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"malformed event record {d!r}: need predicate, entity[, attributes, anchor]"
            ) from exc

    def __str__(self) -> str:
        attrs = " ".join(f"{k}={v}" for k, v in self.attributes.items())
        where = f" @{self.anchor:.1f}m" if self.anchor is not None else ""
        return f"{self.predicate}({self.entity}{' ' + attrs if attrs else ''}){where}"


def vocabulary() -> str:
    """Human-readable vocabulary, used in error messages and the viewer's help."""
    return (
        "predicates: lights on|off, drop <colour> <ball|box|cylinder>, spawn <colour> <shape>, "
        "push [the nearest] [<colour>] [<shape>|object], push <shape>#<n>, open|close the door, "
        "paint [the nearest] [<shape>|object] <colour>, paint <shape>#<n> <colour>; "
        f"colours: {', '.join(COLORS)}; shapes: {', '.join(OBJECT_SHAPES)}; "
        f"distances: 'N m ahead' with N in [{ANCHOR_RANGE_M[0]}, {ANCHOR_RANGE_M[1]}]"
    )


def _check_color(color: Any) -> None:
    if color not in COLORS:
        raise ValueError(f"unknown colour {color!r}; choose one of: {', '.join(COLORS)}")


def _check_fields(ev: EventRecord) -> None:
    """What every record needs to travel and be shown, whatever its predicate: attributes map names to
    words, the anchor is None or a finite number of metres (never a bool or a string)."""
    a, anchor = ev.attributes, ev.anchor
    if not isinstance(a, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in a.items()):
        raise ValueError(f"event attributes must map names to words, e.g. {{'color': 'red'}}, got {a!r:.100}")
    if anchor is not None and (
        isinstance(anchor, bool) or not isinstance(anchor, numbers.Real) or not math.isfinite(anchor)
    ):
        raise ValueError(
            f"event anchor must be a number of metres ahead of the camera or None, got {anchor!r:.50}"
        )


def validate(ev: EventRecord) -> None:
    """Raise ``ValueError`` with the vocabulary if the record is not something the world can do (or cannot
    travel: see :func:`_check_fields`). Runs when a record is built; call it again on a record whose
    attributes dict may have changed since."""
    _check_fields(ev)
    p, e, a = ev.predicate, ev.entity, ev.attributes
    if p not in PREDICATES:
        raise ValueError(f"unknown event predicate {p!r}; {vocabulary()}")
    if p == "lights":
        if a.get("state") not in ("on", "off"):
            raise ValueError(f"lights needs attributes {{'state': 'on'|'off'}}, got {a!r}")
    elif p in ("drop", "spawn"):
        allowed = DROPPABLE if p == "drop" else OBJECT_SHAPES[:-1]
        if e not in allowed:
            raise ValueError(f"cannot {p} {e!r}; choose one of: {', '.join(allowed)}")
        _check_color(a.get("color", "red"))
        lo, hi = ANCHOR_RANGE_M
        if ev.anchor is not None and not lo <= float(ev.anchor) <= hi:
            raise ValueError(f"{p} anchor must be {lo}-{hi} m ahead of the camera, got {ev.anchor}")
    elif p in ("open", "close"):
        if e != "door":
            raise ValueError(f"only the door can {p}, got {e!r}")
    elif p in TARGETED:
        if p == "paint":
            _check_color(a.get("color"))
        if not _TARGET.fullmatch(e):
            raise ValueError(
                f"{p} target must be 'nearest', 'nearest <shape>', 'nearest <colour> <shape>' or "
                f"'<shape>#<n>', got {e!r}; shapes: {', '.join(OBJECT_SHAPES)}"
            )
        words = e.replace("nearest", "").replace("object", "").split()
        for w in words:
            if "#" not in w and w not in OBJECT_SHAPES and w not in COLORS:
                raise ValueError(f"unknown word {w!r} in {p} target {e!r}; {vocabulary()}")


_TARGET = re.compile(r"nearest( \w+)*|\w+#\d+")
_FILLER = {
    "the",
    "a",
    "an",
    "please",
    "turn",
    "switch",
    "then",
    "to",
    "it",
    "of",
    "in",
    "front",
    "me",
    "some",
    "new",
    "make",
    "color",
    "colour",
}
_SHAPE_ALIASES = {"cube": "box", "sphere": "ball", "block": "box", "crate": "box", "pillar": "cylinder"}
_OBJECT_VERBS = {
    "drop",
    "spawn",
    "add",
    "place",
    "put",
    "create",
    "paint",
    "recolor",
    "recolour",
    "push",
    "kick",
    "shove",
}
_OBJECT_WORDS = {"nearest", "object", "ahead", "away", "here", "m", "meter", "meters", "metre", "metres"}


_TOKEN = re.compile(r"[a-z]+|\d+(?:\.\d+)?|#\d+")  # words, numbers, "#3" (greedy: each char read once)
_UNITS = {"m", "meter", "meters", "metre", "metres"}
_WORD_CHAR = re.compile(r"\w")


def _adjacent(clause: str, a: re.Match, b: re.Match) -> bool:
    """Whether token ``b`` follows token ``a`` with nothing but whitespace between them."""
    return b.start() == a.end() or clause[a.end() : b.start()].isspace()


def _distance(clause: str, tokens: list[re.Match]) -> float | None:
    """The first "<number> m" (or meter(s), metre(s)) in the clause, in metres; "1 mile" is none."""
    for num, unit in zip(tokens, tokens[1:], strict=False):
        if (
            num[0][0].isdigit()
            and unit[0] in _UNITS
            and _adjacent(clause, num, unit)
            and not _WORD_CHAR.match(clause, unit.end())
        ):
            return float(num[0])
    return None


def _named(clause: str, tokens: list[re.Match]) -> str | None:
    """The first object named as in the scene info, "box#3" or "cube #3" (shape aliases mapped), if any."""
    for name, num in zip(tokens, tokens[1:], strict=False):
        if num[0][0] == "#" and name[0][0].isalpha() and _adjacent(clause, name, num):
            return f"{_SHAPE_ALIASES.get(name[0], name[0])}{num[0]}"
    return None


def _parse_clause(clause: str) -> EventRecord:
    if len(clause) > MAX_CLAUSE_CHARS:
        raise ValueError(
            f"event clause {clause!r:.60}... has {len(clause):,} characters, at most {MAX_CLAUSE_CHARS}: "
            "say one event a clause, separated by 'and', 'then', ',' or ';'"
        )
    tokens = list(_TOKEN.finditer(clause))
    words = [_SHAPE_ALIASES.get(t[0], t[0]) for t in tokens]
    distance = _distance(clause, tokens)
    colors = [w for w in words if w in COLORS]
    shapes = [w for w in words if w in OBJECT_SHAPES]
    if "light" in clause or "lights" in words:
        state = "off" if ("off" in words or "dark" in words) else "on" if "on" in words else None
        if state is None:
            raise ValueError(f"say whether the lights go 'on' or 'off' in {clause!r}")
        return EventRecord("lights", "room", {"state": state})
    if "door" in words and ("open" in words or "close" in words or "shut" in words):
        return EventRecord("open" if "open" in words else "close", "door")
    # a word the vocabulary lacks ("drop a mauve ball") must not be silently dropped (a red ball)
    unknown = [
        w
        for w in words
        if w not in _FILLER
        and w not in _OBJECT_VERBS
        and w not in _OBJECT_WORDS
        and w not in COLORS
        and w not in OBJECT_SHAPES
        and not w[0].isdigit()
        and w[0] != "#"
    ]
    if unknown and any(w in _OBJECT_VERBS for w in words):
        raise ValueError(f"unknown word(s) {unknown} in {clause!r}; {vocabulary()}")
    for verb, pred in (
        ("drop", "drop"),
        ("spawn", "spawn"),
        ("add", "spawn"),
        ("place", "spawn"),
        ("put", "spawn"),
        ("create", "spawn"),
    ):
        if verb in words:
            shape = shapes[0] if shapes else "ball"
            return EventRecord(pred, shape, {"color": colors[0] if colors else "red"}, anchor=distance)
    named = _named(clause, tokens)
    if "paint" in words or "recolor" in words or "recolour" in words:
        if not colors:
            raise ValueError(f"say which colour to paint in {clause!r}; colours: {', '.join(COLORS)}")
        target = named or " ".join(["nearest", *colors[:-1], *shapes[:1]])
        return EventRecord("paint", target, {"color": colors[-1]})
    if "push" in words or "kick" in words or "shove" in words:
        return EventRecord("push", named or " ".join(["nearest", *colors[:1], *shapes[:1]]))
    unknown = [w for w in words if w not in _FILLER]
    raise ValueError(f"cannot read event {clause!r} (words: {unknown}); {vocabulary()}")


def parse_prompt(prompt: str) -> list[EventRecord]:
    """Parse a short English prompt into event records, e.g. "turn the lights off and drop a red ball".
    A prompt longer than ``MAX_PROMPT_CHARS`` is refused before it is read."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(
            f"event prompt of {len(prompt):,} characters, at most {MAX_PROMPT_CHARS}: say a few short "
            "clauses such as 'turn the lights off and drop a red ball' (or pass EventRecords)"
        )
    text = prompt.strip().lower()
    if not text:
        raise ValueError(f"empty event prompt; {vocabulary()}")
    clauses = [c.strip() for c in re.split(r",|;|\band then\b|\bthen\b|\band\b", text) if c.strip()]
    return [_parse_clause(c) for c in clauses]


def as_records(events: Any) -> list[EventRecord]:
    """Accept a prompt string, an ``EventRecord``, a dict, or a list of these; return records."""
    if events is None:
        return []
    if isinstance(events, str):
        return parse_prompt(events) if events.strip() else []
    if isinstance(events, EventRecord):
        return [events]
    if isinstance(events, dict):
        return [EventRecord.from_dict(events)]
    out: list[EventRecord] = []
    for e in events:
        out.extend(as_records(e))
    return out
