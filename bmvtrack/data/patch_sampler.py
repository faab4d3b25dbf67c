"""Training patches for the βMVAE / βMVUnet: object-centred crops with box jitter and photometric noise.

Why on the fly: crops come from the decoded-frame cache with one affine warp each (tens of µs), so
every epoch sees new jitter, flips and colours at no storage cost. Box jitter matters because at
tracking time the crop is placed at a predicted box, not the annotated one.
Numpy only: the data layer knows nothing of learning.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bmvtrack.data.patches import crop_image, crop_mask, crop_window
from bmvtrack.data.readers import VideoDataset
from bmvtrack.motion import RBox, boxes_from_masks


@dataclass
class AugmentConfig:
    """Augmentations of training patches (all off gives the paper's plain crop)."""

    jitter_shift: float = 0.15  # centre shift, fraction of the box size (std)
    jitter_scale: float = 0.15  # log-scale std of the box size
    flip: bool = True  # random horizontal flips
    colour: float = 0.2  # brightness/contrast/saturation jitter amplitude
    context: float = 0.25  # crop padding per side as a fraction of (w + h) (paper: 1/4)
    rotate: float = 0.0  # random rotation of patch and mask, uniform in ± this many degrees (0 = off)
    blur: float = 0.0  # probability of a Gaussian blur (σ 0.5–1.5 px): motion and focus blur of real video


class PatchSampler:
    """Index of (track, frame) pairs where the object is present; ``sample(i, rng)`` → patch, mask."""

    def __init__(self, ds: VideoDataset, size: int, aug: AugmentConfig | None = None, box_method: str = "minarearect") -> None:
        self.ds, self.size, self.aug = ds, size, aug or AugmentConfig()
        self.items: list[tuple[int, int]] = []
        self.boxes: list[list[RBox | None]] = []
        for ti, tr in enumerate(ds.tracks()):
            boxes = boxes_from_masks((ds.mask(tr, i) if tr.present[i] else None for i in range(len(tr))), box_method)
            self.boxes.append(boxes)
            self.items.extend((ti, fi) for fi, b in enumerate(boxes) if b is not None)
        if not self.items:
            from bmvtrack.data.images import DatasetError

            raise DatasetError(f"{ds.root}: no annotated object frames to make patches from")

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(S, S, 3) uint8 patch and (S, S) bool mask; ``rng=None`` gives the deterministic paper crop."""
        ti, fi = self.items[index]
        tr = self.ds.tracks()[ti]
        return augmented_patch(self.ds.frame(tr, fi), self.ds.mask(tr, fi), self.boxes[ti][fi], self.size, self.aug, rng)

    def sequence_of(self, index: int) -> str:
        return self.ds.tracks()[self.items[index][0]].sequence


def augmented_patch(frame: np.ndarray, mask: np.ndarray, box: RBox, size: int, aug: AugmentConfig,
                    rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """One object-centred (S, S, 3) uint8 patch and (S, S) label of ``frame`` around ``box``.

    A bool ``mask`` gives a bool label; a uint8 one (class indices, 255 = ignore) keeps its values.

    ``rng=None`` gives the paper's plain crop; otherwise the box is jittered and the patch flipped,
    rotated, colour-jittered and blurred as ``aug`` says. Shared by pretraining and first-frame
    adaptation (``bmvtrack.adaptation``), so both see the same augmentations.
    """
    a = aug
    if rng is not None:
        box = jitter_box(box, rng, a)
    win = crop_window(box, frame.shape[:2], size, a.context)
    patch = crop_image(frame, win)
    label = crop_mask(mask, win)
    if rng is not None:
        if a.flip and rng.random() < 0.5:
            patch, label = patch[:, ::-1], label[:, ::-1]
        if a.rotate > 0:
            patch, label = _rotate(patch, label, float(rng.uniform(-a.rotate, a.rotate)))
        if a.colour > 0:
            patch = _colour_jitter(patch, rng, a.colour)
        if a.blur > 0 and rng.random() < a.blur:
            patch = cv2.GaussianBlur(patch, (0, 0), float(rng.uniform(0.5, 1.5)))
    return np.ascontiguousarray(patch), np.ascontiguousarray(label)


def jitter_box(box: RBox, rng: np.random.Generator, aug: AugmentConfig) -> RBox:
    """``box`` misplaced as a tracker would: centre shifted by N(0, jitter_shift)·max(w, h), each side
    scaled by exp(N(0, jitter_scale)), angle kept."""
    s = max(box.w, box.h)
    return RBox(box.cx + rng.normal(0, aug.jitter_shift) * s, box.cy + rng.normal(0, aug.jitter_shift) * s,
                box.w * float(np.exp(rng.normal(0, aug.jitter_scale))),
                box.h * float(np.exp(rng.normal(0, aug.jitter_scale))), box.angle)


def _rotate(patch: np.ndarray, mask: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate patch and mask together about the centre; borders are mirrored in both, so labels stay true."""
    s = patch.shape[0]
    m = cv2.getRotationMatrix2D(((s - 1) / 2, (s - 1) / 2), degrees, 1.0)
    patch = cv2.warpAffine(patch, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    rotated = cv2.warpAffine(mask.astype(np.uint8), m, (s, s), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    return patch, rotated.astype(mask.dtype)


def _colour_jitter(patch: np.ndarray, rng: np.random.Generator, amp: float) -> np.ndarray:
    x = patch.astype(np.float32)
    grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
    x = grey + (x - grey) * (1 + rng.uniform(-amp, amp))  # saturation
    x = (x - x.mean()) * (1 + rng.uniform(-amp, amp)) + x.mean()  # contrast
    x = x * (1 + rng.uniform(-amp, amp))  # brightness
    return np.clip(x, 0, 255).astype(np.uint8)
