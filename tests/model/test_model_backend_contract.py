"""What every backend does with a bad call (open, generate): a clear error, and nothing changed."""

import numpy as np
import pytest

from world_model.backend import UnknownSession
from world_model.constant import ConstantWorldModel
from world_model.engine.oracle import OracleConfig, OracleWorldModel
from world_model.model.learned import LearnedConfig, LearnedWorldModel


@pytest.fixture(params=["constant", "oracle", "learned"])
def backend(request, tiny_weights):
    make = {
        "constant": ConstantWorldModel,
        "oracle": lambda: OracleWorldModel(OracleConfig(height=32, width=32)),
        "learned": lambda: LearnedWorldModel(LearnedConfig(weights=str(tiny_weights))),
    }[request.param]
    model = make()
    yield model
    model.shutdown()


def steps(b: int, k: int) -> np.ndarray:
    rel = np.tile(np.eye(4), (b, k, 1, 1))
    rel[..., 0, 3] = 0.2  # a step to the side: a call that ran would move the camera
    return rel


@pytest.mark.parametrize(
    "sessions, relative_poses, events, message",
    [
        ("ab", steps(1, 2), [[], []], "relative_poses must be"),  # one row short: the first would move
        ("ab", steps(2, 0), [[], []], "K>=1"),
        ("ab", steps(2, 2)[..., :3, :], [[], []], "relative_poses must be"),
        ("ab", steps(2, 2), [[]], "one event list per session"),
        ("aa", steps(2, 2), [[], []], "once per call"),
        ("ab", steps(2, 2) * 2.0, [[], []], "relative_poses must be rigid"),  # a scaled camera
        ("ab", steps(2, 2) + np.nan, [[], []], "relative_poses must be finite"),
    ],
)
def test_a_bad_generate_call_says_why_and_changes_nothing(backend, sessions, relative_poses, events, message):
    ids = {name: backend.open(seed)[0] for seed, name in enumerate("ab")}
    before = {name: backend.pose(sid) for name, sid in ids.items()}
    with pytest.raises(ValueError, match=message):
        backend.generate([ids[name] for name in sessions], relative_poses, events)
    for name, sid in ids.items():
        assert np.array_equal(backend.pose(sid), before[name])
    (frames,) = backend.generate([ids["a"]], steps(1, 2), [[]])  # and the session still steps
    assert len(frames) == 2 and not np.array_equal(frames.poses[-1], before["a"])


def test_unknown_and_closed_sessions_are_unknown_everywhere(backend):
    sid = backend.open(0)[0]
    fork = backend.fork(sid)
    assert fork != sid and np.array_equal(backend.pose(fork), backend.pose(sid))
    backend.close(fork)
    for call in (
        lambda: backend.pose(fork),
        lambda: backend.fork(fork),
        lambda: backend.close(fork),
        lambda: backend.generate([sid, fork], steps(2, 1), [[], []]),
    ):
        with pytest.raises(UnknownSession):
            call()
    assert backend.open(1)[0] not in (sid, fork)  # ids are not reused


def test_a_first_frame_of_the_wrong_shape_opens_nothing(backend):
    backend.open(0)
    for image in (np.zeros((8, 8, 3), np.uint8), np.zeros((32, 32), np.uint8), np.zeros((64, 64, 3))):
        with pytest.raises(ValueError, match="first_frame|image"):
            backend.open(first_frame=image)
    assert len(backend._sessions) == 1


def test_a_bad_start_pose_says_why_and_opens_nothing(backend):
    backend.open(0)
    nan = np.eye(4)
    nan[0, 3] = np.nan
    for pose, says in (
        (np.eye(3), r"must be a 4x4 camera-to-world matrix, got \(3, 3\)"),
        ("x", "must be a 4x4 camera-to-world matrix, got 'x'"),
        (nan, "must be finite"),
        (np.diag([2.0, 2.0, 2.0, 1.0]), "must be rigid"),
    ):
        with pytest.raises(ValueError, match=f"start_pose {says}"):
            backend.open(0, start_pose=pose)
    assert len(backend._sessions) == 1
    pose = np.eye(4)
    pose[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # looking along +x, level
    pose[:3, 3] = [0.5, 0.0, 1.0]
    sid, frames, _ = backend.open(0, start_pose=pose)
    assert np.allclose(frames.poses[0][:3, 3], pose[:3, 3], atol=0.3)
