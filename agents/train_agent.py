"""dreamx-train-agent: SB3 PPO or DQN on a DreamX env, on the native vector env (one server call per step).

    dreamx-train-agent                                            # PPO on GoalView, default backend
    dreamx-train-agent agent=ppo env=GoalView backend=learned total_steps=100000 n_envs=8
    dreamx-train-agent agent=dqn env=FindObject backend=oracle    # DQN: action_set=discrete (agent/dqn.yaml)
    dreamx-eval-agent policy=outputs/agents/<run>/policy.zip backend=oracle   # sim-to-real

The envs are ``dreamx_env.sb3.make_sb3_env`` (SB3 ``VecEnv`` over ``DreamXVectorEnv``). The policy network is
SB3's ``CnnPolicy`` (NatureCNN) for image observations (Explore) and ``MultiInputPolicy`` (a NatureCNN per
image, e.g. GoalView's frame and goal) for dict observations. ``out_dir`` gets:

    policy.zip          the final policy (SB3 format)       policy.json      its policy card (agents.policies)
    best_model.zip      the best periodic evaluation          evaluations.npz  SB3's evaluation log
    checkpoints/        every ``checkpoint_every`` steps       tb/              TensorBoard logs

Periodic evaluation is SB3's ``EvalCallback``: ``eval_episodes`` deterministic episodes every ``eval_every``
env steps, on the training backend's server, or on ``eval_backend`` (e.g. ``oracle`` to watch sim-to-real
during training); each result is printed and logged (``eval/mean_reward``, ``eval/mean_ep_length``,
``eval/success_rate``). A banner says where the run goes; SB3 shows its progress bar and, at ``verbose=1``,
its table of rollout statistics (``ep_rew_mean``, ``ep_len_mean``, ``success_rate``) every iteration.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.policies import ALGOS, PolicyCard, resolve_env_id
from world_model.options import check_options, model_flag_overrides


@dataclass
class AgentConfig:
    """One ``configs/agents/agent/<name>.yaml``."""

    name: str = "ppo"  # ppo | dqn
    policy: str = "auto"  # auto: CnnPolicy for image observations, MultiInputPolicy for dict ones
    kwargs: dict[str, Any] = field(default_factory=dict)  # SB3 constructor arguments (n_steps, lr, ...)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # env arguments the algorithm needs


@dataclass
class TrainConfig:
    agent: AgentConfig = field(default_factory=AgentConfig)
    env: str = "DreamX/GoalView-v0"  # an id, or its short name (GoalView)
    backend: str | None = None
    server: str | None = None  # address of a running dreamx-serve; None: an embedded server
    n_envs: int = 8
    total_steps: int = 100_000
    max_episode_steps: int | None = None  # None: the registered limit
    seed: int = 0
    resolution: int = 64
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_every: int = 10_000  # env steps between evaluations; 0: none
    eval_episodes: int = 8
    eval_backend: str | None = None  # None: the training backend (its server)
    checkpoint_every: int = 25_000  # env steps; 0: none
    out_dir: str | None = None  # None: outputs/agents/<algo>-<env>-<backend>-<time>
    resume: str | None = None  # a checkpoint .zip of this run to continue from, up to total_steps
    device: str = "auto"
    tensorboard: bool = True
    progress: bool = True  # SB3's progress bar (rich)
    verbose: int = 1  # SB3's: 0 quiet, 1 rollout statistics every iteration and each evaluation printed


def train_config(values: dict[str, Any]) -> TrainConfig:
    """A ``TrainConfig`` from plain values (a Hydra config), with clear errors for unknown keys."""
    values = dict(values)
    agent = dict(values.pop("agent", {}) or {})
    check_options(values, TrainConfig, "dreamx-train-agent")
    check_options(agent, AgentConfig, "dreamx-train-agent", prefix="agent.")
    cfg = TrainConfig(agent=AgentConfig(**agent), **values)
    if cfg.agent.name not in ALGOS:
        raise ValueError(f"agent must be one of {ALGOS}, got {cfg.agent.name!r}")
    if cfg.n_envs < 1 or cfg.total_steps < 1:
        raise ValueError(f"n_envs and total_steps must be >= 1, got {cfg.n_envs}, {cfg.total_steps}")
    cfg.env = resolve_env_id(cfg.env)
    return cfg


def env_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The ``gymnasium.make`` arguments of the training env (what the policy card records)."""
    kwargs = {**cfg.agent.env_kwargs, **cfg.env_kwargs, "resolution": cfg.resolution}
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    return kwargs


