"""dreamx-train-agent and dreamx-eval-agent on tiny budgets: real policies, cards and reports."""

import glob
import json
import os
import subprocess

import numpy as np
import pytest
from gymnasium import spaces

from agents.eval_agent import EvalConfig, eval_config, evaluate, format_report
from agents.keys import keys_to_action
from agents.policies import action_keys, check_policy_spaces, load_policy
from agents.train_agent import format_summary, train, train_config
from dreamx_env.envs.actions import DISCRETE_KEYS, ActionMapper
from world_model.geometry import KeyMap

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY_PPO = [
    "env=GoalView", "backend=constant", "n_envs=2", "total_steps=64", "agent.kwargs.n_steps=32",
    "agent.kwargs.batch_size=32", "agent.kwargs.n_epochs=1", "eval_every=32", "eval_episodes=2",
    "max_episode_steps=4", "checkpoint_every=32", "progress=true",
]  # fmt: skip


def _cli(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=180, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """One tiny PPO run of the CLI on GoalView (constant backend): (out_dir, stdout)."""
    out = tmp_path_factory.mktemp("ppo")
    return out, _cli("dreamx-train-agent", *TINY_PPO, f"out_dir={out}")


def test_train_agent_cli_writes_policy_card_checkpoints_evaluations_and_tensorboard(ppo_run):
    out, stdout = ppo_run
    assert "trained ppo (MultiInputPolicy) on DreamX/GoalView-v0 (constant, 2 envs): 64 steps" in stdout
    # the banner, SB3's rollout table (verbose=1) and each evaluation, printed as the run goes
    assert f"run folder   {out}" in stdout and f"tensorboard --logdir {out / 'tb'}" in stdout
    assert "ep_rew_mean" in stdout and "success_rate" in stdout
    assert "Eval num_timesteps=32" in stdout and "Eval num_timesteps=64" in stdout
    assert "Success rate:" in stdout
    card = json.loads((out / "policy.json").read_text())
    assert card["algo"] == "ppo" and card["backend"] == "constant" and card["total_steps"] == 64
    assert card["env_kwargs"] == {"action_set": "multi", "event_actions": False, "resolution": 64,
                                  "max_episode_steps": 4}  # fmt: skip
    assert card["env_steps_per_s"] > 0
    model, loaded_card = load_policy(out / "policy.zip")
    assert loaded_card.env_id == "DreamX/GoalView-v0" and model.num_timesteps == 64
    assert model.action_space == spaces.MultiDiscrete([9, 9])  # no event actions (agent/ppo.yaml)
    assert set(model.observation_space.spaces) == {"rgb", "goal"}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ppo_32_steps.zip", "ppo_64_steps.zip"]
    assert (out / "best_model.zip").is_file()
    evals = np.load(out / "evaluations.npz")  # SB3's EvalCallback: 2 episodes at 32 and 64 steps
    assert evals["timesteps"].tolist() == [32, 64] and (evals["ep_lengths"] == 4).all()
    assert evals["successes"].shape == (2, 2)  # GoalView reports is_success
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = glob.glob(str(out / "tb" / "ppo_*" / "events.*"))
    acc = EventAccumulator(events)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"eval/success_rate", "eval/mean_reward", "rollout/ep_rew_mean", "rollout/success_rate"} <= tags


def test_eval_agent_cli_on_the_ground_truth(ppo_run, oracle_server, tmp_path):
    out, _ = ppo_run
    report_path = tmp_path / "report.json"
    stdout = _cli(
        "dreamx-eval-agent", f"policy={out / 'policy.zip'}", f"server={oracle_server}",  # its backend
        "episodes=3", "n_envs=2", f"out={report_path}", "progress=false",
    )  # fmt: skip
    assert "ppo on DreamX/GoalView-v0 (oracle, trained on constant): success rate" in stdout
    r = json.loads(report_path.read_text())
    assert r["backend"] == "oracle" and r["trained_backend"] == "constant" and r["episodes"] == 3
    assert len(r["returns"]) == len(r["lengths"]) == len(r["successes"]) == 3
    assert all(1 <= n <= 4 for n in r["lengths"])  # the card's max_episode_steps
    assert r["success_rate"] == pytest.approx(np.mean(r["successes"]))
    assert r["mean_return"] == pytest.approx(np.mean(r["returns"]))


