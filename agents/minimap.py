"""A top-down map of where the camera has been, for the viewer's corner.

Floor cells (``cell_m`` on a side, world x/y) are grey once visited and orange when the camera came back to
them after leaving; red dots are the env's own revisits (``info["is_revisit"]``: back within 0.15 m and 3° of
a pose held at least 10 steps earlier, the places where the world's consistency is checked). The white dot is
the camera, its line the heading.
"""

from __future__ import annotations

import numpy as np

GREY, ORANGE, RED = (110, 110, 110), (240, 150, 40), (230, 40, 40)
WHITE, BACKGROUND = (255, 255, 255), (0, 0, 0)


class Minimap:
    def __init__(self, cell_m: float = 0.25) -> None:
        self.cell_m = cell_m
        self.visits: dict[tuple[int, int], int] = {}  # cell -> times entered
        self.revisit_points: list[np.ndarray] = []
        self.cell: tuple[int, int] | None = None
        self.pose = np.eye(4)

    def update(self, pose: np.ndarray, is_revisit: bool = False) -> None:
        """Record the camera-to-world ``pose [4, 4]`` of a new frame."""
        self.pose = pose
        cell = (int(np.floor(pose[0, 3] / self.cell_m)), int(np.floor(pose[1, 3] / self.cell_m)))
        if cell != self.cell:
            self.visits[cell] = self.visits.get(cell, 0) + 1
            self.cell = cell
        if is_revisit:
            self.revisit_points.append(pose[:2, 3].copy())

    @property
    def revisited_cells(self) -> int:
        return sum(n > 1 for n in self.visits.values())

    def draw(self, pg, surface, rect) -> None:
        """Draw into ``rect`` (a ``pygame.Rect``) of ``surface``; ``pg`` is the pygame module."""
        pg.draw.rect(surface, BACKGROUND, rect)
        pg.draw.rect(surface, GREY, rect, 1)
        if not self.visits:
            return
        cells = np.array(list(self.visits))
        lo, hi = cells.min(0) - 2, cells.max(0) + 3
        px = min(rect.width, rect.height) / max(hi - lo)

        def to_screen(x: float, y: float) -> tuple[int, int]:  # world +y is up on the map
            return int(rect.left + (x - lo[0]) * px), int(rect.bottom - (y - lo[1]) * px)

        size = max(1, int(np.ceil(px)))
        for (cx, cy), n in self.visits.items():
            left, bottom = to_screen(cx, cy)
            pg.draw.rect(surface, ORANGE if n > 1 else GREY, (left, bottom - size, size, size))
        scale = 1.0 / self.cell_m
        for p in self.revisit_points:
            pg.draw.circle(surface, RED, to_screen(*(p * scale)), max(2, size // 2))
        here = to_screen(*(self.pose[:2, 3] * scale))
        heading = self.pose[:2, 2] / (np.linalg.norm(self.pose[:2, 2]) + 1e-9)
        tip = (int(here[0] + heading[0] * 3 * size), int(here[1] - heading[1] * 3 * size))
        pg.draw.line(surface, WHITE, here, tip, 2)
        pg.draw.circle(surface, WHITE, here, max(3, size // 2))
