"""OpenCV's classical trackers (MIL, KCF, CSRT) behind the tracker interface.

They are axis-aligned: ``init`` takes the axis-aligned bounds of the given rotated box and
``update`` returns an axis-aligned ``RBox`` (angle 0). Box convention (the motion module's):
pixel ``(col, row)`` has its centre at ``(col, row)``, and a box's extent runs between the
centres of its outermost pixels, as for boxes fitted to masks. An OpenCV ``Rect(x, y, w, h)``
covers the pixels ``x .. x+w-1``, so it maps to the extent ``[x, x+w-1]`` and back.

OpenCV's trackers have input requirements they do not check themselves; this wrapper enforces
them so an evaluation never hangs or crashes on one awkward sequence:

* a minimum box side (``min_side``, 8 px by default): MIL loops forever on boxes under about
  5 px, CSRT asserts on 1 px, and KCF's correlation filter is meaningless on a few pixels;
* the box is clipped to the frame (MIL finds no positive samples for a box reaching outside);
* if ``init`` still raises (MIL needs room for negative samples around the box, so a box
  nearly as large as the frame fails), the box is shrunk about its centre and tried again;
  if every attempt fails the tracker warns and holds the box (behaving as zero motion), with
  ``init_failed`` set;
* a failed ``update`` (returned ``False`` or raised ``cv2.error``) keeps the last box.

Reproducibility: MIL draws its Haar features with the C library's ``rand()`` and its samples with
OpenCV's RNG, so its result depends on whatever ran before it in the process (measured on DAVIS:
the final box of one sequence moved by 40 px between runs). ``init`` reseeds both (``seed``,
default 0; None leaves them alone), which makes a run independent of the order of trackers and
sequences. It resets process-global generators: harmless here, noted for callers that rely on them.

``axis_aligned = True`` tells the evaluation that this tracker can only hold an axis-aligned box,
so it may be initialised with the mask's tight bounds (the OTB protocol) rather than the bounds of
the rotated box, which are looser for a tilted object.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import warnings

import cv2
import numpy as np

from bmvtrack.motion import MIN_SIDE, RBox, rbox_to_xyxy

KINDS = {"mil": "MIL", "kcf": "KCF", "csrt": "CSRT"}


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # no C library to reach (unusual platform): MIL then stays order-dependent
        return None


_LIBC = _libc()


def seed_opencv(seed: int) -> None:
    """Seed OpenCV's RNG and the C library's ``rand()`` (MIL uses both)."""
    cv2.setRNGSeed(int(seed))
    if _LIBC is not None:
        _LIBC.srand(ctypes.c_uint(int(seed) & 0xFFFFFFFF))


def _factory(kind: str):
    if kind not in KINDS:
        raise ValueError(f"unknown OpenCV tracker kind {kind!r}; use one of {sorted(KINDS)}")
    attr = f"Tracker{KINDS[kind]}_create"
    fn = getattr(cv2, attr, None)
    if fn is None and hasattr(cv2, "legacy"):
        fn = getattr(cv2.legacy, attr, None)
    if fn is None:
        raise RuntimeError(
            f"OpenCV {cv2.__version__} has no {attr} (the {KINDS[kind]} tracker lives in the contrib "
            "modules): install opencv-contrib-python-headless instead of opencv-python(-headless)"
        )
    return fn


def rbox_to_cv_rect(box: RBox, img_w: int, img_h: int, min_side: int = 1) -> tuple[int, int, int, int]:
    """Integer ``(x, y, w, h)`` covering the box's axis-aligned bounds, clipped to the frame.

    Sides are at least ``min_side`` (grown about the centre, then shifted inside the frame).
    """
    x0, y0, x1, y1 = (float(v) for v in rbox_to_xyxy(box))
    out = []
    for lo, hi, size in ((x0, x1, int(img_w)), (y0, y1, int(img_h))):
        a, b = math.floor(lo + 0.5), math.floor(hi + 0.5)  # nearest pixel index
        a, b = max(a, 0), min(b, size - 1)
        if b < a:  # entirely outside the frame: a 1-px box at the nearest border
            a = b = min(max(round((lo + hi) / 2), 0), size - 1)
        n = min(max(b - a + 1, int(min_side)), size)
        start = round((a + b) / 2 - (n - 1) / 2)
        start = min(max(start, 0), size - n)
        out.append((start, n))
    (x, w), (y, h) = out
    return x, y, w, h


def cv_rect_to_rbox(rect) -> RBox:
    """An OpenCV ``(x, y, w, h)`` as an axis-aligned RBox (angle 0) in the motion module's convention."""
    x, y, w, h = (float(v) for v in rect)
    return RBox(x + (w - 1.0) / 2.0, y + (h - 1.0) / 2.0, max(w - 1.0, MIN_SIDE), max(h - 1.0, MIN_SIDE), 0.0)


class OpenCVTracker:
    """OpenCV MIL / KCF / CSRT (``kind``), axis-aligned, RGB frames in (converted to BGR)."""

    uses_ground_truth = False
    axis_aligned = True

    def __init__(self, kind: str = "csrt", name: str | None = None, min_side: int = 8,
                 init_attempts: int = 6, shrink: float = 0.8, seed: int | None = 0) -> None:
        self.kind = kind.lower()
        self._create = _factory(self.kind)  # fails early, with the install hint
        self.name = name or self.kind
        self.min_side = int(min_side)
        self.init_attempts = int(init_attempts)
        self.shrink = float(shrink)
        self.seed = seed
        self._tracker = None
        self._box: RBox | None = None
        self.init_failed = False
        self.failed_updates = 0

    @staticmethod
    def _bgr(frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be RGB (H, W, 3), got shape {frame.shape}")
        return cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2BGR)

    def init(self, frame: np.ndarray, box: RBox) -> None:
        img = self._bgr(frame)
        h, w = img.shape[:2]
        self.init_failed, self.failed_updates = False, 0
        if self.seed is not None:
            seed_opencv(self.seed)
        rect = rbox_to_cv_rect(box, w, h, self.min_side)
        errors = []
        for _ in range(self.init_attempts):
            tracker = self._create()
            try:
                ok = tracker.init(img, rect)
            except cv2.error as exc:
                errors.append(str(exc).strip().splitlines()[-1])
            else:
                if ok is None or ok:  # OpenCV ≥ 4.5 returns None; the legacy API returns a bool
                    self._tracker, self._box = tracker, cv_rect_to_rbox(rect)
                    return
                errors.append("init returned False")
            x, y, rw, rh = rect
            smaller = RBox(x + (rw - 1) / 2, y + (rh - 1) / 2, max((rw - 1) * self.shrink, 1.0),
                           max((rh - 1) * self.shrink, 1.0), 0.0)
            rect = rbox_to_cv_rect(smaller, w, h, self.min_side)
        warnings.warn(f"{self.name}: OpenCV init failed on box {box} ({errors[-1] if errors else ''}); "
                      "holding the initial box", RuntimeWarning, stacklevel=2)
        self._tracker, self._box, self.init_failed = None, box, True

    def update(self, frame: np.ndarray) -> RBox:
        if self._box is None:
            raise RuntimeError(f"{self.name}: update called before init")
        if self._tracker is None:
            return self._box
        try:
            ok, rect = self._tracker.update(self._bgr(frame))
        except cv2.error:
            ok, rect = False, None
        if ok and rect is not None and all(np.isfinite(rect)) and rect[2] > 0 and rect[3] > 0:
            self._box = cv_rect_to_rbox(rect)
        else:
            self.failed_updates += 1
        return self._box