def test_success_is_the_envs_own_signal(ppo_run, tmp_path):
    out, _ = ppo_run
    base = {"policy": str(out / "policy.zip"), "backend": "constant", "server": "thread", "episodes": 3,
            "n_envs": 2, "progress": False}  # fmt: skip
    # thresholds so wide that the first step reaches the goal: every episode succeeds and ends at once
    easy = evaluate(EvalConfig(**base, env_kwargs={"success_dist_m": 1e3, "success_angle_deg": 180},
                               out=str(tmp_path / "easy.json")))  # fmt: skip
    assert easy["success_rate"] == 1.0 and easy["lengths"] == [1, 1, 1] and easy["mean_return"] > 9
    hard = evaluate(EvalConfig(**base, env_kwargs={"success_dist_m": 0.0}, out=str(tmp_path / "hard.json")))
    assert hard["success_rate"] == 0.0 and hard["lengths"] == [4, 4, 4]  # truncated, never terminated
    assert "success rate 0.00 (0/3)" in format_report(hard)
    assert json.loads((tmp_path / "easy.json").read_text())["successes"] == [True] * 3


def test_sim_to_real_drops_the_training_backends_options(ppo_run, tmp_path):
    """A policy trained with backend settings (e.g. learned precision=bf16) evaluates on another backend
    without them; explicit env_kwargs still reach that backend."""
    out, _ = ppo_run
    for name in ("policy.zip", "policy.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    card = json.loads((tmp_path / "policy.json").read_text())
    card["env_kwargs"]["backend_options"] = {"dim_factor": 0.5}  # a constant-backend-only field
    (tmp_path / "policy.json").write_text(json.dumps(card))
    base = {"policy": str(tmp_path / "policy.zip"), "server": "thread", "episodes": 1, "n_envs": 1,
            "max_episode_steps": 2, "progress": False, "out": str(tmp_path / "r.json")}  # fmt: skip
    assert evaluate(EvalConfig(**base, backend="oracle"))["backend"] == "oracle"
    assert evaluate(EvalConfig(**base))["backend"] == "constant"  # its own backend keeps its options
    with pytest.raises(Exception, match="dim_factor"):
        evaluate(EvalConfig(**base, backend="oracle", env_kwargs={"backend_options": {"dim_factor": 0.5}}))


def test_dqn_trains_on_discrete_actions_and_explore_has_no_success_rate(tmp_path):
    summary = train(train_config({
        "agent": {"name": "dqn", "kwargs": {"learning_starts": 16, "buffer_size": 256},
                  "env_kwargs": {"action_set": "discrete", "event_actions": False}},
        "env": "Explore", "backend": "constant", "server": "thread", "n_envs": 2, "total_steps": 64,
        "max_episode_steps": 8, "eval_every": 0, "checkpoint_every": 0, "tensorboard": False,
        "progress": False, "out_dir": str(tmp_path),
    }))  # fmt: skip
    assert summary["policy"] == "CnnPolicy" and summary["env_kwargs"]["action_set"] == "discrete"
    model, _ = load_policy(tmp_path / "policy.zip")
    assert type(model).__name__ == "DQN" and model.action_space == spaces.Discrete(len(DISCRETE_KEYS))
    assert model.num_timesteps == 64 and model._n_updates > 0  # it trained after learning_starts
    report = evaluate(EvalConfig(policy=str(tmp_path / "policy.zip"), server="thread", episodes=2,
                                 n_envs=2, progress=False))  # fmt: skip
    assert report["backend"] == "constant" and report["success_rate"] is None and report["lengths"] == [8, 8]
    assert "no success condition" in format_report({**report, "out": "x"})


def test_resume_trains_on_from_a_checkpoint(ppo_run, tmp_path):
    out, _ = ppo_run
    base = {
        "agent": {"kwargs": {"n_steps": 16}, "env_kwargs": {"event_actions": False}}, "env": "GoalView",
        "backend": "constant", "server": "thread", "n_envs": 2, "max_episode_steps": 4, "eval_every": 0,
        "checkpoint_every": 0, "tensorboard": False, "progress": False, "out_dir": str(tmp_path),
    }  # fmt: skip
    checkpoint = out / "checkpoints" / "ppo_32_steps.zip"
    summary = train(train_config({**base, "total_steps": 96, "resume": str(checkpoint)}))
    model, _ = load_policy(tmp_path / "policy.zip")
    assert summary["total_steps"] == model.num_timesteps == 96  # 32 from the checkpoint, 64 more
    assert ": 96 steps (from 32) in " in format_summary({**summary, "out_dir": "x"})
    assert model.n_steps == 32  # the checkpoint's own settings, not the new agent.kwargs
    with pytest.raises(ValueError, match="already has 32 steps"):
        train(train_config({**base, "total_steps": 32, "resume": str(checkpoint)}))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        train(train_config({**base, "resume": str(tmp_path / "nope.zip")}))
    with pytest.raises(ValueError, match="does not fit this env.*Action spaces do not match"):
        events = {"env_kwargs": {"event_actions": True}}  # MultiDiscrete([9, 9, 9]), the checkpoint's [9, 9]
        train(train_config({**base, "agent": events, "total_steps": 96, "resume": str(checkpoint)}))


def test_bad_options_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dreamx-train-agent option.*'total_step'"):
        train_config({"total_step": 5})
    with pytest.raises(ValueError, match=r"unknown dreamx-train-agent option.*'lr'"):
        train_config({"agent": {"name": "ppo", "lr": 1}})
    with pytest.raises(ValueError, match="agent must be one of"):
        train_config({"agent": {"name": "a2c"}})
    with pytest.raises(ValueError, match="unknown env 'Maze'"):
        train_config({"env": "Maze"})
    with pytest.raises(ValueError, match="DQN needs a Discrete action space"):
        train(train_config({"agent": {"name": "dqn", "env_kwargs": {"action_set": "multi"}},
                            "env": "Explore", "backend": "constant", "server": "thread",
                            "out_dir": str(tmp_path)}))  # fmt: skip
    with pytest.raises(ValueError, match="say which policy"):
        eval_config({})
    with pytest.raises(ValueError, match="split must be"):
        eval_config({"policy": "p.zip", "split": "test"})
    with pytest.raises(FileNotFoundError, match="no policy at"):
        load_policy(tmp_path / "missing.zip")


def test_policy_spaces_are_checked(ppo_run):
    model, _ = load_policy(ppo_run[0] / "policy.zip")
    explore_obs = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="the policy observes"):
        check_policy_spaces(model, explore_obs, None)
    with pytest.raises(ValueError, match="the policy acts in"):
        check_policy_spaces(model, model.observation_space, spaces.MultiDiscrete([9, 9, 9]))


def test_policy_actions_map_to_the_same_motion_as_keys():
    keymap = KeyMap()
    multi = ActionMapper("multi", keymap, event_actions=True)
    discrete = ActionMapper("discrete", keymap, event_actions=True)
    for i in range(discrete.space.n):  # every DQN action = the keys it stands for
        held, event = action_keys(np.int64(i), discrete.space)
        d_delta, d_event = discrete.decode(np.array([i]))
        m_delta, m_event = multi.decode(keys_to_action(held, event)[None])
        assert np.allclose(d_delta, m_delta) and d_event.tolist() == m_event.tolist(), i
    space = spaces.MultiDiscrete([9, 9, 9])
    for a in np.stack(np.meshgrid(*[range(9)] * 3, indexing="ij"), -1).reshape(-1, 3):
        assert keys_to_action(*action_keys(a, space)).tolist() == a.tolist()
    with pytest.raises(ValueError, match="only key actions"):
        action_keys(np.zeros(4), spaces.Box(-1, 1, (4,)))
