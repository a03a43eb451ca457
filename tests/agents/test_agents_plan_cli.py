"""dreamx-plan: the CLI smoke-runs on a tiny budget, and planning in one env while acting in another."""

import json
import os
import subprocess

import pytest

from agents.plan import PlanConfig, format_summary, plan_config, run_plan

TINY = {"episodes": 1, "max_steps": 2, "horizon": 2, "population": 4, "iterations": 1, "elites": 2}


def test_dreamx_plan_cli_smoke(tmp_path):
    out = tmp_path / "summary.json"
    args = ["dreamx-plan", "backend=oracle", "planner=mppi", *[f"{k}={v}" for k, v in TINY.items()]]
    proc = subprocess.run(
        [*args, f"out={out}", "progress=false"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mppi on DreamX/GoalView-v0 (oracle): success rate 0.00 (0/1)" in proc.stdout
    summary = json.loads(out.read_text())
    assert summary["mean_steps"] == 2 and summary["plan_ms_per_step"] > 0 and not summary["twin_envs"]


def test_plan_in_one_env_and_act_in_another_stays_in_sync():
    summary = run_plan(PlanConfig(plan_backend="oracle", act_backend="oracle", progress=False, **TINY))
    assert summary["twin_envs"] and summary["pose_drift_m"] < 1e-6  # same backend, same scene: no drift
    (episode,) = summary["per_episode"]
    assert episode["steps"] == 2 and episode["goal_distance_m"] > 0 and episode["pose_drift_m"] < 1e-6
    assert summary["resyncs"] == 0  # nothing to put back
    assert "plan in oracle, act in oracle" in format_summary(summary)


def test_backend_options_reach_one_env_only():
    """``dim_factor`` is an option of the constant backend only: the oracle would refuse it."""
    cfg = PlanConfig(plan_backend="constant", act_backend="oracle", plan_backend_options={"dim_factor": 0.5},
                     progress=False, **TINY)  # fmt: skip
    assert run_plan(cfg)["plan_backend"] == "constant"
    with pytest.raises(RuntimeError, match="no option.*dim_factor"):
        run_plan(PlanConfig(**{**vars(cfg), "act_backend_options": {"dim_factor": 0.5}}))


def test_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="unknown dreamx-plan option.*'horizn'"):
        plan_config({"horizn": 3})
    with pytest.raises(ValueError, match="planner must be one of"):
        plan_config({"planner": "pso"})
    with pytest.raises(ValueError, match="act_backend_options applies to a separate acting env"):
        plan_config({"backend": "oracle", "act_backend_options": {"cached_scenes": 2}})
