"""Request checks (``world_model.wire.requests``) called directly: each bad field is named."""

import numpy as np
import pytest

from world_model.wire.requests import BadRequest, Limits, SceneSpec, event_records, scene_spec


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


EYE = np.eye(4).tolist()


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"scene_seed": 1, "relocate": True}, "needs scene_seed and start_pose"),
        ({"start_pose": EYE, "relocate": True}, "needs scene_seed and start_pose"),
        ({"scene_seed": 1, "start_pose": EYE, "view_goal": 0, "relocate": True}, "no.*view_goal"),
        ({"scene_seed": 1, "start_pose": EYE, "relocate": 1}, "relocate must be true or false"),
    ],
)
def test_a_relocation_names_the_scene_and_the_pose_and_nothing_else(spec, match):
    with pytest.raises(BadRequest, match=match):
        scene_spec(spec, {}, 0, "scenes[0]")


def test_a_relocation_survives_the_wire():
    spec = SceneSpec(7, start_pose=np.eye(4), relocate=True)
    back = scene_spec(spec.to_meta(), {}, 0, "scenes[0]")
    assert back.relocate and back.scene_seed == 7 and np.array_equal(back.start_pose, np.eye(4))
    assert not scene_spec(SceneSpec(7).to_meta(), {}, 0, "s").relocate
