"""Request checks (``world_model.wire.requests``) called directly: each bad field is named."""

import pytest

from world_model.wire.requests import BadRequest, Limits, event_records


@pytest.mark.parametrize(
    "record, match",
    [
        ({"predicate": "push", "entity": "nearest", "anchor": "abc"}, r"events\[0\]: event anchor must be"),
        ({"predicate": "push", "entity": "nearest", "anchor": True}, "anchor must be a number"),
        ({"predicate": "push", "entity": "nearest", "attributes": {"x": [1]}}, "attributes must map"),
        ({"predicate": "push", "entity": "nearest", "attributes": {1: "x"}}, "attributes must map"),
    ],
)
def test_event_fields_the_vocabulary_leaves_open_are_checked(record, match):
    with pytest.raises(BadRequest, match=match):
        event_records([record], "events", Limits().max_events_per_step)


def test_a_good_record_passes():
    (ev,) = event_records([{"predicate": "drop", "entity": "ball", "anchor": 2}], "events", 16)
    assert ev.anchor == 2 and ev.entity == "ball"
