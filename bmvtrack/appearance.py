"""How much a box looks like the object of the track's first frame, by colour (ours, not the paper's).

Why: the decoded mask and the proposal tracker fail on different sequences, and where their boxes
disagree, the motion posterior's one-frame state barely says which went wrong. A colour model of
the object against its surroundings, made once from the first frame and box, is independent of
both cues: a box that drifted onto the background holds background colours, a box shrunk onto a
piece of the object has object colours around it as well as inside it.

``ColourModel.start(frame, box)`` counts the colours (``BINS`` levels per RGB channel) inside the
first box and in the ring around it (the box with sides ``RING``× as long, less the box), and
keeps each colour's object likelihood P(object | colour) = n_object / (n_object + n_ring) with the
counts normalised by area. ``score(frame, box)`` gives three numbers for any box of a later frame:

- ``inside``: the mean object likelihood of the pixels inside the box;
- ``contrast``: ``inside`` less the mean likelihood in the box's own ring (high when the box fits
  the object; low for a piece of it or for background);
- ``similarity``: the Bhattacharyya coefficient of the box's colour histogram with the first box's.

The model is never updated, so it cannot drift with the track.
"""
from __future__ import annotations

import numpy as np

from bmvtrack.motion import RBox, fill_rbox, rbox_corners

BINS = 16  # levels per RGB channel (4,096 colours)
RING = 2.0  # the ring's box has sides this many times the box's
SCORE_DIM = 3  # inside, contrast, similarity
_SHIFT = 8 - int(np.log2(BINS))


def colour_index(frame: np.ndarray) -> np.ndarray:
    """Each pixel's colour bin (H×W int) of an RGB uint8 frame."""
    q = (np.asarray(frame, dtype=np.uint8) >> _SHIFT).astype(np.int32)
    return (q[..., 0] * BINS + q[..., 1]) * BINS + q[..., 2]


def _regions(box: RBox, hw: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The window of the frame around the ring's box, and the box's and the ring's pixels inside it
    (filled in the window only: the frame can be far larger than the box)."""
    ring_box = RBox(box.cx, box.cy, box.w * RING, box.h * RING, box.angle)
    corners = rbox_corners(ring_box)
    x0, y0 = (max(int(np.floor(v)) - 1, 0) for v in corners.min(0))
    x1, y1 = (int(np.ceil(v)) + 2 for v in corners.max(0))
    x1, y1 = min(x1, hw[1]), min(y1, hw[0])
    if x1 <= x0 or y1 <= y0:
        empty = np.zeros((0, 0), bool)
        return (slice(0, 0), slice(0, 0)), empty, empty
    shape = (y1 - y0, x1 - x0)
    inner = fill_rbox(RBox(box.cx - x0, box.cy - y0, box.w, box.h, box.angle), shape)
    outer = fill_rbox(RBox(ring_box.cx - x0, ring_box.cy - y0, ring_box.w, ring_box.h, box.angle), shape)
    return (slice(y0, y1), slice(x0, x1)), inner, outer & ~inner


def _histogram(idx: np.ndarray, where: np.ndarray) -> np.ndarray:
    return np.bincount(idx[where], minlength=BINS**3).astype(np.float64)


class ColourModel:
    """A track's first-frame colour model of its object (module docstring)."""

    def __init__(self) -> None:
        self.likelihood: np.ndarray | None = None
        self.object_hist: np.ndarray | None = None

    def start(self, frame: np.ndarray, box: RBox) -> None:
        """Learn the object's colours from ``box`` in ``frame`` (a track's first frame)."""
        win, inner, ring = _regions(box, frame.shape[:2])
        idx = colour_index(frame[win])
        obj, bg = _histogram(idx, inner), _histogram(idx, ring)
        obj_p = obj / max(obj.sum(), 1.0)
        bg_p = bg / max(bg.sum(), 1.0)
        self.likelihood = np.where(obj_p + bg_p > 0, obj_p / np.maximum(obj_p + bg_p, 1e-12), 0.5)
        self.object_hist = obj_p

    def score(self, frame: np.ndarray, box: RBox | None) -> np.ndarray:
        """``[inside, contrast, similarity]`` of ``box`` in ``frame`` (zeros for None or a box off the frame)."""
        if self.likelihood is None or self.object_hist is None:
            raise RuntimeError("ColourModel.score called before start")
        if box is None:
            return np.zeros(SCORE_DIM, np.float32)
        win, inner, ring = _regions(box, frame.shape[:2])
        idx = colour_index(frame[win])
        n = int(inner.sum())
        if n == 0:
            return np.zeros(SCORE_DIM, np.float32)
        lik = self.likelihood[idx[inner]]
        inside = float(lik.mean())
        around = float(self.likelihood[idx[ring]].mean()) if ring.any() else 0.0
        hist = _histogram(idx, inner) / n
        similarity = float(np.sqrt(hist * self.object_hist).sum())
        return np.array([inside, inside - around, similarity], np.float32)


def mask_box_wins(mask_scores: np.ndarray, proposal_scores: np.ndarray) -> bool:
    """Whether the decoded mask's box beats the proposal tracker's: its colour contrast (``score``'s
    second number) is at least the proposal's. The one choice ``rule-colour`` and
    ``segmentation-colour`` make; the caller falls back to the proposal where the mask is empty."""
    return bool(mask_scores[1] >= proposal_scores[1])
