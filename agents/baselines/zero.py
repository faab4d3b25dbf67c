"""Zero motion: the box never moves — the floor every tracker must clear."""
from __future__ import annotations

import numpy as np

from bmvtrack.motion import RBox


class ZeroMotionTracker:
    """Returns the initial box on every frame."""

    uses_ground_truth = False

    def __init__(self, name: str = "zero") -> None:
        self.name = name
        self._box: RBox | None = None

    def init(self, frame: np.ndarray, box: RBox) -> None:
        self._box = box

    def update(self, frame: np.ndarray) -> RBox:
        if self._box is None:
            raise RuntimeError("ZeroMotionTracker.update called before init")
        return self._box
