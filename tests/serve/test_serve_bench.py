"""dreamx-bench-serve's many-clients path: independent clients on one server, batched by its policy."""

import json

import numpy as np

from dreamx_bench.serve import main
from dreamx_bench.serve_clients import bench_clients, turning_poses
from world_model.geometry import pose_problem


def test_lock_step_clients_are_batched_together_and_every_step_is_counted():
    # Clients that step as soon as their reply comes are all pending together: the policy sends them as one.
    server = {"max_wait_ms": 50.0, "active_window_ms": 250.0}
    r = bench_clients("constant", {"height": 32, "width": 32}, 3, 0.6, 2, server, warmup_frames=4)
    assert r["env_steps"] > 20
    assert set(r["batch_sizes"]) <= {"1", "2", "3"}
    assert r["mean_batch"] > 2.5
    counted = sum(int(size) * n for size, n in r["batch_sizes"].items())
    assert abs(counted - r["env_steps"]) <= 3  # the server's counts, read around the timed window
    assert r["ms_per_step_p95"] >= r["ms_per_step_median"] > 0


def test_a_lone_client_never_waits_for_others():
    # One client stepping alone: every batch holds its one session, and the wait is never spent.
    server = {"max_wait_ms": 500.0, "active_window_ms": 250.0}
    r = bench_clients("constant", {"height": 32, "width": 32}, 1, 0.4, 2, server, warmup_frames=4)
    assert r["batch_sizes"] and set(r["batch_sizes"]) == {"1"}
    assert r["ms_per_step_median"] < 100  # not max_wait_ms: the only active client has its step waiting


def test_cli_measures_the_policy_grid_and_writes_json(tmp_path, capsys):
    out = tmp_path / "serve.json"
    argv = ["--backends", "constant", "--envs", "1", "--clients", "2", "--max-wait-ms", "0", "20"]
    main([*argv, "--seconds", "0.3", "--warmup-frames", "4", "--frames-per-step", "2", "--json", str(out)])
    rows = [r for r in json.loads(out.read_text())["results"] if r["path"] == "clients"]
    assert [r["server"]["max_wait_ms"] for r in rows] == [0.0, 20.0]
    assert all(r["clients"] == 2 and r["env_steps_per_s"] > 0 for r in rows)
    assert "clients constant" in capsys.readouterr().out


def test_turning_poses_turn_the_camera_3_degrees_a_frame():
    rel = turning_poses(3, 4)
    assert rel.shape == (3, 1, 4, 4, 4)  # sessions, horizon, frames
    assert pose_problem(rel) is None
    yaw = np.degrees(np.arctan2(rel[..., 0, 2], rel[..., 0, 0]))
    assert np.allclose(yaw, [3, 6, 9, 12])
    assert (rel[..., :3, 3] == 0).all()


def test_the_env_path_steps_a_vector_env_with_the_default_actions():
    from dreamx_bench.serve import bench_env

    r = bench_env("constant", 2, 0.3, 32, 2, warmup_frames=4)
    assert r["env_steps_per_s"] > 0