def make_callbacks(cfg: TrainConfig, out: Path, train_env: Any) -> tuple[list[Any], Any]:
    """SB3 callbacks: periodic evaluation (``EvalCallback``, with its env) and checkpoints. ``train_env`` is
    the model's env (``model.get_env()``), whose wrappers the evaluation env gets too."""
    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.vec_env import VecTransposeImage

    from dreamx_env.sb3 import make_sb3_env

    class TimedEval(EvalCallback):
        """SB3's ``EvalCallback`` that also adds up the seconds spent evaluating (kept out of the
        env-steps/s the policy card reports)."""

        seconds = 0.0

        def _on_step(self) -> bool:
            t0 = time.perf_counter()
            go_on = super()._on_step()
            self.seconds += time.perf_counter() - t0
            return go_on

    callbacks: list[Any] = []
    eval_env = None
    if cfg.eval_every > 0:
        core = train_env.unwrapped.venv.core
        shared = cfg.eval_backend in (None, core.backend_name)
        server = cfg.server or (core.embedded.address if core.embedded else None)
        kwargs = env_kwargs(cfg)
        if shared:  # same server, same scenes as training
            kwargs.update(server=server, scene_seed_range=core.seed_range)
        else:
            kwargs["backend"] = cfg.eval_backend
        n_eval = min(cfg.n_envs, cfg.eval_episodes)
        if "lanes" in kwargs:  # +env_kwargs.lanes=N: no more lanes than the eval env has envs
            kwargs["lanes"] = min(kwargs["lanes"], n_eval)
        eval_env = make_sb3_env(cfg.env, n_eval, **kwargs)
        eval_env.seed(10_000)  # the same evaluation episodes in every run with these options
        evaluation = TimedEval(
            VecTransposeImage(eval_env) if isinstance(train_env, VecTransposeImage) else eval_env,
            n_eval_episodes=cfg.eval_episodes,
            eval_freq=max(cfg.eval_every // cfg.n_envs, 1),
            best_model_save_path=str(out),
            log_path=str(out),
            verbose=cfg.verbose,  # 1: prints each evaluation's return, length and success rate
        )
        callbacks.append(evaluation)
    if cfg.checkpoint_every > 0:
        callbacks.append(
            CheckpointCallback(
                max(cfg.checkpoint_every // cfg.n_envs, 1), str(out / "checkpoints"), cfg.agent.name
            )
        )
    return callbacks, eval_env


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, save ``policy.zip`` + ``policy.json`` in the run folder; returns the policy card as a dict."""
    from gymnasium import spaces
    from stable_baselines3 import DQN, PPO

    from dreamx_env.sb3 import make_sb3_env

    kwargs = env_kwargs(cfg)
    make_kwargs = dict(kwargs, server=cfg.server)
    if cfg.backend is not None:
        make_kwargs["backend"] = cfg.backend
    venv = make_sb3_env(cfg.env, cfg.n_envs, **make_kwargs)
    eval_env = None
    try:
        backend = venv.unwrapped.venv.core.backend_name
        if cfg.agent.name == "dqn" and not isinstance(venv.action_space, spaces.Discrete):
            raise ValueError(
                f"DQN needs a Discrete action space, got {venv.action_space}: keep action_set=discrete "
                "(agent=dqn sets it in agent.env_kwargs)"
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(
            cfg.out_dir or f"outputs/agents/{cfg.agent.name}-{cfg.env.split('/')[-1]}-{backend}-{stamp}"
        )
        out.mkdir(parents=True, exist_ok=True)
        policy = cfg.agent.policy
        if policy == "auto":
            policy = "MultiInputPolicy" if isinstance(venv.observation_space, spaces.Dict) else "CnnPolicy"
        card = PolicyCard(
            cfg.agent.name, cfg.env, backend, policy, kwargs, cfg.total_steps, cfg.n_envs, cfg.seed
        )
        card.save(out)  # checkpoints are loadable while training runs
        algo = {"ppo": PPO, "dqn": DQN}[cfg.agent.name]
        tb = str(out / "tb") if cfg.tensorboard else None
        if cfg.resume:
            model = load_checkpoint(algo, cfg, venv, tb)
            model.verbose = cfg.verbose
        else:
            model = algo(
                policy, venv, seed=cfg.seed, device=cfg.device, tensorboard_log=tb, verbose=cfg.verbose,
                **cfg.agent.kwargs,
            )  # fmt: skip
        callbacks, eval_env = make_callbacks(cfg, out, model.get_env())
        print(banner(cfg, out, backend, policy, model.num_timesteps), flush=True)
        t0, start_steps = time.perf_counter(), model.num_timesteps
        model.learn(
            cfg.total_steps - model.num_timesteps,
            callback=callbacks,
            tb_log_name=cfg.agent.name,
            reset_num_timesteps=not cfg.resume,
            progress_bar=cfg.progress,
        )
        seconds = time.perf_counter() - t0
        model.save(out / "policy.zip")
        eval_s = sum(getattr(c, "seconds", 0.0) for c in callbacks)
        card.total_steps = int(model.num_timesteps)
        card.train_seconds = seconds
        card.env_steps_per_s = (model.num_timesteps - start_steps) / max(seconds - eval_s, 1e-9)  # this leg
        card.save(out)
    finally:
        if eval_env is not None:
            eval_env.close()
        venv.close()
    return {
        **dataclasses.asdict(card),
        "out_dir": str(out),
        "eval_seconds": eval_s,
        "start_steps": start_steps,
    }


def load_checkpoint(algo: Any, cfg: TrainConfig, env: Any, tensorboard_log: str | None) -> Any:
    """The model saved in ``cfg.resume``, on ``env``, ready to train on to ``cfg.total_steps``."""
    path = Path(cfg.resume)
    if not path.is_file():
        raise FileNotFoundError(
            f"resume={cfg.resume}: no such checkpoint (a .zip under <out_dir>/checkpoints)"
        )
    try:
        model = algo.load(path, env=env, device=cfg.device, tensorboard_log=tensorboard_log)
    except ValueError as e:  # SB3: "Observation/Action spaces do not match"
        raise ValueError(
            f"resume={cfg.resume} does not fit this env ({e}): resume with the run's options"
        ) from e
    if model.num_timesteps >= cfg.total_steps:
        raise ValueError(
            f"resume={cfg.resume} already has {model.num_timesteps} steps, total_steps={cfg.total_steps}: "
            "raise total_steps to train on"
        )
    return model


def banner(cfg: TrainConfig, out: Path, backend: str, policy: str, start_steps: int) -> str:
    """What a run is about to do and where its results go, printed before training starts."""
    resumed = f" from {start_steps} ({cfg.resume})" if cfg.resume else ""
    lines = [
        f"dreamx-train-agent: {cfg.agent.name} ({policy}) on {cfg.env}, backend {backend}, "
        f"{cfg.n_envs} envs, {cfg.total_steps} steps{resumed}",
        f"  run folder   {out}",
        f"  TensorBoard  tensorboard --logdir {out / 'tb'}" if cfg.tensorboard else "  TensorBoard  off",
    ]
    if cfg.eval_every > 0:
        where = cfg.eval_backend or f"{backend}, the training server"
        lines.append(f"  evaluation   {cfg.eval_episodes} episodes every {cfg.eval_every} steps on {where}")
    if cfg.checkpoint_every > 0:
        lines.append(f"  checkpoints  every {cfg.checkpoint_every} steps in {out / 'checkpoints'}")
    return "\n".join(lines)


def format_summary(s: dict[str, Any]) -> str:
    resumed = f" (from {s['start_steps']})" if s.get("start_steps") else ""
    return (
        f"trained {s['algo']} ({s['policy']}) on {s['env_id']} ({s['backend']}, {s['n_envs']} envs): "
        f"{s['total_steps']} steps{resumed} in {s['train_seconds']:.1f} s, "
        f"{s['env_steps_per_s']:.1f} env-steps/s (evaluation excluded) -> {s['out_dir']}/policy.zip"
    )


def main() -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    configs = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "configs", "agents"))

    @hydra.main(version_base=None, config_path=configs, config_name="train")
    def _main(cfg: DictConfig) -> None:
        try:
            summary = train(train_config(OmegaConf.to_container(cfg, resolve=True)))
        except ValueError as exc:
            sys.exit(f"dreamx-train-agent: {exc}")
        print(format_summary(summary))

    sys.argv[1:] = model_flag_overrides(sys.argv[1:], "env_kwargs.backend_options")  # the model flags
    _main()


if __name__ == "__main__":
    main()
