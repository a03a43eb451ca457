"""Saved SB3 policies: the policy card beside the .zip, loading, space checks, evaluation episodes, and the
keys a policy's action stands for (so the viewer can hand control to it).

A policy is ``<name>.zip`` (SB3's format) plus a policy card ``policy.json`` in the same folder: plain JSON
with the algorithm, the env id and the env arguments it was trained with (action set, frames per step,
resolution, ...), so evaluation and the viewer rebuild a matching env. Without a card, the action set and
resolution are read off the policy's own spaces.

SB3 .zip files contain pickled Python objects (spaces, schedules): loading one runs code from it. Load only
files you made or trust, from local disk; policies never travel over the simulator's sockets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from dreamx_env.envs.actions import DISCRETE_KEYS
from dreamx_env.registration import ENVS
from world_model.geometry import LOOK_COMBOS, MOVE_COMBOS

ALGOS: tuple[str, ...] = ("ppo", "dqn")
CARD_NAME = "policy.json"
TRUSTED_FILES_NOTE = (
    "SB3 .zip files contain pickled Python objects: load only policies you trained or trust, from local "
    "disk (never from a socket or an untrusted download)."
)


def resolve_env_id(name: str) -> str:
    """``"GoalView"`` -> ``"DreamX/GoalView-v0"``; full ids pass through."""
    if name in ENVS:
        return name
    matches = [e for e in ENVS if e.split("/")[-1].split("-")[0].lower() == name.lower()]
    if len(matches) != 1:
        raise ValueError(
            f"unknown env {name!r}; choose one of {sorted(ENVS)} (or Explore/GoalView/FindObject)"
        )
    return matches[0]


@dataclass
class PolicyCard:
    """What a policy was trained on; written as JSON beside the .zip by ``dreamx-train-agent``."""

    algo: str
    env_id: str
    backend: str  # the backend that served training (its reported name)
    policy: str = ""  # SB3 policy class ("CnnPolicy", "MultiInputPolicy")
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # gymnasium.make arguments (no backend/server)
    total_steps: int = 0
    n_envs: int = 0
    seed: int = 0
    train_seconds: float = 0.0
    env_steps_per_s: float = 0.0  # training throughput, evaluation time excluded
    format: str = "dreamx-policy-card/1"

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CARD_NAME
        path.write_text(json.dumps(asdict(self), indent=1))
        return path


def find_card(policy_path: str | Path) -> PolicyCard | None:
    """The card of a saved policy: ``<stem>.json`` or ``policy.json`` beside it, or one folder up (for
    checkpoints in ``<out_dir>/checkpoints/``)."""
    p = Path(policy_path)
    for candidate in (p.with_suffix(".json"), p.parent / CARD_NAME, p.parent.parent / CARD_NAME):
        if candidate.is_file():
            values = json.loads(candidate.read_text())
            if values.get("format", "").startswith("dreamx-policy-card"):
                return PolicyCard(**values)
    return None


def load_policy(
    path: str | Path, algo: str | None = None, device: str = "cpu"
) -> tuple[Any, PolicyCard | None]:
    """``(model, card)`` for a saved SB3 policy; ``algo`` (ppo | dqn) defaults to the card's.
    Read :data:`TRUSTED_FILES_NOTE` first."""
    from stable_baselines3 import DQN, PPO

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no policy at {path}; train one with dreamx-train-agent (it writes policy.zip)"
        )
    card = find_card(path)
    algo = algo or (card.algo if card else None)
    if algo is None:
        raise ValueError(
            f"{path} has no policy card ({CARD_NAME}); say which algorithm saved it: algo=ppo|dqn"
        )
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    cls = {"ppo": PPO, "dqn": DQN}[algo]
    return cls.load(str(path), device=device), card


def env_kwargs_for(model: Any, card: PolicyCard | None) -> dict[str, Any]:
    """``gymnasium.make`` arguments that give the env the policy was trained on (from the card, else from
    the policy's spaces)."""
    if card is not None:
        return dict(card.env_kwargs)
    act = model.action_space
    kwargs: dict[str, Any] = {}
    if isinstance(act, spaces.Discrete):
        kwargs["action_set"] = "discrete"
        kwargs["event_actions"] = act.n > len(DISCRETE_KEYS)
    elif isinstance(act, spaces.MultiDiscrete):
        kwargs["action_set"], kwargs["event_actions"] = "multi", len(act.nvec) == 3
    else:
        kwargs["action_set"] = "continuous"
    obs = model.observation_space
    rgb = obs["rgb"] if isinstance(obs, spaces.Dict) else obs
    h, w = rgb.shape[1:] if rgb.shape[0] == 3 else rgb.shape[:2]  # SB3 stores images channel-first
    kwargs["resolution"] = (int(h), int(w))
    return kwargs


def _same_image_space(a: spaces.Space, b: spaces.Space) -> bool:
    """Equal Box spaces, allowing SB3's channel-first transpose of an image."""
    if not (isinstance(a, spaces.Box) and isinstance(b, spaces.Box)):
        return a == b
    return a.shape == b.shape or (len(a.shape) == 3 and a.shape == (b.shape[2], *b.shape[:2]))


def check_policy_spaces(
    model: Any, observation_space: spaces.Space, action_space: spaces.Space | None
) -> None:
    """Raise ``ValueError`` saying what differs when the env's spaces are not the policy's."""
    ours, theirs = model.observation_space, observation_space
    if isinstance(ours, spaces.Dict) != isinstance(theirs, spaces.Dict):
        ok = False
    elif isinstance(ours, spaces.Dict):
        ok = set(ours.spaces) == set(theirs.spaces) and all(
            _same_image_space(ours[k], theirs[k]) for k in ours.spaces
        )
    else:
        ok = _same_image_space(ours, theirs)
    if not ok:
        raise ValueError(
            f"the policy observes {ours} but this env gives {theirs}; use the env id, resolution and "
            "obs_keys the policy was trained with (its policy.json lists them)"
        )
    if action_space is not None and model.action_space != action_space:
        raise ValueError(
            f"the policy acts in {model.action_space} but this env takes {action_space}; "
            "use the action_set / event_actions the policy was trained with"
        )


def action_keys(action: Any, action_space: spaces.Space) -> tuple[frozenset[str], int]:
    """(held keys, event-menu index) that a policy action stands for, for ``agents.keys.keys_to_action``."""
    a = np.asarray(action).reshape(-1)
    if isinstance(action_space, spaces.Discrete):
        i = int(a[0])
        if i < len(DISCRETE_KEYS):
            return frozenset(DISCRETE_KEYS[i]), 0
        return frozenset(), i - len(DISCRETE_KEYS) + 1
    if isinstance(action_space, spaces.MultiDiscrete):
        event = int(a[2]) if len(a) > 2 else 0
        return frozenset(MOVE_COMBOS[int(a[0])] + LOOK_COMBOS[int(a[1])]), event
    raise ValueError(f"only key actions (action_set 'multi' or 'discrete') map to keys, not {action_space}")


def has_success(venv: Any) -> bool:
    """Whether the task of a ``dreamx_env.sb3`` env has a success condition (Explore has none)."""
    return venv.unwrapped.venv.core.task.has_success


@dataclass
class EpisodeStats:
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "episodes": len(self.returns),
            "success_rate": float(np.mean(self.successes)),
            "mean_return": float(np.mean(self.returns)),
            "std_return": float(np.std(self.returns)),
            "mean_length": float(np.mean(self.lengths)),
            "returns": [float(r) for r in self.returns],
            "lengths": [int(n) for n in self.lengths],
            "successes": [bool(s) for s in self.successes],
        }


