"""The scene-seed splits: which seeds train the world model and which only measure it.

Seeds name procedural scenes (``world_model.engine.scenes.make_scene``); the learned model is trained and
tuned on ``train`` seeds only, and reports are made on ``validation`` seeds. Kept apart from the engine so
that code which only needs the ranges (the env, a client of a remote server) does not load MuJoCo."""

from __future__ import annotations

SPLITS: dict[str, tuple[int, int]] = {"train": (0, 100_000), "validation": (100_000, 200_000)}
