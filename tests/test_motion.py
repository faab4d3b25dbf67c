"""The motion model: G_t round trip, the typo'd equation failing, angle convention, IoU, prior."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmvtrack.motion import (
    MotionPrior, PriorError, RBox, aabb_iou, apply_motion, boxes_from_masks, canonicalize, motion_between,
    motion_within, rbox_corners, rbox_ellipse_xyxy, rbox_from_mask, rbox_to_xyxy, rotated_iou, track_motions,
)

W, H = 640, 480
coords = st.floats(-200, 900, allow_nan=False)
sides = st.floats(2, 300, allow_nan=False)
angles = st.floats(-180, 180, allow_nan=False)


def _close(a: RBox, b: RBox, tol: float = 1e-6) -> bool:
    return np.allclose(a.as_array(), b.as_array(), atol=tol * max(1.0, np.abs(b.as_array()).max()))


@settings(max_examples=300, deadline=None)
@given(coords, coords, sides, sides, angles, coords, coords, sides, sides, st.floats(-89, 89))
def test_apply_inverts_motion_between(x0, y0, w0, h0, a0, x1, y1, w1, h1, dth):
    b0 = RBox(x0, y0, w0, h0, a0)
    b1 = RBox(x1, y1, w1, h1, a0 + dth)
    g = motion_between(b0, b1, W, H)
    assert _close(apply_motion(b0, g, W, H), b1)


def _typo_motion(b0: RBox, b1: RBox) -> np.ndarray:
    """The paper's printed equation: y where x belongs in the first term of t_x."""
    sx, sy, th = b1.w / b0.w, b1.h / b0.h, math.radians(b1.angle - b0.angle)
    tx = b1.cx - (b0.cy * sx * math.cos(th) - b0.cy * sy * math.sin(th))
    ty = b1.cy - (b0.cx * sx * math.sin(th) + b0.cy * sy * math.cos(th))
    return np.array([sx, sy, math.sin(th), tx / W, ty / H])


def test_printed_typo_fails_the_round_trip():
    b0, b1 = RBox(300, 100, 40, 20, 5), RBox(310, 104, 42, 21, 8)
    assert rotated_iou(apply_motion(b0, motion_between(b0, b1, W, H), W, H), b1) > 0.9999
    assert rotated_iou(apply_motion(b0, _typo_motion(b0, b1), W, H), b1) < 0.5


LOW = np.array([0.05, 0.05, -0.96, -0.5, -0.5])
HIGH = np.array([1.97, 1.98, 0.96, 0.5, 0.5])


def _between(x: float, a: float, b: float) -> bool:
    return min(a, b) - 1e-6 <= x <= max(a, b) + 1e-6


@settings(max_examples=300, deadline=None)
@given(st.floats(50, 590), st.floats(50, 430), sides, sides, angles, st.floats(-60, 60), st.floats(-60, 60),
       st.floats(0.2, 4.0), st.floats(0.2, 4.0), st.floats(-89, 89))
def test_motion_within_keeps_the_target_centre_when_clipping(x0, y0, w0, h0, a0, dx, dy, kx, ky, dth):
    """Clipped as one motion, a jump beyond the bounds (scales, or a turn whose translation about
    the image origin is too long) still lands on the target's centre, stays inside the bounds,
    changes the size only towards the target's, and an in-bounds motion is left exactly as it is."""
    b0 = RBox(x0, y0, w0, h0, a0)
    b1 = RBox(x0 + dx, y0 + dy, w0 * kx, h0 * ky, a0 + dth)
    g, within = motion_between(b0, b1, W, H), motion_within(b0, b1, LOW, HIGH, W, H)
    assert np.all(within >= LOW - 1e-12) and np.all(within <= HIGH + 1e-12)
    moved = apply_motion(b0, within, W, H)
    assert math.hypot(moved.cx - b1.cx, moved.cy - b1.cy) < 1e-6
    assert _between(moved.w, w0, max(w0 * min(kx, HIGH[0]), 1.0))
    assert _between(moved.h, h0, max(h0 * min(ky, HIGH[1]), 1.0))
    if np.all((g >= LOW) & (g <= HIGH)):
        assert np.array_equal(within, g)


def test_clipping_component_by_component_misses_where_motion_within_does_not():
    """The case measured on synth-0029/2: a box 9 × 2 px that must grow 2.5× in height."""
    b0 = RBox(200.0, 150.0, 9.0, 2.0, 0.0)
    b1 = RBox(203.0, 152.0, 9.0, 5.0, 0.0)
    naive = apply_motion(b0, np.clip(motion_between(b0, b1, W, H), LOW, HIGH), W, H)
    moved = apply_motion(b0, motion_within(b0, b1, LOW, HIGH, W, H), W, H)
    assert abs(naive.cy - b1.cy) > 50 and rotated_iou(naive, b1) == 0.0
    assert (moved.cx, moved.cy) == pytest.approx((b1.cx, b1.cy)) and rotated_iou(moved, b1) > 0.75


