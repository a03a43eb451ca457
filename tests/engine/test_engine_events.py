"""Event records and the prompt front end (pure python): what parses, and what fails with the vocabulary."""

import time

import pytest

from world_model import events
from world_model.events import (
    ANCHOR_RANGE_M,
    EVENT_MENU,
    MAX_CLAUSE_CHARS,
    MAX_PROMPT_CHARS,
    PREDICATES,
    EventRecord,
    as_records,
    parse_prompt,
    vocabulary,
)
from world_model.semantics import COLORS, OBJECT_SHAPES


@pytest.mark.parametrize(
    "prompt,want",
    [
        ("lights off", [("lights", "room", {"state": "off"}, None)]),
        ("Turn the lights ON", [("lights", "room", {"state": "on"}, None)]),
        ("make it dark", None),  # no light word: not an event this front end knows
        ("open the door", [("open", "door", {}, None)]),
        ("shut the door", [("close", "door", {}, None)]),
        ("drop a red ball", [("drop", "ball", {"color": "red"}, None)]),
        ("drop a blue cube 2.5 m ahead", [("drop", "box", {"color": "blue"}, 2.5)]),
        ("spawn a green cylinder 1m ahead", [("spawn", "cylinder", {"color": "green"}, 1.0)]),
        ("drop a ball", [("drop", "ball", {"color": "red"}, None)]),
        ("push the nearest object", [("push", "nearest", {}, None)]),
        ("kick the yellow ball", [("push", "nearest yellow ball", {}, None)]),
        ("paint the nearest box green", [("paint", "nearest box", {"color": "green"}, None)]),
        ("paint the red box blue", [("paint", "nearest red box", {"color": "blue"}, None)]),
        ("paint box#3 blue", [("paint", "box#3", {"color": "blue"}, None)]),
        ("push cube #12", [("push", "box#12", {}, None)]),
    ],
)
def test_parse_prompt(prompt, want):
    if want is None:
        with pytest.raises(ValueError, match="cannot read event"):
            parse_prompt(prompt)
        return
    got = [(r.predicate, r.entity, r.attributes, r.anchor) for r in parse_prompt(prompt)]
    assert got == want


def test_several_clauses_compose_in_order():
    records = parse_prompt("turn the lights off and drop a red ball, then open the door; push it")
    assert [r.predicate for r in records] == ["lights", "drop", "open", "push"]
    assert records[0].attributes == {"state": "off"}


