"""The decoded mask's box as a second measurement of the motion, fused with the motion posterior.

Why: a motion posterior trained from an exactly placed reference box predicts the motion best and
tracks worst — nothing pulls a drifted box back — while the box fitted to the decoder's mask
re-centres every frame but follows any look-alike. The two are independent readings of the same
box-relative motion ``r`` (``bmvtrack.motion.relative_between``): the network's N(μ′, Σ′) and the
mask's box ``r_m`` with noise N(0, R). Their product is the Gaussian a Kalman update gives,

    Σ = (Σ′⁻¹ + R⁻¹)⁻¹,   μ = Σ (Σ′⁻¹ μ′ + R⁻¹ r_m),

so each component follows whichever reading is sharper there. R is not a tuned constant: it is
measured per track on frame 0's own warps (``measure_noise``), the only frame whose motion a
tracker knows, together with one scale for Σ′ (its mean squared Mahalanobis distance over 5, so
the two readings are weighed on the same footing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bmvtrack.motion import RBox, fill_rbox, relative_between
from bmvtrack.segmentation import box_from_prob

MIN_STD = 1.0 / 96.0  # a noise floor of about one pixel of the default 96-pixel crop, in relative units


@dataclass(frozen=True)
class MaskNoise:
    """What frame 0's warps showed: the mask box's per-component noise ``R`` (diagonal; mean squared
    error, bias included) and the factor ``posterior_scale`` that calibrates Σ′ (1 = as trained)."""

    R: np.ndarray
    posterior_scale: float
    measured: int  # warps whose mask gave a box (of those drawn)


def mask_box(prob: np.ndarray, box: RBox, threshold: float = 0.5) -> RBox | None:
    """The rotated box of ``prob > threshold`` (frame-sized), fitted to the pieces touching ``box``
    (``keep="overlap"``, as the segmentation tracker), its angle the one closest to ``box``'s."""
    return box_from_prob(prob, threshold, keep="overlap", reference_angle=box.angle,
                         anchor=fill_rbox(box, prob.shape[:2]))


def measure_noise(errors: np.ndarray, mahalanobis_sq: np.ndarray, drawn: int) -> MaskNoise | None:
    """``MaskNoise`` from the mask box's errors (k × 5, against the true warp) and Σ′'s squared
    Mahalanobis distances of the true warps; None when fewer than half the warps gave a box."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1, 5)
    if len(errors) < max(2, (drawn + 1) // 2):
        return None
    var = np.maximum((errors ** 2).mean(axis=0), MIN_STD ** 2)
    scale = float(np.mean(mahalanobis_sq) / 5.0) if len(mahalanobis_sq) else 1.0
    return MaskNoise(np.diag(var), max(scale, 1e-3), len(errors))


def fuse(mu: np.ndarray, cov: np.ndarray, r_m: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The product of N(μ′, Σ′) and the measurement N(r_m, R): the fused mean and covariance."""
    cov_inv, r_inv = np.linalg.inv(cov), np.linalg.inv(R)
    fused_cov = np.linalg.inv(cov_inv + r_inv)
    fused_cov = 0.5 * (fused_cov + fused_cov.T)
    return fused_cov @ (cov_inv @ mu + r_inv @ r_m), fused_cov


def relative_measurement(prob: np.ndarray, box: RBox, context: float, threshold: float = 0.5) -> np.ndarray | None:
    """The mask's box as a box-relative motion from ``box`` (None when the mask is empty)."""
    found = mask_box(prob, box, threshold)
    return None if found is None else relative_between(box, found, context)