def test_a_turn_too_long_for_the_translation_bounds_keeps_the_centre():
    """The case measured on DAVIS soccerball (427 × 240, frame 7): the segmentation tracker's box
    turns 44° 350 px from the origin, which needs Δy = 2.19 > 1.88. The turn is shortened instead."""
    low = np.array([0.05, 0.05, -0.903, -1.112, -1.888])
    high = np.array([1.969, 1.973, 0.917, 1.12, 1.876])
    b0, b1 = RBox(347.4, 188.7, 30.3, 36.9, -10.9), RBox(350.8, 201.4, 56.6, 36.3, -55.4)
    assert motion_between(b0, b1, 427, 240)[4] > high[4]
    naive = apply_motion(b0, np.clip(motion_between(b0, b1, 427, 240), low, high), 427, 240)
    moved = apply_motion(b0, motion_within(b0, b1, low, high, 427, 240), 427, 240)
    assert abs(naive.cy - b1.cy) > 50
    assert (moved.cx, moved.cy) == pytest.approx((b1.cx, b1.cy)) and rotated_iou(moved, b1) > 0.85


def test_apply_rejects_non_finite_and_bad_shape():
    b = RBox(10, 10, 5, 5, 0)
    with pytest.raises(ValueError, match="finite"):
        apply_motion(b, [1, 1, np.nan, 0, 0], W, H)
    with pytest.raises(ValueError, match="shape"):
        apply_motion(b, [1, 1, 0, 0], W, H)
    tiny = apply_motion(b, [1e-9, 1e-9, 2.0, 0, 0], W, H)  # clipped, never degenerate
    assert tiny.w >= 1 and tiny.h >= 1 and math.isfinite(tiny.angle)


def _raster(box: RBox, shape=(H, W), scale: int = 1) -> np.ndarray:
    m = np.zeros((shape[0] * scale, shape[1] * scale), np.uint8)
    cv2.fillPoly(m, [np.round(rbox_corners(box) * scale * 16).astype(np.int32)], 1, shift=4)
    return m


@settings(max_examples=40, deadline=None)
@given(st.floats(150, 450), st.floats(150, 300), st.floats(20, 150), st.floats(20, 150), angles,
       st.floats(-40, 40), st.floats(-40, 40), st.floats(0.6, 1.6), st.floats(-60, 60))
def test_rotated_iou_matches_raster(cx, cy, w, h, a, dx, dy, ds, da):
    b0 = RBox(cx, cy, w, h, a)
    b1 = RBox(cx + dx, cy + dy, w * ds, h, a + da)
    r0, r1 = _raster(b0, scale=4).astype(bool), _raster(b1, scale=4).astype(bool)
    raster = (r0 & r1).sum() / max((r0 | r1).sum(), 1)
    assert rotated_iou(b0, b1) == pytest.approx(raster, abs=0.03)
    assert rotated_iou(b0, b1) == pytest.approx(rotated_iou(b1, b0), abs=1e-9)


def test_iou_edge_cases():
    b = RBox(50, 50, 20, 10, 30)
    assert rotated_iou(b, b) == pytest.approx(1.0)
    assert rotated_iou(b, RBox(500, 500, 20, 10, 30)) == 0.0
    assert rotated_iou(b, None) == 0.0
    a0, a1 = RBox(10, 10, 10, 10, 0), RBox(15, 10, 10, 10, 0)
    assert rotated_iou(a0, a1) == pytest.approx(aabb_iou(rbox_to_xyxy(a0), rbox_to_xyxy(a1))) == pytest.approx(1 / 3)


@given(coords, coords, sides, sides, angles)
@settings(max_examples=60, deadline=None)
def test_inscribed_ellipse_bounds_lie_inside_the_corners_and_equal_them_when_axis_aligned(cx, cy, w, h, a):
    b = RBox(cx, cy, w, h, a)
    e, c = rbox_ellipse_xyxy(b), rbox_to_xyxy(b)
    assert np.all(e[:2] >= c[:2] - 1e-9) and np.all(e[2:] <= c[2:] + 1e-9)
    np.testing.assert_allclose((e[:2] + e[2:]) / 2, [cx, cy], atol=1e-9)  # same centre: precision is unchanged
    for upright in (0.0, 90.0, -90.0, 180.0):
        np.testing.assert_allclose(rbox_ellipse_xyxy(RBox(cx, cy, w, h, upright)),
                                   rbox_to_xyxy(RBox(cx, cy, w, h, upright)), atol=1e-9)


@pytest.mark.parametrize("angle", [20.0, 45.0, 70.0])
def test_inscribed_ellipse_bounds_recover_a_tilted_ellipse_masks_tight_bounds(angle):
    """What the evaluation relies on: from an elliptical object's minAreaRect, the ellipse's bounds
    give the mask's own tight bounds, where the rectangle's corners overshoot them."""
    mask = np.zeros((200, 200), np.uint8)
    cv2.ellipse(mask, (100, 100), (60, 20), angle, 0, 360, 1, -1)
    ys, xs = np.nonzero(mask)
    tight = np.array([xs.min(), ys.min(), xs.max(), ys.max()], float)
    box = rbox_from_mask(mask)
    assert aabb_iou(rbox_ellipse_xyxy(box), tight) > 0.95
    assert aabb_iou(rbox_to_xyxy(box), tight) < 0.8


