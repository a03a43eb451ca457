"""The examples run end to end on tiny budgets."""

import os
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_quickstart_writes_a_video(tmp_path):
    out = tmp_path / "quick.mp4"
    text = _run("examples/quickstart.py", "--backend", "oracle", "--steps", "5", "--out", str(out))
    assert "5 random steps" in text
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 1 + 5 * 4  # the reset frame + K=4 frames per step


def test_cem_goal_plans_and_moves():
    text = _run("examples/cem_goal.py", "--backend", "oracle", "--steps", "2", "--population", "4")
    assert text.count("imagined return") == 2 and "distance" in text


def test_train_ppo_trains_saves_and_evaluates_on_another_backend(tmp_path):
    out = tmp_path / "ppo.zip"
    text = _run(
        "examples/train_ppo.py", "--backend", "constant", "--eval-backend", "oracle", "--steps", "128",
        "--n-envs", "2", "--episodes", "2", "--max-episode-steps", "3", "--out", str(out),
    )  # fmt: skip
    assert f"PPO 128 steps -> {out}; on oracle: success rate" in text and "over 2 episodes" in text
    assert out.is_file()