@pytest.mark.parametrize(
    "prompt,message",
    [
        ("summon a dragon", r"cannot read event 'summon a dragon' \(words: \['summon', 'dragon'\]\)"),
        ("", "empty event prompt"),
        ("drop a red ball 10 m ahead", r"drop anchor must be 0.5-3.0 m ahead of the camera, got 10.0"),
        ("drop a mauve ball", r"unknown word\(s\) \['mauve'\]"),
        ("push the mauve box", r"unknown word\(s\) \['mauve'\]"),
        ("drop a table", "cannot drop 'table'; choose one of: ball, box, cylinder"),
        ("paint the box", "say which colour to paint.*colours: red, green"),
        ("the lights please", "say whether the lights go 'on' or 'off'"),
    ],
)
def test_bad_prompts_raise_with_a_clear_message(prompt, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_prompt(prompt)
    text = str(info.value)
    if "cannot read" in message or "unknown word" in message or "empty" in message:
        assert "predicates:" in text
        assert all(c in text for c in COLORS) and all(s in text for s in OBJECT_SHAPES)


@pytest.mark.parametrize(
    "record,message",
    [
        (("dance", "room", {}, None), "unknown event predicate 'dance'; predicates:"),
        (("lights", "room", {"state": "dim"}, None), "lights needs attributes"),
        (
            ("drop", "ball", {"color": "mauve"}, None),
            "unknown colour 'mauve'; choose one of: red, green, blue",
        ),
        (("drop", "ball", {"color": "red"}, 10.0), "anchor must be 0.5-3.0 m ahead"),
        (("drop", "ball", {"color": "red"}, 0.1), "anchor must be 0.5-3.0 m ahead"),
        (("drop", "table", {}, None), "cannot drop 'table'"),
        (("spawn", "table", {}, None), "cannot spawn 'table'"),
        (("open", "window", {}, None), "only the door can open"),
        (("paint", "nearest box", {}, None), "unknown colour None"),
        (("paint", "nearest box", {"color": "teal"}, None), "unknown colour 'teal'"),
        (("push", "the big one", {}, None), "push target must be 'nearest'"),
        (("push", "nearest dragon", {}, None), "unknown word 'dragon' in push target"),
        # the anchor's type and the attributes' form hold for every predicate, not only drop and spawn
        (("push", "nearest", {}, "abc"), "anchor must be a number of metres ahead of the camera or None"),
        (("lights", "room", {"state": "on"}, "1.5"), "anchor must be a number"),
        (("open", "door", {}, True), "anchor must be a number"),
        (("paint", "box#3", {"color": "red"}, float("nan")), "anchor must be a number"),
        (("drop", "ball", {"color": "red"}, "2"), "anchor must be a number"),
        (("lights", "room", [("state", "on")], None), "attributes must map names to words"),
        (("push", "nearest", {"note": 3}, None), "attributes must map names to words"),
    ],
)
def test_invalid_records_raise_with_the_vocabulary(record, message):
    with pytest.raises(ValueError, match=message):
        EventRecord(*record)


def test_records_at_the_anchor_limits_are_valid():
    lo, hi = ANCHOR_RANGE_M
    assert EventRecord("drop", "ball", {"color": "red"}, anchor=lo).anchor == lo
    assert EventRecord("spawn", "capsule", {"color": "white"}, anchor=hi).anchor == hi
    assert EventRecord("paint", "box#3", {"color": "blue"}).entity == "box#3"


def test_vocabulary_lists_every_colour_shape_and_predicate_word():
    text = vocabulary()
    assert all(c in text for c in COLORS) and all(s in text for s in OBJECT_SHAPES)
    assert all(p in text for p in PREDICATES if p != "close") and "open|close" in text
    assert f"[{ANCHOR_RANGE_M[0]}, {ANCHOR_RANGE_M[1]}]" in text


def test_to_dict_from_dict_round_trip_and_str():
    record = EventRecord("drop", "ball", {"color": "blue"}, anchor=2.0)
    assert EventRecord.from_dict(record.to_dict()) == record
    assert str(record) == "drop(ball color=blue) @2.0m"
    assert str(EventRecord("open", "door")) == "open(door)"
    assert str(EventRecord("push", "nearest", anchor=2)) == "push(nearest) @2.0m"
    with pytest.raises(ValueError, match="anchor must be a number"):
        EventRecord.from_dict({"predicate": "push", "entity": "nearest", "anchor": "abc"})
    with pytest.raises(ValueError, match="malformed event record"):
        EventRecord.from_dict({"entity": "door"})


def test_as_records_accepts_prompts_records_dicts_and_lists():
    record = EventRecord("lights", "room", {"state": "off"})
    assert as_records(None) == [] and as_records("  ") == []
    assert as_records("lights off") == [record] == as_records(record) == as_records(record.to_dict())
    assert as_records(["lights off", [record, {"predicate": "open", "entity": "door"}]]) == [
        record,
        record,
        EventRecord("open", "door"),
    ]


def test_every_menu_entry_parses():
    assert EVENT_MENU[0] == ""
    for prompt in EVENT_MENU[1:]:
        assert len(parse_prompt(prompt)) == 1, prompt


@pytest.mark.parametrize(
    "prompt",
    ["a" * 100_000, "1" * 100_000, "push box " + "#" * 100_000, "lights off, " * 10_000],
    ids=["letters", "digits", "hashes", "clauses"],
)
def test_a_long_prompt_is_refused_before_it_is_read(prompt, monkeypatch):
    def read(clause):
        raise AssertionError(f"a clause of {len(clause)} characters was read")

    monkeypatch.setattr(events, "_parse_clause", read)
    with pytest.raises(ValueError, match=f"event prompt of [0-9,]+ characters, at most {MAX_PROMPT_CHARS}"):
        parse_prompt(prompt)


def test_a_long_clause_is_refused_with_how_to_split_it():
    clause = "drop a red ball " + "please " * 40
    assert len(clause) > MAX_CLAUSE_CHARS and len(clause) < MAX_PROMPT_CHARS
    with pytest.raises(ValueError, match=f"at most {MAX_CLAUSE_CHARS}: say one event a clause"):
        parse_prompt(clause)
    assert len(parse_prompt(", ".join(["drop a red ball 2 m ahead"] * 16))) == 16  # within the caps


@pytest.mark.parametrize("clause", ["a" * 20_000, "1" * 20_000], ids=["letters", "digits"])
def test_parsing_a_clause_takes_time_linear_in_its_length(clause, monkeypatch):
    # caps lifted: what is left is the parser's own work, which must not grow with the length squared
    monkeypatch.setattr(events, "MAX_PROMPT_CHARS", 10**6)
    monkeypatch.setattr(events, "MAX_CLAUSE_CHARS", 10**6)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="cannot read event"):
        parse_prompt(clause)
    assert time.perf_counter() - start < 1.0