def test_canonical_angle_convention_is_version_independent():
    raw = RBox(0, 0, 30, 10, -78.7)  # OpenCV 5 range [-90, 0)
    as_412 = RBox(0, 0, 10, 30, 11.3)  # the same box as OpenCV 4.12 reports it, (0, 90]
    c5, c4 = canonicalize(raw), canonicalize(as_412)
    assert -45 <= c5.angle < 45
    assert _close(c5, c4)
    nxt = canonicalize(RBox(0, 0, 10, 30, -30.0), reference_angle=40.0)  # ≡ (30, 10, 60°)
    assert nxt.angle == pytest.approx(60.0) and (nxt.w, nxt.h) == (30, 10)


@pytest.mark.parametrize("method", ["minarearect", "principal"])
def test_smooth_rotation_never_jumps(method):
    """A rigid bar turning 4° per frame through a full turn: every step must read about 4°."""
    masks = [_raster(RBox(320, 240, 160, 50, 4.0 * t)) for t in range(95)]
    boxes = boxes_from_masks(masks, method)
    thetas = np.degrees(np.arcsin([g[2] for g in track_motions(boxes, W, H)]))
    assert np.abs(thetas).max() <= 45
    assert np.allclose(thetas, 4.0, atol=1.5)


def test_empty_mask_gives_none_and_tracks_continue():
    empty = np.zeros((20, 20), np.uint8)
    full = empty.copy(); full[5:15, 4:10] = 1
    boxes = boxes_from_masks([full, empty, full])
    assert boxes[1] is None and boxes[0] is not None
    assert track_motions(boxes, 20, 20)[0] is None
    assert rbox_from_mask(empty) is None


def test_prior_recovers_known_gaussian_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    cov = MotionPrior.paper().cov
    mean = MotionPrior.paper().mean
    x = rng.multivariate_normal(mean, cov, size=40000)
    prior = MotionPrior.from_samples(x, source="test")
    assert np.allclose(prior.mean, mean, atol=0.02)
    assert np.allclose(prior.cov, cov, atol=0.02)
    prior.save(tmp_path / "p.json")
    back = MotionPrior.load(tmp_path / "p.json")
    assert np.allclose(back.cov, prior.cov) and back.count == 40000 and "q50" in back.quantiles
    lo, hi = prior.action_bounds(3.0)
    assert np.all(lo < prior.mean) and np.all(hi > prior.mean) and lo[0] > 0 and -1 <= lo[2] and hi[2] <= 1
    wide_lo, wide_hi = prior.action_bounds(10.0)  # clipped scales and sinθ stay symmetric about μ
    assert np.allclose((wide_lo + wide_hi) / 2, prior.mean, atol=1e-6) and wide_lo[0] >= 0.05 - 1e-6


def test_prior_rejects_degenerate_and_bad_files(tmp_path):
    x = np.random.default_rng(0).normal(size=(100, 5))
    x[:, 2] = 0.0  # an object that never rotates: Σ is singular
    with pytest.raises(PriorError, match="positive definite"):
        MotionPrior.from_samples(x)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PriorError, match="bad.json"):
        MotionPrior.load(bad)
    with pytest.raises(PriorError, match="not found"):
        MotionPrior.load(tmp_path / "missing.json")
    asym = tmp_path / "asym.json"
    c = np.eye(5); c[0, 1] = 0.5
    asym.write_text('{"mean": [1,1,0,0,0], "cov": %s}' % c.tolist())
    with pytest.raises(PriorError, match="symmetric"):
        MotionPrior.load(asym)


def test_robust_fit_is_unbiased_and_ignores_gross_outliers(tmp_path):
    rng = np.random.default_rng(1)
    cov = np.diag([0.03, 0.03, 0.06, 0.01, 0.01]) ** 2
    x = rng.multivariate_normal([1, 1, 0, 0, 0], cov, size=20000)
    clean = MotionPrior.from_samples(x, fit="robust")
    assert np.allclose(clean.std, np.sqrt(np.diag(cov)), rtol=0.05)
    x[:400] = rng.multivariate_normal([1, 1, 0, 0, 0], cov * 400, size=400)  # 2 % box-fit jumps
    plain, robust = MotionPrior.from_samples(x), MotionPrior.from_samples(x, fit="robust")
    assert np.all(plain.std > 2 * np.sqrt(np.diag(cov)))
    assert np.allclose(robust.std, np.sqrt(np.diag(cov)), rtol=0.1)
    robust.save(tmp_path / "r.json")
    assert MotionPrior.load(tmp_path / "r.json").fit == "robust"
