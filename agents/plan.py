"""dreamx-plan: CEM / MPPI on GoalView or FindObject; prints the success rate and planning time per step.

    dreamx-plan backend=oracle episodes=10                          # imagine and act in the ground truth
    dreamx-plan planner=mppi env_id=DreamX/FindObject-v0 backend=oracle
    dreamx-plan plan_backend=learned act_backend=oracle             # imagine in the model, act in the truth
    dreamx-plan plan_backend=learned act_backend=oracle +plan_backend_options.precision=bf16

Each real step forks the episode and imagines ``iterations x population`` sequences of ``horizon`` steps
(see ``agents.planners``), then takes the first action. With only ``backend`` set, one env both imagines and
acts. With ``plan_backend`` or ``act_backend`` set, the planner imagines in an env on ``plan_backend`` and the
action is taken in a second env on ``act_backend`` (either defaults to ``backend``); both are reset with the
same seed (same scene, same goal) and both take every chosen action, so the planning env follows the real
one. Where the backends disagree about collisions the two cameras drift apart: with ``resync`` (default)
the planning camera is then put back where the real one is (``dreamx_env.planning.relocate``: the learned
model keeps what it has seen, and its frame there is the real view), so every plan starts from the real
pose (closed loop);
``resync=false`` only replays the actions (open loop). The summary counts the resyncs, and ``pose_drift_m``
is the mean over episodes of the final position gap before any resync.
``plan_backend_options`` and ``act_backend_options`` go to one env's backend only (``env_kwargs`` to both).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.planners import PLANNERS, PlannerConfig, make_planner
from dreamx_env.planning import relocate
from world_model.options import check_options, model_flag_overrides

RESYNC_GAP_M = 1e-3  # a planning camera this far from the real one is put back (``resync``)


@dataclass
class PlanConfig:
    planner: str = "cem"
    env_id: str = "DreamX/GoalView-v0"
    backend: str | None = None
    plan_backend: str | None = None
    act_backend: str | None = None
    episodes: int = 5
    seed: int = 0
    max_steps: int = 50
    horizon: int = 4
    population: int = 16
    iterations: int = 2
    elites: int = 4
    temperature: float = 0.5
    smoothing: float = 0.2
    events: bool = False
    resync: bool = True  # two envs: put the planning camera where the acting one is after each step
    resolution: int = 64
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    plan_backend_options: dict[str, Any] = field(default_factory=dict)  # the planning env's backend only
    act_backend_options: dict[str, Any] = field(default_factory=dict)  # the acting env's backend only
    out: str | None = None
    progress: bool = True

    def planner_config(self) -> PlannerConfig:
        shared = {f.name for f in dataclasses.fields(PlannerConfig)} & {
            f.name for f in dataclasses.fields(PlanConfig)
        }
        return PlannerConfig(**{k: getattr(self, k) for k in shared})


def plan_config(values: dict[str, Any]) -> PlanConfig:
    """A ``PlanConfig`` from plain values (a Hydra config), with a clear error for unknown keys."""
    check_options(values, PlanConfig, "dreamx-plan")
    cfg = PlanConfig(**values)
    if cfg.planner not in PLANNERS:
        raise ValueError(f"planner must be one of {PLANNERS}, got {cfg.planner!r}")
    if cfg.episodes < 1 or cfg.max_steps < 1:
        raise ValueError(f"episodes and max_steps must be >= 1, got {cfg.episodes}, {cfg.max_steps}")
    if cfg.act_backend_options and cfg.plan_backend is None and cfg.act_backend is None:
        raise ValueError(
            "act_backend_options applies to a separate acting env: set plan_backend or act_backend too "
            "(with one env, use plan_backend_options or env_kwargs.backend_options)"
        )
    return cfg


def _make_env(cfg: PlanConfig, backend: str | None, options: dict[str, Any], **extra: Any) -> Any:
    import gymnasium as gym

    import dreamx_env  # noqa: F401  (registers the envs)

    kwargs = dict(cfg.env_kwargs, resolution=cfg.resolution, max_episode_steps=cfg.max_steps, **extra)
    if options:
        kwargs["backend_options"] = {**kwargs.get("backend_options", {}), **options}
    if backend is not None:
        kwargs["backend"] = backend
    return gym.make(cfg.env_id, **kwargs)


def run_plan(cfg: PlanConfig) -> dict[str, Any]:
    """Run ``cfg.episodes`` planned episodes; returns the summary that ``dreamx-plan`` prints."""
    from tqdm import tqdm

    plan_backend, act_backend = cfg.plan_backend or cfg.backend, cfg.act_backend or cfg.backend
    twin = cfg.plan_backend is not None or cfg.act_backend is not None
    plan_env = _make_env(cfg, plan_backend, cfg.plan_backend_options)
    act_env = plan_env
    if twin:  # draw scenes from the planning backend's seeds (the learned one knows only its banked scenes)
        same = (
            {}
            if "scene_seed_range" in cfg.env_kwargs
            else {"scene_seed_range": plan_env.unwrapped.core.seed_range}
        )
        try:
            act_env = _make_env(cfg, act_backend, cfg.act_backend_options, **same)
        except BaseException:
            plan_env.close()
            raise
    planner = make_planner(cfg.planner, act_env.action_space, cfg.planner_config())
    successes, returns, lengths, plan_s, records = [], [], [], [], []
    try:
        bar = tqdm(total=cfg.episodes * cfg.max_steps, unit="step", disable=not cfg.progress)
        for ep in range(cfg.episodes):
            _, info = act_env.reset(seed=cfg.seed + ep)
            if plan_env is not act_env:
                plan_env.reset(seed=cfg.seed + ep)
                seeds = (plan_env.unwrapped.core.states[0].scene.seed, info["scene_seed"])
                if seeds[0] != seeds[1]:
                    raise RuntimeError(
                        f"the planning and acting envs opened different scenes {seeds}; "
                        "set env_kwargs.scene_seed or env_kwargs.scene_seed_range"
                    )
            planner.reset()
            total, done, steps, success, resyncs, gap = 0.0, False, 0, False, 0, 0.0
            while not done:
                result = planner.plan(plan_env)
                plan_s.append(result.seconds)
                _, reward, terminated, truncated, info = act_env.step(result.action)
                if plan_env is not act_env:
                    _, _, _, _, plan_info = plan_env.step(result.action)
                    gap = float(np.linalg.norm(info["pose"][:3, 3] - plan_info["pose"][:3, 3]))
                    if cfg.resync and gap > RESYNC_GAP_M:
                        relocate(plan_env, info["pose"])
                        resyncs += 1
                total, steps, success = total + reward, steps + 1, bool(info.get("success", False))
                done = terminated or truncated or steps >= cfg.max_steps
                bar.update()
                bar.set_postfix(ep=ep, ok=sum(successes), plan_ms=f"{1000 * np.mean(plan_s):.0f}")
            bar.update(cfg.max_steps - steps)
            successes.append(success)
            returns.append(total)
            lengths.append(steps)
            record = {"scene_seed": info["scene_seed"], "success": success, "return": total, "steps": steps}
            record |= {k: float(info[k]) for k in ("goal_distance_m", "goal_angle_deg") if k in info}
            if plan_env is not act_env:
                record |= {"pose_drift_m": gap, "resyncs": resyncs}
            records.append(record)
        bar.close()
        names = (plan_env.unwrapped.core.backend_name, act_env.unwrapped.core.backend_name)
    finally:
        act_env.close()
        if plan_env is not act_env:
            plan_env.close()
    summary = {
        "planner": cfg.planner,
        "env_id": cfg.env_id,
        "plan_backend": names[0],
        "act_backend": names[1],
        "twin_envs": twin,
        "episodes": cfg.episodes,
        "success_rate": float(np.mean(successes)),
        "successes": [bool(s) for s in successes],
        "mean_return": float(np.mean(returns)),
        "mean_steps": float(np.mean(lengths)),
        "plan_ms_per_step": 1000 * float(np.mean(plan_s)),
        "pose_drift_m": float(np.mean([r.get("pose_drift_m", 0.0) for r in records])),
        "resyncs": int(sum(r.get("resyncs", 0) for r in records)),
        "per_episode": records,  # scene, outcome, final goal errors (GoalView) and pose drift (two envs)
    }
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(summary, indent=1))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    twin = s["twin_envs"]
    where = f"plan in {s['plan_backend']}, act in {s['act_backend']}" if twin else s["act_backend"]
    return (
        f"{s['planner']} on {s['env_id']} ({where}): success rate {s['success_rate']:.2f} "
        f"({sum(s['successes'])}/{s['episodes']}), mean return {s['mean_return']:.2f}, "
        f"mean steps {s['mean_steps']:.1f}, planning {s['plan_ms_per_step']:.0f} ms/step"
        + (f", pose drift {s['pose_drift_m']:.2f} m, {s['resyncs']} resyncs" if twin else "")
    )


def main() -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    configs = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "configs", "agents"))

    @hydra.main(version_base=None, config_path=configs, config_name="plan")
    def _main(cfg: DictConfig) -> None:
        summary = run_plan(plan_config(OmegaConf.to_container(cfg, resolve=True)))
        print(format_summary(summary))

    sys.argv[1:] = model_flag_overrides(sys.argv[1:], "plan_backend_options")  # the model flags
    _main()


if __name__ == "__main__":
    main()
