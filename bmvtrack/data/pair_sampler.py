"""Training pairs for the motion posterior: a reference crop with its mask, the next frame's crop
through the same window, and the true box-relative motion between them.

An item is a frame t of a track whose object is also present at t + 1. Its pair is either

- **real**: frame t and its mask at a jittered box b̂_t, frame t + 1 through the same window; the
  target is the motion from b̂_t to the annotated box b_{t+1} (so a network learns to correct its
  own placement error as well as the object's motion); or
- **warped** (``PairConfig.warp_fraction`` of training items): frame t paired with itself warped
  by a motion drawn from the measured prior of box-relative motion, so the supply of pairs with
  exactly known motion is unlimited and covers the whole prior, not only the few hundred real
  steps of a small dataset.

A real pair's reference box may instead be one a tracker actually held there (``PairConfig.rollouts``:
``evaluate`` runs of a tracker on the training split): DAgger's idea, so that the network learns
the correction from the boxes its own tracking reaches — far heavier-tailed than any jitter — and
not only from boxes jittered around the annotation.

Arrays are uint8 ``(S, S, 7)``: reference RGB, reference mask (0/255), search RGB; the label is the
search crop's mask, the target ``r`` the box-relative motion (``bmvtrack.motion.relative_between``).
Numpy only, like ``patch_sampler``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from bmvtrack.data.patch_sampler import AugmentConfig, _colour_jitter, jitter_box
from bmvtrack.data.patches import crop_window
from bmvtrack.data.readers import Track, VideoDataset
from bmvtrack.motion import (
    RELATIVE_MIRROR, RBox, apply_relative, box_warp, boxes_from_masks, canonicalize, fill_rbox, relative_between,
)

PAIR_CHANNELS = 7  # reference RGB, reference mask, search RGB

# A rollout box is a training reference only where the network can see where the object goes: the
# true box at t + 1 centred inside the window (|Δc| ≤ half the window) and each side within
# ``PairConfig.rollout_max_scale`` (a tracker's box drifts in size far more than in place: on DAVIS a
# motion tracker's boxes on its own training sequences are off by over 2× in about half the frames).
_ROLLOUT_MAX_SHIFT, ROLLOUT_MAX_SCALE = 0.5, 4.0


@dataclass
class PairConfig:
    """How training pairs are made (``input: pair`` models)."""

    warp_fraction: float = 0.5  # share of training pairs that are a frame and its own warp by a prior draw
    warp_scale: float = 1.0  # the prior's covariance is scaled by this squared for the warp draws
    mask_noise: float = 0.3  # probability of eroding or dilating the reference mask (a tracker's own mask is imperfect)
    # evaluate run folders of a tracker on `data`'s training split: the boxes it held are reference boxes of real pairs
    rollouts: list[str] = field(default_factory=list)
    # share of real pairs whose reference box is a rollout's (where one is usable; the others are jittered)
    rollout_fraction: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})
    # a rollout box whose sides are off by more than this factor is left out (the network sees too little of the object)
    rollout_max_scale: float = field(default=ROLLOUT_MAX_SCALE, metadata={"gt": 1.0})


def usable_reference(ref: RBox, target: RBox, context: float, max_scale: float = ROLLOUT_MAX_SCALE) -> bool:
    """Whether a network at ``ref`` can learn the move onto ``target`` (``target`` in the form
    closest to ``ref``'s angle, as ``rollout_target`` gives it; see ``_ROLLOUT_MAX_SHIFT``)."""
    r = relative_between(ref, rollout_target(ref, target), context)
    limit = math.log(max_scale)
    return bool(np.all(np.isfinite(r)) and abs(r[3]) <= _ROLLOUT_MAX_SHIFT and abs(r[4]) <= _ROLLOUT_MAX_SHIFT
                and abs(r[0]) <= limit and abs(r[1]) <= limit)


def rollout_target(ref: RBox, target: RBox) -> RBox:
    """``target`` written as the equivalent box whose angle is within 45° of ``ref``'s: a tracker's
    angle accumulates freely, and the move it should learn is the smallest turn (sinθ one-to-one)."""
    return canonicalize(target, ref.angle)


def rollout_references(folders: list[str], tracks: list[Track], boxes: list[list[RBox | None]], context: float,
                       max_scale: float = ROLLOUT_MAX_SCALE) -> dict[tuple[int, int], list[RBox]]:
    """For each item (track index, frame t): the boxes trackers held at frame t in ``folders``
    (``evaluate`` runs), usable as reference boxes for the move onto the annotation at t + 1.

    The box held at t is the one the tracker started its step to t + 1 from: its output at t, or
    the perturbed box it was re-initialised on before t + 1 (the perturbation protocol). Tracks of a
    run that are not in the training data are skipped; a run with none of them is an error.
    """
    from bmvtrack.evaluate import load_run_results

    index = {tr.name: ti for ti, tr in enumerate(tracks)}
    refs: dict[tuple[int, int], list[RBox]] = {}
    for folder in folders:
        matched = 0
        for res in load_run_results(folder):
            ti = index.get(res.sequence)
            if ti is None:
                continue
            matched += 1
            frame_of = {name: i for i, name in enumerate(tracks[ti].frame_names)}
            held = {t: row for t, row in enumerate(res.boxes)}
            for f, row in zip(res.perturbed_frames, res.perturbed_boxes):
                held[f - 1] = row
            for t, row in held.items():
                fi = frame_of.get(res.frame_names[t]) if t < len(res.frame_names) else None
                if fi is None or fi + 1 >= len(boxes[ti]) or boxes[ti][fi + 1] is None or not np.all(np.isfinite(row)):
                    continue
                ref = RBox(*(float(v) for v in row))
                if ref.w > 0 and ref.h > 0 and usable_reference(ref, boxes[ti][fi + 1], context, max_scale):
                    refs.setdefault((ti, fi), []).append(ref)
        if not matched:
            from bmvtrack.data.images import DatasetError

            raise DatasetError(f"{Path(folder)}: none of its tracks is in the training data (pairs.rollouts)")
    return refs


def _window_affine(box: RBox, frame_hw: tuple[int, int], size: int, context: float) -> np.ndarray:
    """3×3 map from frame pixels to the crop of the unclipped window around ``box``."""
    m = np.eye(3)
    m[:2] = crop_window(box, frame_hw, size, context, clip=False).affine()
    return m


def _warp(img: np.ndarray, m: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(img, m[:2], (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def pair_crops(ref_frame: np.ndarray, ref_mask: np.ndarray, search_frame: np.ndarray, box: RBox, size: int,
               context: float = 0.25, search_warp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``(S, S, 7)`` network input around ``box`` and the 2×3 map from the search frame to its crop
    (through ``search_warp`` when given: the search frame is then warped first, as in warped
    training pairs). Shared by training and the tracker, so both cut exactly the same crops.
    """
    m = _window_affine(box, ref_frame.shape[:2], size, context)
    ms = m if search_warp is None else m @ np.vstack([search_warp, [0.0, 0.0, 1.0]])
    ref = _warp(ref_frame, m, size)
    mask = _warp(ref_mask.astype(np.uint8) * 255 if ref_mask.dtype == bool else ref_mask, m, size, nearest=True)
    search = _warp(search_frame, ms, size)
    return np.concatenate([ref, mask[..., None], search], axis=-1), ms[:2]


class PairSampler:
    """Index of (track, frame t) with the object present at t and t + 1; ``sample(i, rng)`` → pair."""

    def __init__(self, ds: VideoDataset, size: int, aug: AugmentConfig | None = None, box_method: str = "minarearect",
                 pairs: PairConfig | None = None, prior_mean: np.ndarray | None = None,
                 prior_cov: np.ndarray | None = None, reference: Literal["mask", "box"] = "mask") -> None:
        self.ds, self.size, self.aug, self.pairs = ds, size, aug or AugmentConfig(), pairs or PairConfig()
        self.reference = reference  # the reference channel: the object's mask, or the reference box filled in
        self.prior_mean: np.ndarray | None = None
        self.prior_chol: np.ndarray | None = None
        if prior_mean is not None and prior_cov is not None:
            self.use_prior(prior_mean, prior_cov)
        self.items: list[tuple[int, int]] = []
        self.boxes: list[list[RBox | None]] = []
        for ti, tr in enumerate(ds.tracks()):
            boxes = boxes_from_masks((ds.mask(tr, i) if tr.present[i] else None for i in range(len(tr))), box_method)
            self.boxes.append(boxes)
            self.items.extend((ti, fi) for fi in range(len(boxes) - 1)
                              if boxes[fi] is not None and boxes[fi + 1] is not None)
        self.rollout_refs = (rollout_references(self.pairs.rollouts, ds.tracks(), self.boxes, self.aug.context,
                                                self.pairs.rollout_max_scale) if self.pairs.rollouts else {})
        if not self.items:
            from bmvtrack.data.images import DatasetError

            raise DatasetError(f"{ds.root}: no two consecutive annotated frames of an object to make pairs from")

    def use_prior(self, mean: np.ndarray, cov: np.ndarray) -> None:
        """The box-relative prior N(mean, cov) that warped pairs draw their motion from."""
        self.prior_mean = np.asarray(mean, dtype=np.float64).reshape(5)
        self.prior_chol = np.linalg.cholesky(np.asarray(cov, dtype=np.float64).reshape(5, 5))

    def __len__(self) -> int:
        return len(self.items)

    def sequence_of(self, index: int) -> str:
        return self.ds.tracks()[self.items[index][0]].sequence

    def sample(self, index: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(S, S, 7)`` uint8 pair, ``(S, S)`` bool search mask, float32 5-vector ``r``.

        ``rng=None``: the real pair at the annotated box, no augmentation (validation).
        """
        ti, fi = self.items[index]
        tr = self.ds.tracks()[ti]
        frame, mask, box = self.ds.frame(tr, fi), self.ds.mask(tr, fi), self.boxes[ti][fi]
        ref_box = None  # jittered around the annotation
        warped = rng is not None and self.pairs.warp_fraction > 0 and rng.random() < self.pairs.warp_fraction
        if warped:
            if self.prior_mean is None or self.prior_chol is None:
                raise RuntimeError("warped pairs need the box-relative prior: call use_prior first")
            target, warp = draw_warp(box, self.prior_mean, self.pairs.warp_scale * self.prior_chol,
                                     self.aug.context, rng)
            search_frame, search_mask = frame, mask
        else:
            target, warp = self.boxes[ti][fi + 1], None
            search_frame, search_mask = self.ds.frame(tr, fi + 1), self.ds.mask(tr, fi + 1)
            held = self.rollout_refs.get((ti, fi))
            if rng is not None and held and rng.random() < self.pairs.rollout_fraction:
                ref_box = held[int(rng.integers(len(held)))]
                target = rollout_target(ref_box, target)
        x, label, r = make_pair(frame, mask, box, search_frame, search_mask, target, self.size, self.aug,
                                self.reference, rng, warp, self.pairs.mask_noise, ref_box)
        return x, label.astype(bool), r


def draw_warp(box: RBox, mean: np.ndarray, chol: np.ndarray, context: float,
              rng: np.random.Generator) -> tuple[RBox, np.ndarray]:
    """A box-relative motion drawn from N(mean, chol·cholᵀ) (sinθ kept within ±0.7): the box it moves
    ``box`` to and the 2×3 warp of the frame that carries ``box``'s content there."""
    r = mean + chol @ rng.standard_normal(5)
    r[2] = np.clip(r[2], -0.7, 0.7)
    target = apply_relative(box, r, context)
    return target, box_warp(box, target)


def make_pair(frame: np.ndarray, mask: np.ndarray, box: RBox, search_frame: np.ndarray, search_mask: np.ndarray,
              target: RBox, size: int, aug: AugmentConfig, reference: Literal["mask", "box"],
              rng: np.random.Generator | None, search_warp: np.ndarray | None = None,
              mask_noise: float = 0.0, ref_box: RBox | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training pair: ``(S, S, 7)`` uint8 input, ``(S, S)`` uint8 label (``search_mask``'s values
    through the search crop; 0 outside the frame), float32 box-relative motion onto ``target``.

    With ``rng`` the reference box is jittered (``ref_box``, a box a tracker held, is taken as it
    is), the reference mask eroded or dilated (``mask_noise``), and the pair flipped and
    colour-jittered as ``aug`` says. Shared by pretraining and the motion
    network's first-frame adaptation (``bmvtrack.adaptation``), so both see the same pairs.
    """
    if ref_box is None:
        ref_box = box if rng is None else jitter_box(box, rng, aug)
    if rng is not None:
        mask = noisy_mask(mask, mask_noise, rng)
    ref_channel = fill_rbox(ref_box, frame.shape[:2]) if reference == "box" else mask
    x, to_search = pair_crops(frame, ref_channel, search_frame, ref_box, size, aug.context, search_warp)
    label = _warp(search_mask.astype(np.uint8), to_search, size, nearest=True)
    r = relative_between(ref_box, target, aug.context)
    if rng is not None:
        if aug.flip and rng.random() < 0.5:
            x, label, r = x[:, ::-1], label[:, ::-1], r * RELATIVE_MIRROR
        if aug.colour > 0:  # one photometric change for both frames, as in a real clip
            both = _colour_jitter(np.concatenate([x[..., :3], x[..., 4:]], axis=1), rng, aug.colour)
            x = np.concatenate([both[:, :size], x[..., 3:4], both[:, size:]], axis=-1)
    return np.ascontiguousarray(x), np.ascontiguousarray(label), r.astype(np.float32)


def noisy_mask(mask: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """``mask`` eroded or dilated with probability ``p`` (a tracker's own mask is imperfect)."""
    if p <= 0 or rng.random() >= p:
        return mask
    k = int(rng.integers(1, 4)) * 2 + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    op = cv2.dilate if rng.random() < 0.5 else cv2.erode
    return op(mask.astype(np.uint8), kernel) > 0
