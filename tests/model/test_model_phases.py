"""dreamx-bench-model --phases: every phase of generate is timed, the rest is 'other', garbage collection
is its own line, and the model runs unwrapped afterwards."""

import gc
import time

import numpy as np
import pytest

import world_model.model.learned as learned
from dreamx_bench.model import bench, format_phases
from dreamx_bench.phases import GC, PHASES, timed_phases
from world_model.model.learned import LearnedConfig, LearnedWorldModel

from .helpers import turning_poses


def assert_parts_sum_to_total(ms: dict[str, float]) -> None:
    parts = sum(ms[name] for name in [*PHASES, GC])
    assert abs(parts + ms["other"] - ms["total"]) < 1e-9 and ms["other"] >= 0


def collection(seconds: float) -> None:
    """A garbage collection of ``seconds``, as ``gc.callbacks`` see one (a real one's length varies)."""
    info = {"generation": 2, "collected": 0, "uncollectable": 0}
    for callback in gc.callbacks:
        callback("start", info)
    time.sleep(seconds)
    for callback in gc.callbacks:
        callback("stop", info)


@pytest.fixture(scope="module")
def model(tiny_weights):
    return LearnedWorldModel(LearnedConfig(weights=str(tiny_weights)))


def test_every_phase_is_timed_and_the_model_is_restored(model):
    before = (learned.retrieve_many, learned.warp_memories, learned.add_many, model._net)
    sids = [model.open(seed)[0] for seed in (3, 4)]
    rel = np.concatenate([turning_poses(3, 10.0)] * 2)
    with timed_phases(model) as times:
        inside = model.generate(sids, rel, [[], []])
    after = model.generate(sids, rel, [[], []])
    ms = times.per_frame_ms()
    assert times.frames == 6 and set(ms) == {*PHASES, GC, "other", "total"}
    assert all(ms[name] > 0 for name in PHASES) and ms["network"] > ms["memory bookkeeping"]
    assert_parts_sum_to_total(ms)
    assert (learned.retrieve_many, learned.warp_memories, learned.add_many, model._net) == before
    assert "generate" not in vars(model)  # the class's generate again, not a leftover wrapper
    for a, b in zip(inside, after, strict=True):
        assert a.rgb.shape == b.rgb.shape and not np.array_equal(a.poses, b.poses)  # both walked on
    for sid in sids:
        model.close(sid)
    with pytest.raises(ValueError, match="no frames"):
        with timed_phases(model) as times:
            pass
        times.per_frame_ms()


def test_garbage_collection_is_taken_out_of_the_phase_it_interrupted(model, monkeypatch):
    add = learned.add_many

    def add_and_collect(*args, **kwargs):
        collection(0.05)
        return add(*args, **kwargs)

    monkeypatch.setattr(learned, "add_many", add_and_collect)
    sid = model.open(5)[0]
    with timed_phases(model) as times:
        model.generate([sid], turning_poses(2, 10.0), [[]])
        collection(0.05)  # between calls: not part of any
    ms = times.per_frame_ms()
    assert ms[GC] >= 50.0 and 0 < ms["memory bookkeeping"] < 10.0
    assert_parts_sum_to_total(ms)
    model.close(sid)


def test_the_bench_reports_the_phases(model):
    point = bench(model, batch=2, chunk=2, seconds=0.01, warmup_frames=4, phases=True)
    assert set(point["phases_ms"]) == {*PHASES, GC, "other", "total"}
    lines = format_phases(point["phases_ms"]).splitlines()
    assert len(lines) == len(PHASES) + 3 and lines[-1].strip().startswith("total") and "100.0%" in lines[-1]
    assert "phases_ms" not in bench(model, batch=1, chunk=2, seconds=0.01, warmup_frames=0)


def test_the_json_says_what_ran_beside_each_figure(tiny_weights, tmp_path, monkeypatch):
    import json
    import sys

    from dreamx_bench.model import main

    out = tmp_path / "bench.json"
    argv = ["dreamx-bench-model", "--weights", str(tiny_weights), "--batch", "1", "--seconds", "0.2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--warmup-frames", "4", "--json", str(out)])
    main()
    (row,) = json.loads(out.read_text())
    assert row["batch"] == 1 and row["frames_per_s"] > 0
    assert row["precision"] in ("fp32", "bf16") and row["device"] == "cpu" and row["cpu_compile"] is False
