"""``dreamx-eval``'s protocols on one scene, short rollouts: what they measure, and the truth cache."""

import numpy as np
import pytest

import world_model.model.evaluate as ev
from world_model.engine.world import RenderConfig
from world_model.model.learned import LearnedConfig, LearnedWorldModel


@pytest.fixture(scope="module")
def shipped():
    return LearnedWorldModel(LearnedConfig(collide=False, precision="fp32"))  # as dreamx-eval runs it


def test_a_dropped_ball_passes_the_masked_event_check_and_the_truth_is_cached(shipped, tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "EVENT_MENU", ("", "drop a red ball"))
    monkeypatch.setattr(ev, "TRUTH_CACHE", tmp_path)
    result = ev.events(shipped, [5003], RenderConfig(), 4)
    ball = result["drop a red ball"]
    assert ball["trials"] == 1 and ball["masked_success_rate"] == 1.0
    cached = sorted(tmp_path.glob("*.npz"))
    assert len(cached) == 2  # the rollouts with and without the event
    again = ev.events(shipped, [5003], RenderConfig(), 4)
    assert again == result and sorted(tmp_path.glob("*.npz")) == cached


def test_revisits_report_appearance_and_depth_consistency(shipped, tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "TRUTH_CACHE", tmp_path)
    out, shown = ev.revisit(shipped, [5001], RenderConfig(), 4, 130)
    for kind in ev.REVISIT_KINDS:
        r = out[kind]
        if r["pairs"] is None:
            continue
        assert r["truth_dpsnr"] > 20.0  # the truth looks the same on return
        assert 0.0 <= r["depth_pair_rel_error"] < 1.0 and 0.0 <= r["depth_pair_over_30pct"] <= 1.0
    assert len(shown) == 3 and shown[0].model.shape == shown[0].truth["rgb"].shape


def test_the_long_side_by_side_walks_out_and_back_and_is_written_as_a_gif(shipped, tmp_path, monkeypatch):
    from PIL import Image

    from world_model.model.report import _video

    monkeypatch.setattr(ev, "TRUTH_CACHE", tmp_path)
    long = ev.long_rollouts(shipped, [5001, 5002], RenderConfig(), 4, 121)
    assert [r.model.shape for r in long] == [(121, 64, 64, 3)] * 2
    first = long[0].truth["poses"]
    assert np.linalg.norm(first[-1][:2, 3] - first[0][:2, 3]) < 0.5  # a closed loop ends where it began
    _video(long, tmp_path / "long.gif")
    gif = Image.open(tmp_path / "long.gif")
    assert gif.n_frames == 61 and gif.size == (2 * (64 + 2 + 64), 2 * 2 * (64 + 2))


def test_options_are_learned_config_fields():
    assert ev._options(["same_surface=0.05", "near_k=0", "prefer_older=nearest_view"]) == {
        "same_surface": 0.05,
        "near_k": 0,
        "prefer_older": "nearest_view",
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        ev._options(["no_such_field=1"])
    with pytest.raises(SystemExit, match="use --precision"):  # not a duplicate keyword later
        ev._options(["precision=bf16"])
    with pytest.raises(SystemExit, match="collision is off"):
        ev._options(["collide=true"])


def test_relative_depth_error_ignores_sky_and_missing_depth():
    pred = np.array([1.0, np.inf, 2.0])
    truth = np.array([2.0, 3.0, np.inf])
    assert ev.relative_depth_error(pred, truth).tolist() == [0.5]
