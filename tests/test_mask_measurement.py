"""The decoded mask's box as a second measurement of the motion: the Gaussian product, the noise
measured on frame 0's warps, and the tracker that fuses them (real computations, stand-in networks)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bmvtrack.agents.baselines import make_tracker
from bmvtrack.agents.baselines.motion_posterior import MotionPosteriorTracker
from bmvtrack.mask_measurement import MIN_STD, fuse, measure_noise, relative_measurement
from bmvtrack.models import ModelConfig
from bmvtrack.motion import RBox, fill_rbox, relative_between, rotated_iou


def test_fusing_two_equal_readings_averages_them_and_halves_the_covariance() -> None:
    cov = np.diag([0.01, 0.02, 0.03, 0.04, 0.05])
    a, b = np.full(5, 0.1), np.full(5, -0.1)
    mu, fused = fuse(a, cov, b, cov)
    np.testing.assert_allclose(mu, 0.0, atol=1e-12)
    np.testing.assert_allclose(fused, cov / 2, atol=1e-12)


def test_fusing_follows_the_sharper_reading_component_by_component() -> None:
    sharp, vague = 1e-6, 1.0
    cov = np.diag([sharp, sharp, vague, vague, vague])  # the posterior knows the scales only
    R = np.diag([vague, vague, sharp, sharp, sharp])  # the mask knows the rest
    mu, _ = fuse(np.full(5, 0.2), cov, np.full(5, -0.3), R)
    np.testing.assert_allclose(mu, [0.2, 0.2, -0.3, -0.3, -0.3], atol=1e-5)


def test_noise_is_the_mean_squared_error_with_a_floor_and_needs_half_the_warps() -> None:
    errors = np.array([[0.1, 0.0, 0.0, 0.2, -0.2], [-0.1, 0.0, 0.0, 0.2, 0.2]])
    noise = measure_noise(errors, np.array([5.0, 15.0]), drawn=4)
    assert noise is not None and noise.measured == 2
    np.testing.assert_allclose(np.diag(noise.R), [0.01, MIN_STD ** 2, MIN_STD ** 2, 0.04, 0.04])
    assert noise.posterior_scale == pytest.approx(2.0)  # mean Mahalanobis² 10 over 5 dimensions
    assert measure_noise(errors, np.array([5.0, 15.0]), drawn=5) is None


def test_the_mask_of_a_moved_box_reads_as_that_motion() -> None:
    box, moved = RBox(80, 60, 30, 20, 10), RBox(86, 57, 33, 19, 14)
    prob = fill_rbox(moved, (120, 160)).astype(np.float32)
    r = relative_measurement(prob, box, context=0.25)
    want = relative_between(box, moved, 0.25)
    np.testing.assert_allclose(r, want, atol=0.04)
    assert relative_measurement(np.zeros((120, 160), np.float32), box, 0.25) is None


class _StaysAndSegmentsBright(torch.nn.Module):
    """A stand-in motion network: μ′ always 0 (stay), the mask the search crop's bright pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = ModelConfig(input="pair", in_channels=7, patch_size=64, reference="box")
        self.register_buffer("prior_mean", torch.zeros(5))
        self.register_buffer("prior_cov", torch.diag(torch.tensor([1e-3, 1e-3, 1e-3, 4e-3, 4e-3])))
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, sample: bool = False) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        bright = x[:, 4:7].mean(1)
        logits = torch.zeros(b, 2, x.shape[-2], x.shape[-1])
        logits[:, 1] = 20.0 * (bright - 0.5)
        return {"mu": torch.zeros(b, 5), "cov": torch.eye(5).expand(b, 5, 5) * 1e-3, "logits": logits}


def _moving_square(frames: int = 12, step: float = 4.0) -> tuple[list[np.ndarray], list[RBox]]:
    out, boxes = [], []
    for t in range(frames):
        box = RBox(50 + step * t, 60 + 0.5 * step * t, 24, 24, 0)
        frame = np.full((120, 200, 3), 20, np.uint8)
        frame[fill_rbox(box, (120, 200))] = 235
        out.append(frame)
        boxes.append(box)
    return out, boxes


