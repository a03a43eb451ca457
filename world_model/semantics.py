"""Semantic class table and colour palette shared by the engine, the model, the env and the metrics."""

from __future__ import annotations

# Class id -> name. Id 0 is "sky": pixels where the ray hits nothing.
SEMANTIC_CLASSES: tuple[str, ...] = (
    "sky",
    "floor",
    "wall",
    "ceiling",
    "door",
    "box",
    "ball",
    "cylinder",
    "capsule",
    "table",
)
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(SEMANTIC_CLASSES)}
OBJECT_SHAPES: tuple[str, ...] = ("box", "ball", "cylinder", "capsule", "table")
OBJECT_CLASS_IDS: tuple[int, ...] = tuple(CLASS_ID[shape] for shape in OBJECT_SHAPES)

# Named colours (linear RGB in [0, 1]) for objects, paint and drops.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.12, 0.25, 0.85),
    "yellow": (0.92, 0.85, 0.15),
    "orange": (0.95, 0.50, 0.10),
    "purple": (0.55, 0.20, 0.75),
    "cyan": (0.10, 0.75, 0.80),
    "pink": (0.95, 0.50, 0.70),
    "white": (0.92, 0.92, 0.92),
    "black": (0.08, 0.08, 0.08),
}
