"""The posterior-mean tracker: the box moved by the motion posterior's μ′ every frame, nothing else.

A βMVUnet trained with ``model.input: pair`` reads frame t's crop at the current box with that
frame's mask, and frame t+1 through the same window; its bottleneck is a full-covariance Gaussian
N(μ′, Σ′) over the box-relative motion between the two (``bmvtrack.motion.relative_between``),
its decoder the object's mask in frame t+1. Each ``update`` moves the box by μ′
(``apply_relative``, exactly the environment's ``G_t`` of ``last_action``) and keeps the decoded mask
as the next reference mask. No classical tracker, no RL: it shows what the latent alone carries.

At ``init`` only the box is known, so the first reference mask is the rotated box filled in (the
same information every other tracker gets). A network trained with ``reference: box`` always sees
the box it holds filled in, so its motion never depends on its own decoded masks. After each update the tracker exposes ``last_mask``
(the decoded mask, for J&F), ``last_posterior`` (μ′ and Σ′ in box-relative units) and
``last_action`` (the ``G_t`` that moved the box).

With ``adapt`` (``motion-posterior-adapt``, ours) the network is first fine-tuned on the track's first
frame knowing only its box (``bmvtrack.adaptation.adapt_motion_net``: frame 0 and its own warps). The
copy is made at the first ``init`` and kept when the tracker is re-initialised within the track
(the perturbation protocol): the object is the same one.

With ``measure="mask"`` (``motion-posterior-mask``, ours) the box fitted to the decoded mask is a
second reading of the same motion: μ′ and Σ′ are fused with it as a Kalman update does
(``bmvtrack.mask_measurement``), its noise measured at the first ``init`` on frame 0's own warps
(``calibration_warps`` of them, drawn from the network's prior). ``last_posterior`` is then the
fused Gaussian. The motion says where the object went; the mask pulls a drifted box back.
With a ``segmenter`` (a single-crop βMVUnet; ``motion-segmentation-adapt``) the measurement is the
box the segmentation tracker fits to that network's mask at the box held (``track_step``), the
network adapted as ``segmentation-adapt`` adapts it: the best mask the project has, with μ′ beside it;
``last_mask`` is then that network's mask, the one the box was measured on.
``measure="mask-only"`` (``motion-mask-box``) is its ablation: the box moves onto the decoded
mask's box, by μ′ only where the mask is empty — what the fusion adds over the mask alone.
``hold_shape`` (``motion-posterior-centre``) moves only the box's centre, its size and angle held:
what μ′'s scale and turn add (``last_posterior`` stays the network's).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from bmvtrack.adaptation import AdaptConfig, adapt_to_box, network_prior
from bmvtrack.data.pair_sampler import draw_warp, pair_crops
from bmvtrack.data.patch_sampler import jitter_box
from bmvtrack.mask_measurement import MaskNoise, fuse, measure_noise, relative_measurement
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import (RELATIVE_MIRROR, RBox, apply_relative, fill_rbox, keep_in_reach, motion_between,
                             relative_between)
from bmvtrack.segmentation import StepResult, foreground_prob, track_step


def load_motion_posterior(checkpoint: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """A pretraining checkpoint of a motion posterior (``model.input: pair``), loaded for tracking.

    Any other checkpoint is a one-line ``CheckpointError`` naming the file.
    """
    from bmvtrack.checkpoint import CheckpointError
    from bmvtrack.segmentation import load_segmenter

    model, cfg = load_segmenter(checkpoint, device)
    if cfg.input != "pair":
        raise CheckpointError(f"{checkpoint}: a single-crop βMVUnet (model.input {cfg.input}); the motion-posterior "
                              "tracker needs one trained with model.input: pair (configs/pretrain_motion*.yaml)")
    return model, cfg


def mirrored_mixture(mus: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Gaussian from the posteriors of a pair and of its mirror image (test-time flip).

    The mirror's posterior is mapped back (sinθ and Δx change sign) and the two are merged as an
    equal mixture, moment-matched: the mean of the means, the mean covariance plus their spread.
    What the network reads from an object's look alone (a boat facing left "moves left") cancels.
    """
    m2 = mus[1] * RELATIVE_MIRROR
    c2 = covs[1] * np.outer(RELATIVE_MIRROR, RELATIVE_MIRROR)
    d = mus[0] - m2
    return 0.5 * (mus[0] + m2), 0.5 * (covs[0] + c2) + 0.25 * np.outer(d, d)


