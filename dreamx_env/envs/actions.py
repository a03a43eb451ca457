"""Actions -> held keys -> camera poses for a chunk of frames, batched over environments.

Three action sets:

- ``"multi"`` (PPO default): ``MultiDiscrete([9, 9])`` = (move combo, look combo) indexing
  ``geometry.MOVE_COMBOS`` and ``geometry.LOOK_COMBOS`` (index 0 = none each); with events on,
  ``MultiDiscrete([9, 9, 9])``, the third indexing ``events.EVENT_MENU``.
- ``"discrete"`` (DQN): ``Discrete(n)`` over ``DISCRETE_KEYS`` then, if events are on, each menu event.
- ``"continuous"``: ``Box(-1, 1, (4,))`` = per-frame (forward, right, turn left, look up) as fractions of
  the key map's step sizes. Events are sent with ``env.unwrapped.command(...)``.

The keys are held for all K frames of the step. The per-frame motion is ``geometry.apply_deltas``,
evaluated here for a whole batch at once (the tests check it against ``geometry.key_trajectory``).
"""

from __future__ import annotations

import math

import numpy as np
from gymnasium import spaces

from world_model.events import EVENT_MENU, EventRecord, parse_prompt
from world_model.geometry import LOOK_COMBOS, MOVE_COMBOS, KeyMap, key_deltas, yaw_pitch

ACTION_SETS: tuple[str, ...] = ("multi", "discrete", "continuous")
DISCRETE_KEYS: tuple[str, ...] = ("", "W", "S", "A", "D", "J", "L", "I", "K", "WJ", "WL")
EVENT_RECORDS: tuple[tuple[EventRecord, ...], ...] = tuple(
    tuple(parse_prompt(e)) if e else () for e in EVENT_MENU
)


class ActionMapper:
    """Validates actions and turns a batch of them into per-frame motion and event-menu indices."""

    def __init__(self, action_set: str, keymap: KeyMap, event_actions: bool = False) -> None:
        if action_set not in ACTION_SETS:
            raise ValueError(f"action_set must be one of {ACTION_SETS}, got {action_set!r}")
        self.action_set, self.keymap, self.event_actions = action_set, keymap, event_actions
        n_events = len(EVENT_MENU) if event_actions else 1
        if action_set == "multi":
            nvec = [len(MOVE_COMBOS), len(LOOK_COMBOS)] + ([n_events] if event_actions else [])
            self.space: spaces.Space = spaces.MultiDiscrete(nvec)
            self._move = np.array([key_deltas(k, keymap) for k in MOVE_COMBOS])
            self._look = np.array([key_deltas(k, keymap) for k in LOOK_COMBOS])
        elif action_set == "discrete":
            self.labels = [k or "noop" for k in DISCRETE_KEYS] + [e for e in EVENT_MENU[1:n_events]]
            self.space = spaces.Discrete(len(self.labels))
            zeros = [(0.0, 0.0, 0.0, 0.0)] * (n_events - 1)
            self._table = np.array([key_deltas(k, keymap) for k in DISCRETE_KEYS] + zeros)
            self._event = np.array([0] * len(DISCRETE_KEYS) + list(range(1, n_events)))
        else:
            self.space = spaces.Box(-1.0, 1.0, (4,), np.float32)
            self._scale = np.array(
                [
                    keymap.move_step,
                    keymap.strafe_step,
                    math.radians(keymap.yaw_step_deg),
                    math.radians(keymap.pitch_step_deg),
                ]
            )

    def check(self, action: object, batch_space: spaces.Space | None = None) -> np.ndarray:
        """``action`` as an array, or a ``ValueError`` naming the space it should belong to."""
        space = batch_space or self.space
        try:
            arr = np.asarray(action)
            if self.action_set == "continuous":
                ok = arr.shape == space.shape and np.isfinite(arr).all() and (np.abs(arr) <= 1.0 + 1e-6).all()
                arr = arr.astype(np.float32)
            else:
                ok = arr.dtype.kind in "iu" and space.contains(arr if arr.ndim else arr.item())
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"invalid action {action!r}: it must be an element of the action space {space}")
        return arr

    def decode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame deltas ``[B, 4]`` (forward m, right m, yaw rad, pitch rad) and event indices ``[B]``."""
        if self.action_set == "multi":
            a = actions.reshape(-1, self.space.shape[0]).astype(np.int64)
            deltas = self._move[a[:, 0]] + self._look[a[:, 1]]
            events = a[:, 2] if self.event_actions else np.zeros(len(a), np.int64)
        elif self.action_set == "discrete":
            a = actions.reshape(-1).astype(np.int64)
            deltas, events = self._table[a], self._event[a]
        else:
            deltas = np.clip(actions.reshape(-1, 4).astype(np.float64), -1, 1) * self._scale
            events = np.zeros(len(deltas), np.int64)
        return deltas, events


def poses_from_yaw_pitch(pos: np.ndarray, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Batched ``geometry.pose_from_yaw_pitch``: ``pos [N, 3]``, angles ``[N]`` -> ``[N, 4, 4]``."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    forward = np.stack([cp * cy, cp * sy, sp], -1)
    right = np.stack([sy, -cy, np.zeros_like(cy)], -1)
    out = np.zeros((len(pos), 4, 4))
    out[:, :3, 0], out[:, :3, 1], out[:, :3, 2] = right, np.cross(forward, right), forward
    out[:, :3, 3], out[:, 3, 3] = pos, 1.0
    return out


def level_pose(poses: np.ndarray) -> np.ndarray:
    """Exactly rigid, roll-free poses ``[B, 4, 4]`` with the position, yaw and pitch of ``poses``. Chunks are
    made relative to these, so round-off in the poses a backend reports cannot grow from step to step."""
    yaw, pitch = yaw_pitch(poses)
    return poses_from_yaw_pitch(poses[:, :3, 3], yaw, pitch)


def chunk_poses(start: np.ndarray, deltas: np.ndarray, frames: int, keymap: KeyMap) -> np.ndarray:
    """Absolute poses ``[B, K, 4, 4]`` reached by holding per-frame ``deltas [B, 4]`` for ``K`` frames from
    ``start [B, 4, 4]`` (rotate, then move in the horizontal plane along the new heading; pitch clamped)."""
    yaw, pitch = yaw_pitch(start)
    pos = start[:, :3, 3].copy()
    limit = math.radians(keymap.max_pitch_deg)
    out = np.empty((len(start), frames, 4, 4))
    for k in range(frames):
        yaw = np.arctan2(np.sin(yaw + deltas[:, 2]), np.cos(yaw + deltas[:, 2]))
        pitch = np.clip(pitch + deltas[:, 3], -limit, limit)
        c, s = np.cos(yaw), np.sin(yaw)
        pos[:, 0] += deltas[:, 0] * c + deltas[:, 1] * s
        pos[:, 1] += deltas[:, 0] * s - deltas[:, 1] * c
        out[:, k] = poses_from_yaw_pitch(pos, yaw, pitch)
    return out
