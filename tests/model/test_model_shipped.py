"""The shipped learned simulators (learned_v1, the default, learned_v2 and the cheap learned_fast): load,
follow events and revisits."""

import numpy as np
import pytest

from world_model.backend_registry import DEFAULT_BACKEND
from world_model.events import parse_prompt
from world_model.model.learned import (
    DEFAULT_WEIGHTS,
    SHIPPED_WEIGHTS,
    LearnedConfig,
    LearnedWorldModel,
    weights_path,
)

from .helpers import straight_poses, turning_poses


@pytest.fixture(scope="module", params=SHIPPED_WEIGHTS)
def shipped(request):
    # fp32 wherever the tests run (the default, auto, is bf16 on CPUs with it): the thresholds are fp32's
    return LearnedWorldModel(LearnedConfig(weights=request.param, precision="fp32"))


def test_shipped_weights_are_small_safetensors_and_the_default_backend(shipped):
    assert DEFAULT_BACKEND == "learned" and LearnedConfig().weights == str(DEFAULT_WEIGHTS)
    assert all(weights_path(name).stat().st_size <= 50 * 2**20 for name in SHIPPED_WEIGHTS)
    assert shipped.header["format"] == "dreamx-worldnet" and int(shipped.header["step"]) > 0
    assert "dreamx-train" in shipped.header["command"]
    assert shipped.net.patch == (2 if "+size=fast" in shipped.header["command"] else 1)


def _both(model, sessions, rel, events=None):
    return model.generate(sessions, np.repeat(rel, len(sessions), 0), events or [[] for _ in sessions])


@pytest.mark.parametrize("seed", [12, 20])
def test_lights_off_darkens_the_view_and_stays_dark_after_looking_away(shipped, seed):
    sid, first, _ = shipped.open(seed)
    lit = shipped.fork(sid)  # the same session without the event
    dark, same = _both(shipped, [sid, lit], straight_poses(4, 0.0), [parse_prompt("turn the lights off"), []])
    assert dark.rgb[-1].mean() < 0.9 * same.rgb[-1].mean()
    for _ in range(6):  # look away and back
        _both(shipped, [sid, lit], turning_poses(4, 15.0))
        _both(shipped, [sid, lit], turning_poses(4, -15.0))
    dark, same = _both(shipped, [sid, lit], straight_poses(4, 0.0))
    assert dark.rgb[-1].mean() < 0.85 * same.rgb[-1].mean()


@pytest.mark.parametrize("seed", [12, 20])
def test_coming_back_looks_like_the_first_visit(shipped, seed):
    sid, first, _ = shipped.open(seed)
    for _ in range(8):  # turn 320 degrees away ...
        away = shipped.generate([sid], turning_poses(4, 10.0), [[]])[0]
    for _ in range(8):  # ... and back
        back = shipped.generate([sid], turning_poses(4, -10.0), [[]])[0]

    def error(frame):
        return np.abs(frame.astype(np.float32) - first.rgb[0].astype(np.float32)).mean()

    assert error(back.rgb[-1]) < 0.6 * error(away.rgb[-1])


def test_an_episode_starts_from_a_user_image():
    from dreamx_env.envs.explore import ExploreEnv

    image = np.zeros((64, 64, 3), np.uint8)
    image[:32], image[32:] = (120, 160, 220), (90, 140, 60)  # sky over grass
    env = ExploreEnv(server="thread")
    try:
        obs, _ = env.reset(seed=0, options={"first_frame": image})
        assert np.array_equal(obs, image)
        for _ in range(3):
            obs, *_ = env.step(np.array([1, 1]))  # W + J, walk and turn: the sky stays above the grass
        assert obs[:16, :, 2].mean() > obs[-16:, :, 2].mean() + 60
        assert obs[-16:, :, 1].mean() > obs[-16:, :, 2].mean() + 30
    finally:
        env.close()


def test_the_env_runs_the_learned_simulator_by_default():
    from dreamx_env.envs.explore import ExploreEnv

    env = ExploreEnv(server="thread")
    try:
        obs, info = env.reset(seed=3)
        obs2, *_ = env.step(np.array([1, 0]))
        assert obs.shape == (64, 64, 3) and env.unwrapped.core.backend_name == "learned"
        assert info["scene_seed"] < 256 and not np.array_equal(obs, obs2)
    finally:
        env.close()


def test_bf16_draws_nearly_the_same_frames(shipped):
    fast = LearnedWorldModel(LearnedConfig(weights=shipped.config.weights, precision="bf16"))
    a, b = shipped.open(12)[0], fast.open(12)[0]
    (x,), (y,) = shipped.generate([a], straight_poses(4), [[]]), fast.generate([b], straight_poses(4), [[]])
    diff = np.abs(x.rgb.astype(np.float32) - y.rgb.astype(np.float32))
    assert x.rgb.shape == y.rgb.shape and 0 < diff.mean() < 3.0
    with pytest.raises(ValueError, match="precision must be one of"):
        LearnedWorldModel(LearnedConfig(precision="fp16"))


def test_shipped_weights_are_named_and_a_wrong_name_lists_them():
    assert weights_path("learned_fast") == DEFAULT_WEIGHTS.parent / "learned_fast.safetensors"
    assert weights_path(str(DEFAULT_WEIGHTS)) == DEFAULT_WEIGHTS
    assert LearnedWorldModel(LearnedConfig(weights="learned_v2")).net.floor  # the floor channel
    with pytest.raises(FileNotFoundError, match="learned_v1, learned_v2, learned_fast"):
        LearnedWorldModel(LearnedConfig(weights="learned_fastest"))


@pytest.mark.parametrize("seed", [12, 20])
def test_a_dropped_ball_shows_where_it_landed_and_is_still_there_after_looking_away(shipped, seed):
    sid, _, _ = shipped.open(seed)
    without = shipped.fork(sid)
    ball, plain = _both(
        shipped, [sid, without], straight_poses(4, 0.0), [parse_prompt("drop a red ball"), []]
    )

    def redness(frame):  # how much redder than the same view without the event, at the most changed pixels
        diff = frame[..., 0].astype(np.float32) - frame[..., 1:].astype(np.float32).mean(-1)
        return diff

    changed = np.abs(ball.rgb[-1].astype(np.int16) - plain.rgb[-1].astype(np.int16)).max(-1) > 30
    assert 20 < changed.sum() < 400  # a ball 1.5 m ahead: a few dozen pixels, not the whole frame
    red = changed & (redness(ball.rgb[-1]) > 60)
    assert red.sum() > 40 and red.sum() > 0.75 * changed.sum()  # the network may touch a few around it
    for _ in range(6):  # look away and back
        _both(shipped, [sid, without], turning_poses(4, 15.0))
        _both(shipped, [sid, without], turning_poses(4, -15.0))
    ball, plain = _both(shipped, [sid, without], straight_poses(4, 0.0))
    again = np.abs(ball.rgb[-1].astype(np.int16) - plain.rgb[-1].astype(np.int16)).max(-1) > 30
    assert (again & red).sum() > 0.8 * red.sum()  # still there, in the same place
    assert sid != without and shipped._sessions[sid].state.version == shipped._sessions[without].state.version