class MotionPosteriorTracker:
    """Box tracker from a motion-posterior βMVUnet (a checkpoint path or a loaded model)."""

    uses_ground_truth = False

    def __init__(self, checkpoint: str | Path | Any, context: float = 0.25, threshold: float = 0.5,
                 device: str = "cpu", name: str = "motion-posterior", flip: bool = False,
                 adapt: AdaptConfig | None = None, measure: Literal["none", "mask", "mask-only"] = "none",
                 calibration_warps: int = 16, seed: int = 0, segmenter: Any | None = None,
                 hold_shape: bool = False) -> None:
        if isinstance(checkpoint, (str, Path)):
            self.model, cfg = load_motion_posterior(checkpoint, device)
        else:
            self.model, cfg = checkpoint, checkpoint.cfg
        self.adapt = adapt if adapt is not None and adapt.steps > 0 else None
        self._adapted = False
        if cfg.input != "pair":
            raise ValueError("the motion-posterior tracker needs a model trained with model.input: pair")
        self.size = cfg.patch_size
        self.reference = cfg.reference
        self.context, self.threshold, self.name, self.flip = context, threshold, name, flip
        self.hold_shape = hold_shape
        if measure not in ("none", "mask", "mask-only") or calibration_warps < 2:
            raise ValueError(f"measure must be 'none', 'mask' or 'mask-only' and calibration_warps ≥ 2, "
                             f"got {measure!r}, {calibration_warps}")
        self.measure, self.calibration_warps, self.seed = measure, calibration_warps, seed
        self.noise: MaskNoise | None = None  # the mask box's noise on frame 0's warps (measure="mask")
        self._calibrated = False
        self.segmenter = segmenter  # measure the motion with this network's mask box instead of the decoder's
        self._segmenter_adapted = False
        self.device = next(self.model.parameters()).device
        self._box: RBox | None = None
        self._frame: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self.last_mask: np.ndarray | None = None
        self.last_aabb = None  # the rotated box's corner bounds are its axis-aligned box
        self.last_posterior: tuple[np.ndarray, np.ndarray] | None = None
        self.last_action: np.ndarray | None = None
        self.last_patch_prob: np.ndarray | None = None  # the decoder's P(object) over the search crop
        self.last_prob: np.ndarray | None = None  # the same pasted into the frame (H×W float32; the segmenter's with one)

    @property
    def box(self) -> RBox | None:
        """The current box (after the last update)."""
        return self._box

    def reference_mask(self, mask: np.ndarray) -> None:
        """Replace the next pair's reference mask (e.g. by the annotation, when scoring with the
        annotation's crop); a network whose reference is the box keeps the box."""
        if self.reference == "mask":
            self._mask = np.asarray(mask, dtype=bool)

    def init(self, frame: np.ndarray, box: RBox) -> None:
        """Start at ``box``; the reference mask is the box filled in (with ``adapt``, the first
        ``init`` fine-tunes a copy of the network on ``frame`` first)."""
        if self.adapt is not None and not self._adapted:
            self.model, self._adapted = adapt_to_box(self.model, frame, box, self.adapt), True
        if self.segmenter is not None and self.adapt is not None and not self._segmenter_adapted:
            self.segmenter, self._segmenter_adapted = adapt_to_box(self.segmenter, frame, box, self.adapt), True
        if self.measure == "mask" and not self._calibrated:
            self.noise, self._calibrated = self._measure_noise(frame, box), True
        self._box, self._frame = box, frame
        self._mask = fill_rbox(box, frame.shape[:2])
        self.last_mask = self.last_posterior = self.last_action = self.last_prob = self.last_patch_prob = None

    def _posteriors(self, pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray, RBox]]
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """μ′, Σ′, the S×S P(object) and the frame→crop map of each (reference frame, reference mask,
        search frame, box) pair, in one forward pass (with ``flip``, each beside its mirror image)."""
        crops = [pair_crops(f0, m0, f1, b, self.size, self.context) for f0, m0, f1, b in pairs]
        xs = [x for x, _ in crops]
        batch = np.stack([v for x in xs for v in ((x, x[:, ::-1]) if self.flip else (x,))])
        out = self.model(patches_to_tensor(batch, self.device), sample=False)
        mus, covs = out["mu"].double().cpu().numpy(), out["cov"].double().cpu().numpy()
        probs = foreground_prob(out["logits"]).cpu().numpy()
        results = []
        for i, (_, crop) in enumerate(crops):
            if self.flip:
                mu, cov = mirrored_mixture(mus[2 * i:2 * i + 2], covs[2 * i:2 * i + 2])
                prob = 0.5 * (probs[2 * i] + probs[2 * i + 1][:, ::-1])
            else:
                mu, cov, prob = mus[i], covs[i], probs[i]
            results.append((mu, cov, prob, crop))
        return results

    def _paste(self, prob: np.ndarray, crop: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        return cv2.warpAffine(prob, cv2.invertAffineTransform(crop), (hw[1], hw[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def _measure(self, frame: np.ndarray, box: RBox, pasted: np.ndarray) -> tuple[np.ndarray | None, StepResult | None]:
        """The mask's box as a box-relative move from ``box`` (None: empty mask): the segmenter's
        (``track_step`` at ``box``, returned too) when there is one, else the box of ``pasted``, this
        network's decoded map."""
        if self.segmenter is None:
            return relative_measurement(pasted, box, self.context, self.threshold), None
        step = track_step(self.segmenter, frame, box, self.threshold, self.context)
        return (None if step.box is None else relative_between(box, step.box, self.context)), step

    @torch.no_grad()
    def _measure_noise(self, frame: np.ndarray, box: RBox) -> MaskNoise | None:
        """The mask box's noise and Σ′'s scale on frame 0 paired with its own warps: each warp drawn
        from the network's prior (× the adaptation's ``warp_scale``), the reference box off-centre as
        in adaptation, the true motion known."""
        h, w = frame.shape[:2]
        mean, cov = network_prior(self.model)
        adapt = self.adapt or AdaptConfig()
        chol = adapt.warp_scale * np.linalg.cholesky(cov)
        rng = np.random.default_rng(self.seed)
        pairs, truths = [], []
        for _ in range(self.calibration_warps):
            ref = jitter_box(box, rng, adapt.pair_augment)
            target, warp = draw_warp(box, mean, chol, self.context, rng)
            search = cv2.warpAffine(frame, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            pairs.append((frame, fill_rbox(ref, (h, w)), search, ref))
            truths.append(relative_between(ref, target, self.context))
        errors, maha = [], []
        for (mu, cov, prob, crop), (_, _, search, ref), r in zip(self._posteriors(pairs), pairs, truths):
            d = r - mu
            maha.append(float(d @ np.linalg.solve(cov, d)))
            r_m, _ = self._measure(search, ref, self._paste(prob, crop, (h, w)))
            if r_m is not None:
                errors.append(r_m - r)
        return measure_noise(np.array(errors), np.array(maha), self.calibration_warps)

    @torch.no_grad()
    def update(self, frame: np.ndarray) -> RBox:
        """Move the box by μ′ of the pair (previous frame and mask, this frame); with
        ``measure="mask"``, by μ′ fused with the decoded mask's box."""
        if self._box is None or self._frame is None or self._mask is None:
            raise RuntimeError("MotionPosteriorTracker.update called before init")
        h, w = frame.shape[:2]
        mu, cov, prob, crop = self._posteriors([(self._frame, self._mask, frame, self._box)])[0]
        pasted = self._paste(prob, crop, (h, w))
        if self.noise is not None or self.measure == "mask-only":
            r_m, step = self._measure(frame, self._box, pasted)
            if step is not None:  # the mask tracked (last_mask, last_prob) is the one measured: the segmenter's
                pasted = step.prob
            if r_m is not None and self.noise is not None:
                mu, cov = fuse(mu, cov * self.noise.posterior_scale, r_m, self.noise.R)
            elif r_m is not None:
                mu = r_m
        self.last_posterior = (mu, cov)
        move = np.concatenate([np.zeros(3), mu[3:]]) if self.hold_shape else mu
        box = keep_in_reach(apply_relative(self._box, move, self.context), (h, w))
        self.last_action = motion_between(self._box, box, w, h)
        mask = pasted > self.threshold
        self.last_mask, self.last_prob, self.last_patch_prob = mask, pasted, prob
        self._mask = mask if mask.any() and self.reference == "mask" else fill_rbox(box, (h, w))
        self._box, self._frame = box, frame
        return box
