"""Object-centred patches: the paper's crop (box padded by (w+h)/4 per side) and its inverse.

The crop window is computed from a rotated box's axis-aligned bounds, padded, optionally clipped
to the frame (the paper's choice), and resampled to ``size × size`` with one affine warp, so a
crop never copies the full frame. ``paste_patch`` maps a predicted patch mask back into the frame
at full resolution, which is how DAVIS-style J and F are measured.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bmvtrack.motion import RBox, rbox_to_xyxy


@dataclass(frozen=True)
class CropWindow:
    """An axis-aligned window ``[x0, x1) × [y0, y1)`` in frame pixels, mapped to ``size × size``."""

    x0: float
    y0: float
    x1: float
    y1: float
    size: int

    def affine(self) -> np.ndarray:
        """2×3 matrix from frame pixels to patch pixels."""
        sx = self.size / max(self.x1 - self.x0, 1e-6)
        sy = self.size / max(self.y1 - self.y0, 1e-6)
        return np.array([[sx, 0.0, -self.x0 * sx], [0.0, sy, -self.y0 * sy]], dtype=np.float64)


def crop_window(box: RBox, frame_hw: tuple[int, int], size: int, context: float = 0.25, clip: bool = True) -> CropWindow:
    """Window around ``box`` padded by ``context·(w+h)`` per side (paper: 1/4).

    With ``clip`` the window is clipped to the frame (paper); otherwise it may extend past the
    border, which keeps the object's scale in the patch constant near edges (padding is black).
    """
    x0, y0, x1, y1 = rbox_to_xyxy(box)
    bw, bh = x1 - x0, y1 - y0
    pad = context * (bw + bh)
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    h, w = frame_hw
    if clip:
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, float(w)), min(y1, float(h))
        if x1 - x0 < 2:  # box entirely outside the frame: fall back to the nearest 2-px strip
            x0 = min(max(x0, 0.0), w - 2.0); x1 = x0 + 2.0
        if y1 - y0 < 2:
            y0 = min(max(y0, 0.0), h - 2.0); y1 = y0 + 2.0
    return CropWindow(float(x0), float(y0), float(x1), float(y1), int(size))


def crop_image(frame: np.ndarray, window: CropWindow, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The window of ``frame`` resampled to ``size × size`` (same dtype and channels)."""
    return cv2.warpAffine(
        frame, window.affine(), (window.size, window.size), flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


def crop_mask(mask: np.ndarray, window: CropWindow) -> np.ndarray:
    """The window of a label map, nearest-neighbour: a bool mask stays bool, uint8 class indices
    (255 = ignore, as in first-frame adaptation's pseudo labels) keep their values."""
    out = crop_image(mask.astype(np.uint8), window, cv2.INTER_NEAREST)
    return out if mask.dtype == np.uint8 else out.astype(bool)


def paste_patch(patch: np.ndarray, window: CropWindow, frame_hw: tuple[int, int]) -> np.ndarray:
    """Map a patch-sized map (probabilities or mask) back into a frame-sized array (0 outside)."""
    h, w = frame_hw
    inv = cv2.invertAffineTransform(window.affine())
    src = patch.astype(np.float32)
    return cv2.warpAffine(src, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
