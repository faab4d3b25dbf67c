"""The oracle: replays the ground-truth motion G_t — the motion model's upper bound.

It is given the track's canonical ground-truth boxes, and on every step applies the G_t between
consecutive annotations to its own box with ``apply_motion`` (the same path an RL agent's action
takes). It therefore measures what the 5-D motion model can express, not what a tracker can see;
its rows are marked as using the ground truth. After a frame where the object is absent no G_t
exists across the gap: the box stays where it was during the gap and restarts from the
annotation at the first frame the object is back (as ``motion_stats.oracle_replay`` does).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bmvtrack.motion import RBox, apply_motion, motion_between


class OracleTracker:
    """Moves its box by the ground-truth G_t of each step (``uses_ground_truth = True``)."""

    uses_ground_truth = True

    def __init__(self, name: str = "oracle") -> None:
        self.name = name
        self._gt: list[RBox | None] | None = None
        self._size: tuple[float, float] = (1.0, 1.0)
        self._box: RBox | None = None
        self._t = 0

    def set_ground_truth(self, boxes: Sequence[RBox | None], img_w: float, img_h: float) -> None:
        """The track's ground-truth boxes, one per frame (None where the object is absent)."""
        self._gt = list(boxes)
        self._size = (float(img_w), float(img_h))

    def init(self, frame: np.ndarray, box: RBox) -> None:
        if self._gt is None:
            raise RuntimeError("OracleTracker needs set_ground_truth(boxes, img_w, img_h) before init")
        self._box = box
        self._t = 0

    def update(self, frame: np.ndarray) -> RBox:
        if self._gt is None or self._box is None:
            raise RuntimeError("OracleTracker.update called before set_ground_truth/init")
        self._t += 1
        if self._t >= len(self._gt):
            raise IndexError(f"OracleTracker: frame {self._t} beyond the {len(self._gt)} ground-truth boxes")
        prev, cur = self._gt[self._t - 1], self._gt[self._t]
        if cur is not None:
            if prev is None:
                self._box = cur  # back after an absence: restart from the annotation
            else:
                w, h = self._size
                self._box = apply_motion(self._box, motion_between(prev, cur, w, h), w, h)
        return self._box
