"""dreamx-eval-agent: play a saved SB3 policy for N episodes; print and write success rate, return, length.

    dreamx-eval-agent policy=outputs/agents/<run>/policy.zip                  # the backend it trained on
    dreamx-eval-agent policy=outputs/agents/<run>/policy.zip backend=oracle   # sim-to-real: ground truth
    dreamx-eval-agent policy=<run>/policy.zip backend=oracle split=validation episodes=50

The env is rebuilt from the policy card (``policy.json`` beside the .zip: env id, action set, frames per
step, resolution, ...); ``env``, ``env_kwargs`` and ``max_episode_steps`` override it. Success is the env's
own signal, ``info["success"]`` on an episode's last step (GoalView: within 0.3 m and 15° of the goal view;
FindObject: the target fills a quarter of the central window); Explore has none (success_rate is null).

SB3 .zip files contain pickled Python objects: this loads trusted local files only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.policies import (
    check_policy_spaces,
    env_kwargs_for,
    has_success,
    load_policy,
    resolve_env_id,
    run_episodes,
)
from world_model.options import check_options, model_flag_overrides


@dataclass
class EvalConfig:
    policy: str = ""  # path to a .zip written by dreamx-train-agent (trusted local file)
    algo: str | None = None  # ppo | dqn; None: from the policy card
    env: str | None = None  # None: the env the policy was trained on
    backend: str | None = None  # learned | oracle | constant; None: as trained, or the server's
    server: str | None = None  # a running dreamx-serve's address; None: an embedded server
    episodes: int = 20
    n_envs: int = 4
    seed: int = 0
    deterministic: bool = True
    split: str | None = None  # None: the backend's default scenes; "validation": scenes 100000-199999
    max_episode_steps: int | None = None  # None: as trained
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    out: str | None = None  # None: <policy folder>/eval-<policy stem>-<backend>.json
    progress: bool = True


def eval_config(values: dict[str, Any]) -> EvalConfig:
    check_options(values, EvalConfig, "dreamx-eval-agent")
    cfg = EvalConfig(**values)
    if not cfg.policy:
        raise ValueError("say which policy to evaluate: policy=outputs/agents/<run>/policy.zip")
    if cfg.episodes < 1 or cfg.n_envs < 1:
        raise ValueError(f"episodes and n_envs must be >= 1, got {cfg.episodes}, {cfg.n_envs}")
    if cfg.split not in (None, "train", "validation"):
        raise ValueError(f"split must be null, 'train' or 'validation', got {cfg.split!r}")
    return cfg


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Load ``cfg.policy``, play ``cfg.episodes`` episodes, write the JSON report; returns it."""
    from tqdm import tqdm

    from dreamx_env.envs.core import EMBEDDED, TRAIN_SEEDS, VALIDATION_SEEDS
    from dreamx_env.sb3 import make_sb3_env

    model, card = load_policy(cfg.policy, cfg.algo)
    env_id = resolve_env_id(cfg.env) if cfg.env else (card.env_id if card else "DreamX/GoalView-v0")
    kwargs = {**env_kwargs_for(model, card), **cfg.env_kwargs, "server": cfg.server}
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    if cfg.split is not None:
        kwargs["scene_seed_range"] = VALIDATION_SEEDS if cfg.split == "validation" else TRAIN_SEEDS
    # a running server (server=<address>) runs its own backend: the training backend is only the default
    # of an embedded one
    backend = cfg.backend or (card.backend if card and cfg.server in EMBEDDED else None)
    if backend is not None:
        kwargs["backend"] = backend
    if card and backend != card.backend and "backend_options" not in cfg.env_kwargs:
        kwargs.pop("backend_options", None)  # the training backend's settings (e.g. precision=bf16)
    venv = make_sb3_env(env_id, min(cfg.n_envs, cfg.episodes), **kwargs)
    try:
        check_policy_spaces(model, venv.observation_space, venv.action_space)
        core = venv.unwrapped.venv.core
        t0 = time.perf_counter()
        with tqdm(total=cfg.episodes, unit="episode", disable=not cfg.progress) as bar:
            stats = run_episodes(model, venv, cfg.episodes, cfg.deterministic, seed=cfg.seed, bar=bar)
        seconds = time.perf_counter() - t0
        success_defined = has_success(venv)
        report = {
            "policy": str(cfg.policy),
            "algo": card.algo if card else cfg.algo,
            "env_id": env_id,
            "backend": core.backend_name,
            "trained_backend": card.backend if card else None,
            "trained_steps": card.total_steps if card else None,
            "scene_seed_range": list(core.seed_range),
            "deterministic": cfg.deterministic,
            "seed": cfg.seed,
            **stats.summary(),
            "seconds": seconds,
        }
    finally:
        venv.close()
    if not success_defined:
        report["success_rate"] = None
    out = (
        Path(cfg.out)
        if cfg.out
        else Path(cfg.policy).with_name(f"eval-{Path(cfg.policy).stem}-{report['backend']}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    report["out"] = str(out)
    return report


def format_report(r: dict[str, Any]) -> str:
    trained = f", trained on {r['trained_backend']}" if r["trained_backend"] else ""
    success = (
        "no success condition"
        if r["success_rate"] is None
        else f"success rate {r['success_rate']:.2f} ({sum(r['successes'])}/{r['episodes']})"
    )
    return (
        f"{r['algo'] or 'policy'} on {r['env_id']} ({r['backend']}{trained}): {success}, "
        f"mean return {r['mean_return']:.2f} ± {r['std_return']:.2f}, mean length {r['mean_length']:.1f} "
        f"steps -> {r['out']}"
    )


def main() -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    configs = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "configs", "agents"))

    @hydra.main(version_base=None, config_path=configs, config_name="eval")
    def _main(cfg: DictConfig) -> None:
        try:
            report = evaluate(eval_config(OmegaConf.to_container(cfg, resolve=True)))
        except (ValueError, FileNotFoundError) as exc:
            sys.exit(f"dreamx-eval-agent: {exc}")
        print(format_report(report))

    sys.argv[1:] = model_flag_overrides(sys.argv[1:], "env_kwargs.backend_options")  # the model flags
    _main()


if __name__ == "__main__":
    main()