def run_episodes(
    model: Any, venv: Any, episodes: int, deterministic: bool = True, seed: int | None = None, bar: Any = None
) -> EpisodeStats:
    """Play ``episodes`` whole episodes of ``model`` on an SB3 ``VecEnv`` (``dreamx_env.sb3``).

    Success is the env's own signal: ``info["success"]`` of an episode's last step (GoalView and
    FindObject terminate on it). Each of the ``n`` envs plays its share of the episodes (the first
    ``episodes % n`` one more), so short episodes do not crowd out long ones."""
    n = venv.num_envs
    targets = np.array([(episodes + i) // n for i in range(n)])
    counts, stats = np.zeros(n, int), EpisodeStats()
    running_return, running_length = np.zeros(n), np.zeros(n, int)
    if seed is not None:
        venv.seed(seed)
    obs = venv.reset()
    while (counts < targets).any():
        actions, _ = model.predict(obs, deterministic=deterministic)
        obs, rewards, dones, infos = venv.step(actions)
        running_return += rewards
        running_length += 1
        for i in np.flatnonzero(dones):
            if counts[i] < targets[i]:
                stats.returns.append(float(running_return[i]))
                stats.lengths.append(int(running_length[i]))
                stats.successes.append(bool(infos[i].get("success", False)))
                counts[i] += 1
                if bar is not None:
                    bar.update()
            running_return[i], running_length[i] = 0.0, 0
    return stats


class PolicyPilot:
    """Drives a human-style loop (the viewer) with a saved SB3 policy: observation -> (held keys, event).
    The policy may act in any key action set (``multi`` with or without events, ``discrete``); its action
    is translated to the keys it stands for, so it drives an env whose action set is ``multi``."""

    def __init__(self, path: str | Path, algo: str | None = None, deterministic: bool = True) -> None:
        self.model, self.card = load_policy(path, algo)
        self.name = f"{self.card.algo if self.card else algo} {Path(path).name}"
        self.deterministic = deterministic
        action_keys(self.model.action_space.sample(), self.model.action_space)  # fails for Box policies

    def check(self, observation_space: spaces.Space) -> None:
        check_policy_spaces(self.model, observation_space, None)

    def act(self, obs: Any) -> tuple[frozenset[str], int]:
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return action_keys(action, self.model.action_space)
