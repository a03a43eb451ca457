"""Dataset generation: shards and manifest, resuming, determinism, the validation split, the reader."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from world_model.engine.dataset import decode_events, load_shard, read_manifest, render_trajectory
from world_model.engine.generate import GenerateConfig, generate, generate_config
from world_model.engine.trajectories import Trajectory, make_trajectory
from world_model.engine.world import GroundTruthWorld, RenderConfig
from world_model.events import parse_prompt
from world_model.geometry import Viewpoint, key_trajectory

T, H, W = 10, 16, 16
TINY = dict(
    seed_start=0,
    seed_stop=3,
    trajectories_per_seed=2,
    frames=T,
    height=H,
    width=W,
    kinds={"random": 1.0, "out_and_back": 1.0, "translate_rotate": 1.0},
    event_probability=0.5,
    seeds_per_shard=2,
    workers=1,
)
DTYPES = {"rgb": np.uint8, "depth": np.float16, "semantic": np.uint8, "poses": np.float32}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "a"
    manifest = generate(GenerateConfig(output_dir=str(out), **TINY), show_progress=False)
    return out, manifest


def test_generation_writes_shards_and_a_manifest_that_load_without_pickle(dataset):
    out, manifest = dataset
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["config"]["height"] == H
    assert [e["seeds"] for e in manifest["shards"]] == [[0, 1], [2]]
    assert manifest["trajectories"] == 6 and manifest["frames"] == 6 * T
    for entry in manifest["shards"]:
        shard = load_shard(out / entry["file"])  # allow_pickle=False inside
        n = entry["trajectories"]
        assert shard["rgb"].shape == (n, T, H, W, 3) and shard["poses"].shape == (n, T, 4, 4)
        assert shard["depth"].shape == shard["semantic"].shape == (n, T, H, W)
        assert all(shard[k].dtype == dtype for k, dtype in DTYPES.items())
        assert shard["keys"].shape == shard["events"].shape == (n, T) and shard["keys"].dtype.kind == "U"
        assert list(shard["seed"]) == [s for s in entry["seeds"] for _ in range(2)]
        assert list(shard["trajectory"]) == [0, 1] * len(entry["seeds"])
        assert (shard["keys"][:, 0] == "").all()
        assert shard["rgb"].std() > 5 and np.isfinite(shard["depth"]).mean() > 0.3


def test_recorded_poses_follow_the_keys_when_nothing_blocks_the_camera(dataset):
    out, _ = dataset
    for traj in _trajectories(out):
        start = traj["poses"][0].astype(np.float64)
        expected = [v.pose() for v in key_trajectory(Viewpoint.from_pose(start), list(traj["keys"]))]
        np.testing.assert_allclose(traj["poses"], np.array(expected), atol=1e-4)
        if str(traj["kind"]) != "random":
            np.testing.assert_allclose(traj["poses"][-1], traj["poses"][0], atol=1e-5)


def _trajectories(root):
    for entry in read_manifest(root)["shards"]:
        shard = load_shard(root / entry["file"])
        yield from ({k: a[i] for k, a in shard.items()} for i in range(len(shard["seed"])))


def test_shards_hold_every_trajectory_with_its_events(dataset):
    out, manifest = dataset
    items = list(_trajectories(out))
    assert len(items) == manifest["trajectories"]
    events = [decode_events(item["events"]) for item in items]
    assert any(events), "event_probability=0.5 over 6 trajectories gave no event"
    for ev in events:
        assert all(1 <= t < T and records for t, records in ev.items())


def test_events_are_applied_before_their_frame_and_recorded():
    world = GroundTruthWorld(3, RenderConfig(H, W))
    try:
        traj = Trajectory([""] * 4, events={2: parse_prompt("lights off")})
        out = render_trajectory(world.fork(), traj)
        brightness = out["rgb"].reshape(4, -1).mean(axis=1)
        assert brightness[2] < 0.7 * brightness[1] and abs(brightness[1] - brightness[0]) < 1.0
        assert decode_events(out["events"]) == {2: parse_prompt("lights off")}
    finally:
        world.close()


def test_rerun_skips_complete_shards_and_redoes_missing_ones(dataset, tmp_path):
    out, manifest = dataset
    files = [out / e["file"] for e in manifest["shards"]]
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert generate(GenerateConfig(output_dir=str(out), **TINY), show_progress=False) == manifest
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    before = load_shard(files[1])
    files[1].unlink()
    (out / "stale.npz.tmp").write_bytes(b"half a shard")
    again = generate(GenerateConfig(output_dir=str(out), **TINY), show_progress=False)
    assert again["shards"] == manifest["shards"] and files[0].stat().st_mtime_ns == mtimes[0]
    assert all(np.array_equal(before[k], v) for k, v in load_shard(files[1]).items())
    assert not (out / "stale.npz.tmp").exists()
    with pytest.raises(ValueError, match="other settings: height=16 \\(now 32\\)"):
        generate(GenerateConfig(output_dir=str(out), **{**TINY, "height": 32}), show_progress=False)


def test_same_config_gives_identical_arrays_with_any_number_of_workers(dataset, tmp_path):
    """Also the command line: a tiny run of ``dreamx-generate`` with two worker processes."""
    out, manifest = dataset
    args = [f"{k}={v}" for k, v in TINY.items() if k not in ("kinds", "workers")]
    kinds = "{" + ",".join(f"{k}:{v}" for k, v in {**TINY["kinds"], "closed_loop": 0}.items()) + "}"
    cmd = [sys.executable, "-m", "world_model.engine.generate", f"output_dir={tmp_path / 'b'}", *args]
    done = subprocess.run([*cmd, f"kinds={kinds}", "workers=2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 shards, 6 trajectories" in done.stdout
    for entry in manifest["shards"]:
        a, b = load_shard(out / entry["file"]), load_shard(tmp_path / "b" / entry["file"])
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_validation_seeds_are_refused_unless_asked_for():
    with pytest.raises(ValueError, match="validation split .*pass split=validation"):
        GenerateConfig(seed_start=99_990, seed_stop=100_010)
    GenerateConfig(split="validation", seed_start=100_000, seed_stop=100_010)
    with pytest.raises(ValueError, match="not all in the validation split"):
        GenerateConfig(split="validation", seed_start=0, seed_stop=10)
    with pytest.raises(ValueError, match="unknown generate option"):
        generate_config({"seeds": 3})
    with pytest.raises(ValueError, match="closed_loop trajectories need frames >= 121"):
        GenerateConfig(frames=64)


def test_rendering_is_deterministic_and_a_revisit_shows_the_first_view_again():
    world = GroundTruthWorld(1, RenderConfig(H, W))
    try:
        traj = make_trajectory("out_and_back", np.random.default_rng(0), 12, spec=world.spec)
        a, b = render_trajectory(world.fork(), traj), render_trajectory(world.fork(), traj)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert not np.array_equal(a["rgb"][0], a["rgb"][6]) and np.array_equal(a["rgb"][0], a["rgb"][-1])
    finally:
        world.close()


def test_help_is_hydras_with_the_options():
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "world_model.engine.generate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0 and "seed_stop: 128" in done.stdout and "split=validation" in done.stdout
