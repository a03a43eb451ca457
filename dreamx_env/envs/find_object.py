"""DreamX/FindObject-v0: bring an object of a named shape and colour into the centre of view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from dreamx_env.envs.base import DreamXEnv, DreamXVectorEnv
from dreamx_env.envs.task import Frame, RewardConfig, Task
from world_model.backend import SceneInfo
from world_model.geometry import Intrinsics, unproject
from world_model.semantics import CLASS_ID, COLORS, OBJECT_SHAPES

COLOR_NAMES: tuple[str, ...] = tuple(COLORS)


@dataclass
class FindObjectConfig:
    center_frac: float = 0.3  # side of the central window, as a fraction of the image
    success_frac: float = 0.25  # share of the central window the target must cover
    target: str | None = None  # e.g. "red ball"; None: any object of the scene


def target_mask(frame: Frame, targets: list[dict], rivals: list[dict], intr: Intrinsics) -> np.ndarray:
    """Pixels showing one of ``targets`` (objects of the wanted shape and colour): pixels of their
    semantic class that do not belong to a same-shaped ``rival`` of another colour. With object positions
    and depth, a pixel goes to the object whose centre is nearest (on the floor plane) to the 3D point it
    shows; without them, to the one whose palette colour is nearest the pixel's brightness-normalised
    colour (a weaker test under shading)."""
    mask = frame.semantic == CLASS_ID[targets[0]["shape"]]
    if not rivals or not mask.any():
        return mask
    candidates = [*targets, *rivals]
    if frame.depth is not None and all("position" in o for o in candidates):
        depth = np.where(np.isfinite(frame.depth), frame.depth, 0.0)
        points = unproject(depth, frame.poses[-1], intr, mask)[:, :2]
        centres = np.array([o["position"][:2] for o in candidates], np.float64)
        owner = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    else:
        palette = np.array([COLORS[o["color"]] for o in candidates], np.float32)
        palette /= palette.max(axis=1, keepdims=True)
        pix = frame.rgb[mask].astype(np.float32) + 1.0
        pix /= pix.max(axis=1, keepdims=True)
        owner = np.argmin(((pix[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
    out = np.zeros_like(mask)
    out[mask] = owner < len(targets)
    return out


class FindObjectTask(Task):
    name = "find_object"
    starts_from_images = False  # a user image has no known goal views or objects
    has_success = True
    needs = ("rgb", "semantic", "depth")
    default_reward = RewardConfig(progress=5.0, success=10.0, step=-0.01)

    def __init__(self, config: FindObjectConfig, height: int, width: int, vfov_deg: float = 70.0) -> None:
        super().__init__(config, height, width, vfov_deg)
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
        st = {
            "shape": shape,
            "color": color,
            "targets": [o for o in objects if (o["shape"], o["color"]) == (shape, color)] or [choice],
            "rivals": [o for o in objects if o["shape"] == shape and o["color"] != color],
            "fallback": fallback,
        }
        st["score"], _ = self._score(st, frame)
        return st

    def _score(self, st: dict, frame: Frame) -> tuple[float, float]:
        mask = target_mask(frame, st["targets"], st["rivals"], self.intrinsics)
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
    and walk until it fills the centre of the view. Success is judged on the backend's own frames, so
    it works the same on the learned model and the ground truth: pixels of the target's semantic class,
    told apart from same-shaped objects of other colours by the 3D point each pixel shows (depth) and
    the objects' positions in the scene info (by colour when positions are unknown; positions are those
    at the episode start, so a pushed object is judged where it stood). Shared arguments, action sets
    and events: see :class:`~dreamx_env.envs.explore.ExploreEnv`.

    ## Action Space

    As ExploreEnv: ``MultiDiscrete([9, 9])`` (move, look) by default, ``MultiDiscrete([9, 9, 9])`` with
    ``event_actions=True``; ``"discrete"`` or ``"continuous"``.

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

    As ExploreEnv, plus ``target_score``, ``target_center``, ``target_fallback``, ``success`` (this step
    reached the target) and ``is_success`` (the episode has succeeded; SB3 logs it as
    ``rollout/success_rate``).

    ## Arguments

    As ExploreEnv, plus ``center_frac``, ``success_frac`` and ``target``.

    ## Version History

    * v0: Initial version.
    """

    task_cls, task_config_cls = FindObjectTask, FindObjectConfig


class FindObjectVectorEnv(DreamXVectorEnv):
    """Native vector version of :class:`FindObjectEnv` (one server call per step; see ExploreVectorEnv)."""

    task_cls, task_config_cls = FindObjectTask, FindObjectConfig
