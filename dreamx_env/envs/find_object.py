"""DreamX/FindObject-v0: bring an object of a named shape and colour into the centre of view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from dreamx_env.envs.base import DreamXEnv, DreamXVectorEnv
from dreamx_env.envs.task import Frame, RewardConfig, Task
from world_model.backend import SceneInfo
from world_model.semantics import CLASS_ID, COLORS, OBJECT_SHAPES

COLOR_NAMES: tuple[str, ...] = tuple(COLORS)


@dataclass
class FindObjectConfig:
    center_frac: float = 0.3  # side of the central window, as a fraction of the image
    success_frac: float = 0.25  # share of the central window the target must cover
    target: str | None = None  # e.g. "red ball"; None: any object of the scene


def target_mask(frame: Frame, shape: str, color: str, rivals: tuple[str, ...]) -> np.ndarray:
    """Pixels of the target: its semantic class, and, when the scene holds same-shaped objects of other
    colours (``rivals``), the palette colour nearest to the pixel's hue (brightness-normalised, so that
    the lights being off does not change the answer)."""
    mask = frame.semantic == CLASS_ID[shape]
    if not rivals or not mask.any():
        return mask
    names = (color, *rivals)
    palette = np.array([COLORS[n] for n in names], np.float32)
    palette /= palette.max(axis=1, keepdims=True)
    pix = frame.rgb[mask].astype(np.float32) + 1.0
    pix /= pix.max(axis=1, keepdims=True)
    nearest = np.argmin(((pix[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
    out = np.zeros_like(mask)
    out[mask] = nearest == 0
    return out


class FindObjectTask(Task):
    name = "find_object"
    needs = ("rgb", "semantic")
    default_reward = RewardConfig(progress=5.0, success=10.0, step=-0.01)

    def __init__(self, config: FindObjectConfig, height: int, width: int) -> None:
        super().__init__(config, height, width)
        v, u = np.mgrid[0:height, 0:width] + 0.5
        sigma = 0.25 * min(height, width)
        w = np.exp(-(((v - height / 2) ** 2 + (u - width / 2) ** 2) / (2 * sigma**2)))
        self._weights = (w / w.sum()).astype(np.float32)
        ch, cw = max(1, round(height * config.center_frac)), max(1, round(width * config.center_frac))
        self._center = (
            slice((height - ch) // 2, (height + ch) // 2),
            slice((width - cw) // 2, (width + cw) // 2),
        )
        if config.target is not None:
            words = config.target.lower().split()
            if len(words) != 2 or words[0] not in COLORS or words[1] not in OBJECT_SHAPES:
                raise ValueError(
                    f"target must be '<colour> <shape>' with a colour in {COLOR_NAMES} and a shape in "
                    f"{OBJECT_SHAPES}, got {config.target!r}"
                )

    def observation_spaces(self) -> dict[str, spaces.Space]:
        return {"target": spaces.MultiDiscrete([len(OBJECT_SHAPES), len(COLOR_NAMES)])}

    def begin(
        self, scene: SceneInfo, frame: Frame, view: Any, request: dict, rng: np.random.Generator
    ) -> dict:
        objects = [o for o in scene.objects if o.get("shape") in OBJECT_SHAPES and o.get("color") in COLORS]
        wanted = self.config.target.lower().split() if self.config.target else None
        matching = [o for o in objects if wanted is None or [o["color"], o["shape"]] == wanted]
        fallback = bool(wanted) and not matching
        pool = matching or objects or [{"shape": "ball", "color": "red"}]
        choice = pool[int(rng.integers(0, len(pool)))]
        shape, color = choice["shape"], choice["color"]
        rivals = tuple(sorted({o["color"] for o in objects if o["shape"] == shape} - {color}))
        st = {"shape": shape, "color": color, "rivals": rivals, "fallback": fallback}
        st["score"], _ = self._score(st, frame)
        return st

    def _score(self, st: dict, frame: Frame) -> tuple[float, float]:
        mask = target_mask(frame, st["shape"], st["color"], st["rivals"])
        return float((self._weights * mask).sum()), float(mask[self._center].mean())

    def progress(self, st: dict, frame: Frame) -> tuple[float, bool, dict[str, Any]]:
        score, centre = self._score(st, frame)
        gained, st["score"] = score - st["score"], score
        success = centre >= self.config.success_frac
        return (
            gained,
            success,
            {"target_score": score, "target_center": centre, "target_fallback": st["fallback"]},
        )

    def observe(self, st: dict) -> dict[str, np.ndarray]:
        return {
            "target": np.array([OBJECT_SHAPES.index(st["shape"]), COLOR_NAMES.index(st["color"])], np.int64)
        }


class FindObjectEnv(DreamXEnv):
    """
    ## Description

    Somewhere in a generated world stands an object of a given shape and colour ("the red ball"). Turn
    and walk until it fills the centre of the view. Success is judged on the backend's semantic frame
    (the target's class) and the pixels' colour, so it works the same on the learned model and the
    ground truth. Shared arguments, action sets and events: see
    :class:`~dreamx_env.envs.explore.ExploreEnv`.

    ## Action Space

    As ExploreEnv: ``MultiDiscrete([9, 9, 9])`` by default; ``"discrete"`` or ``"continuous"``.

    ## Observation Space

    ``Dict(rgb=Box(0, 255, (H, W, 3), uint8), target=MultiDiscrete([5, 10]))``: the target's index in
    ``semantics.OBJECT_SHAPES`` and in ``semantics.COLORS`` (+ ``depth``, ``semantic`` with
    ``obs_keys``). Use SB3's ``MultiInputPolicy``.

    ## Rewards

    ``progress`` (5.0) x the change of the target's centre-weighted visible share (a Gaussian of
    σ = H/4 around the centre), ``success`` (10.0) once, ``step`` (-0.01) per step.

    ## Starting State

    The scene's start pose; the target is drawn from the scene's objects with the reset seed (only
    those matching ``target="red ball"`` when given; if none match, any object, with
    ``info["target_fallback"] = True``).

    ## Episode End

    Terminates when the target covers ``success_frac`` (25%) of the central window (``center_frac`` =
    30% of the image side); truncated after ``max_episode_steps`` (200 with ``gymnasium.make``).

    ## Information

    As ExploreEnv, plus ``target_score``, ``target_center``, ``target_fallback`` and ``success``.

    ## Arguments

    As ExploreEnv, plus ``center_frac``, ``success_frac`` and ``target``.

    ## Version History

    * v0: Initial version.
    """

    task_cls, task_config_cls = FindObjectTask, FindObjectConfig


class FindObjectVectorEnv(DreamXVectorEnv):
    """Native vector version of :class:`FindObjectEnv` (one server call per step; see ExploreVectorEnv)."""

    task_cls, task_config_cls = FindObjectTask, FindObjectConfig
