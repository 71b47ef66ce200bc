"""Top-down camera: the world drawn as an RGB image (this is the robot's camera in the demos)."""
from __future__ import annotations

import cv2
import numpy as np

from .dynamics import AGENT_RADIUS

BACKGROUND = (235, 235, 235)
WALL = (60, 60, 70)
AGENT = (220, 40, 40)
GOAL = (40, 170, 60)


class TopDownCamera:
    """Renders agent (red disk) and optionally goal (green ring) over a cached wall image.

    Pixel (row, col) of an ``size`` x ``size`` image covers the world square [-1, 1]^2 with +y up.
    """

    def __init__(self, walls, size: int = 64):
        if size < 16:
            raise ValueError(f"image size must be >= 16 pixels, got {size}")
        self.size = int(size)
        self._background = np.empty((self.size, self.size, 3), np.uint8)
        self._background[:] = BACKGROUND
        for x0, y0, x1, y1 in walls:
            (c0, r1), (c1, r0) = self.to_pixel((x0, y0)), self.to_pixel((x1, y1))
            cv2.rectangle(self._background, (c0, r0), (c1, r1), WALL, thickness=-1)
        self._radius_px = max(2, round(2 * AGENT_RADIUS * self.size / 2))

    def to_pixel(self, xy) -> tuple[int, int]:
        """World (x, y) -> pixel (col, row), clipped to the image."""
        col = (float(xy[0]) + 1.0) / 2.0 * (self.size - 1)
        row = (1.0 - float(xy[1])) / 2.0 * (self.size - 1)
        clip = lambda v: int(round(min(max(v, -1), self.size)))  # noqa: E731
        return clip(col), clip(row)

    def render(self, position, goal=None) -> np.ndarray:
        """RGB uint8 [size, size, 3]."""
        image = self._background.copy()
        if goal is not None:
            cv2.circle(image, self.to_pixel(goal), self._radius_px + 1, GOAL, thickness=1)
        cv2.circle(image, self.to_pixel(position), self._radius_px, AGENT, thickness=-1,
                   lineType=cv2.LINE_AA)
        return image