def _track(tracker: MotionPosteriorTracker, frames: list[np.ndarray], first: RBox) -> RBox:
    tracker.init(frames[0], first)
    box = first
    for frame in frames[1:]:
        box = tracker.update(frame)
    return box


def test_the_mask_pulls_the_box_where_the_motion_posterior_alone_stays() -> None:
    frames, boxes = _moving_square()
    plain = _track(MotionPosteriorTracker(_StaysAndSegmentsBright()), frames, boxes[0])
    fused_tracker = MotionPosteriorTracker(_StaysAndSegmentsBright(), measure="mask")
    fused = _track(fused_tracker, frames, boxes[0])
    assert rotated_iou(plain, boxes[-1]) < 0.1  # μ′ = 0 never moves
    assert rotated_iou(fused, boxes[-1]) > 0.7
    noise = fused_tracker.noise
    assert noise is not None and noise.measured == fused_tracker.calibration_warps
    assert noise.posterior_scale > 1.0  # a network that always says "stay" is overconfident on the warps
    _, cov = fused_tracker.last_posterior
    assert np.linalg.det(cov) < np.linalg.det(np.eye(5) * 1e-3 * noise.posterior_scale)


def test_the_mask_only_ablation_moves_onto_the_mask_box_without_measuring_noise() -> None:
    frames, boxes = _moving_square()
    tracker = MotionPosteriorTracker(_StaysAndSegmentsBright(), measure="mask-only")
    out = _track(tracker, frames, boxes[0])
    assert rotated_iou(out, boxes[-1]) > 0.8
    assert tracker.noise is None
    blank = [np.full_like(frames[0], 20)] * 3  # nothing bright: an empty mask, so μ′ (= stay) moves it
    assert rotated_iou(_track(tracker, blank, boxes[0]), boxes[0]) > 0.999


class _SegmentsBright(torch.nn.Module):
    """A stand-in single-crop segmenter: the crop's bright pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = ModelConfig(patch_size=64)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, sample: bool = False, generator: object = None) -> dict[str, torch.Tensor]:
        logits = torch.zeros(x.shape[0], 2, x.shape[-2], x.shape[-1])
        logits[:, 1] = 20.0 * (x[:, :3].mean(1) - 0.5)
        return {"logits": logits}


class _StaysAndSegmentsNothing(_StaysAndSegmentsBright):
    def forward(self, x: torch.Tensor, sample: bool = False) -> dict[str, torch.Tensor]:
        out = super().forward(x, sample)
        out["logits"] = torch.zeros_like(out["logits"])
        out["logits"][:, 0] = 5.0
        return out


def test_a_segmenter_measures_the_motion_where_the_own_decoder_sees_nothing() -> None:
    frames, boxes = _moving_square()
    own = MotionPosteriorTracker(_StaysAndSegmentsNothing(), measure="mask")
    assert rotated_iou(_track(own, frames, boxes[0]), boxes[-1]) < 0.1 and own.noise is None
    tracker = make_tracker("motion-segmentation-adapt", model=_StaysAndSegmentsNothing(), adapt=None,
                           segmenter=_SegmentsBright())
    assert rotated_iou(_track(tracker, frames, boxes[0]), boxes[-1]) > 0.7
    assert tracker.noise is not None and tracker.noise.measured == tracker.calibration_warps
    # the mask it reports is the segmenter's, the one it measured on (its own decoder sees nothing)
    truth = fill_rbox(boxes[-1], frames[-1].shape[:2])
    assert own.last_mask is not None and not own.last_mask.any()
    assert (tracker.last_mask & truth).sum() / (tracker.last_mask | truth).sum() > 0.8


def test_mask_trackers_are_registered_and_options_are_checked() -> None:
    net = _StaysAndSegmentsBright()
    assert make_tracker("motion-posterior-mask", model=net).measure == "mask"
    assert make_tracker("motion-mask-box", model=net).measure == "mask-only"
    with pytest.raises(ValueError, match="measure"):
        MotionPosteriorTracker(net, measure="colour")  # type: ignore[arg-type]
