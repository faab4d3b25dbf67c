"""Tests for bmvtrack.metrics: known values, hand computations, protocol conventions, properties."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from bmvtrack import metrics as M

FAST = settings(max_examples=40, deadline=None)


def square(shape, top, left, size):
    m = np.zeros(shape, dtype=bool)
    m[top : top + size, left : left + size] = True
    return m


# ------------------------------------------------------------------------------------ tracking


def test_paired_bootstrap_interval_brackets_the_gap_and_narrows_with_more_sequences():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.8, 40)
    same = M.paired_bootstrap(base, base)
    assert same["mean_diff"] == same["low"] == same["high"] == 0.0 and same["wins"] == 0
    shifted = M.paired_bootstrap(base + 0.05, base)  # a constant gap has no spread to resample
    assert shifted["low"] == pytest.approx(0.05) and shifted["high"] == pytest.approx(0.05)
    assert shifted["wins"] == shifted["n"] == 40
    noisy = base + 0.05 + rng.normal(0.0, 0.1, 40)
    many, few = M.paired_bootstrap(noisy, base), M.paired_bootstrap(noisy[:6], base[:6])
    assert many["low"] < many["mean_diff"] < many["high"]
    assert many["high"] - many["low"] < few["high"] - few["low"]
    with pytest.raises(ValueError, match="equally long"):
        M.paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="finite"):
        M.paired_bootstrap([0.1, float("nan")], [0.1, 0.2])


def _percentile_interval(d: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """The plain percentile bootstrap (paired_bootstrap's earlier, hand-written interval)."""
    idx = np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(d[idx].mean(axis=1), [tail, 100 - tail])
    return float(low), float(high)


def _skewed_gaps(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-sequence scores of two trackers whose gap is skewed: B ahead by 0.05 on most sequences,
    far behind (0.3-0.6) on a rare one (a lost track). Returns a, b and the true mean gap."""
    b = rng.beta(2, 2, n)
    lost = rng.random(n) < 0.15
    gap = np.where(lost, -rng.uniform(0.3, 0.6, n), rng.normal(0.05, 0.03, n))
    return b + gap, b, 0.85 * 0.05 - 0.15 * 0.45


def test_paired_bootstrap_is_scipys_bca_interval_and_skews_with_the_data():
    from scipy import stats

    rng = np.random.default_rng(4)
    a, b, _ = _skewed_gaps(rng, 20)
    r = M.paired_bootstrap(a, b, n_boot=2000, seed=7)
    ref = stats.bootstrap((a, b), lambda u, v, axis: np.mean(u - v, axis=axis), paired=True, vectorized=True,
                          n_resamples=2000, method="BCa", rng=np.random.default_rng(7)).confidence_interval
    assert (r["low"], r["high"]) == pytest.approx((ref.low, ref.high))
    assert M.paired_bootstrap(a, b, n_boot=2000, seed=7) == r  # the seed fixes it
    # a long left tail (rare lost tracks): BCa reaches further down than the percentile interval
    low, high = _percentile_interval(a - b, 2000, 7)
    assert r["low"] < low and r["mean_diff"] - r["low"] > r["high"] - r["mean_diff"]
    two = M.paired_bootstrap([0.1, 0.2], [0.0, 0.0])  # BCa undefined on two items: the percentile interval
    assert two["low"] == pytest.approx(0.1) and two["high"] == pytest.approx(0.2)
    assert M.paired_bootstrap([0.3], [0.1])["low"] == pytest.approx(0.2)  # one item: no spread


def test_paired_bootstrap_covers_the_true_gap_at_least_as_often_as_the_percentile_interval():
    """Coverage on simulated 20-sequence comparisons with a known mean gap (the check that chose BCa)."""
    rng = np.random.default_rng(123)
    hits = np.zeros(2)
    sims = 600
    for i in range(sims):
        a, b, mu = _skewed_gaps(rng, 20)
        r = M.paired_bootstrap(a, b, n_boot=2000, seed=i)
        low, high = _percentile_interval(a - b, 2000, i)
        hits += [r["low"] <= mu <= r["high"], low <= mu <= high]
    bca, percentile = hits / sims
    assert bca >= percentile + 0.02 and bca > 0.92, (bca, percentile)  # seen: 0.94 against 0.89


def test_success_thresholds_are_the_21_otb_values():
    thr = M.success_thresholds()
    assert thr.shape == (21,)
    assert thr[0] == 0.0 and thr[-1] == 1.0
    np.testing.assert_allclose(np.diff(thr), 0.05)


def test_success_auc_extremes():
    # OTB counts IoU > threshold; nothing exceeds 1.0, so a perfect tracker scores 20/21.
    assert M.success_auc(np.ones(50)) == pytest.approx(20 / 21)
    assert M.success_auc(np.zeros(50)) == 0.0
    # Without the 1.0 threshold a perfect tracker scores exactly 1.
    assert M.success_auc(np.ones(50), thresholds=np.arange(20) / 20) == 1.0


def test_success_curve_is_strict_and_monotone():
    curve = M.success_curve([0.5, 0.5])
    thr = M.success_thresholds()
    np.testing.assert_array_equal(curve, (thr < 0.5).astype(float))
    assert np.all(np.diff(M.success_curve(np.random.default_rng(0).random(100))) <= 0)


def test_success_auc_equals_mean_iou_for_uniform_ious():
    ious = (np.arange(1000) + 0.5) / 1000  # uniform on [0, 1], mean 0.5
    assert M.success_auc(ious) == pytest.approx(ious.mean(), abs=1e-3)


@FAST
@given(hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(0, 1)))
def test_success_auc_brackets_mean_iou(ious):
    # AUC = (20/21) * left Riemann sum of P(IoU > t), so it lies in this band around the mean.
    auc, mean = M.success_auc(ious), ious.mean()
    assert 20 / 21 * mean - 1e-12 <= auc <= 20 / 21 * mean + 1 / 21 + 1e-12


def test_nan_frames_excluded_from_success():
    np.testing.assert_array_equal(M.success_curve([1.0, np.nan, 0.0]), M.success_curve([1.0, 0.0]))
    assert M.success_auc([1.0, np.nan, 0.0]) == pytest.approx(10 / 21)
    assert np.isnan(M.success_auc([np.nan, np.nan]))


def test_center_errors_and_precision():
    err = M.center_errors([[0, 0], [1, 1], [10, 10]], [[3, 4], [1, 1], [10, np.nan]])
    np.testing.assert_allclose(err[:2], [5.0, 0.0])
    assert np.isnan(err[2])
    assert M.precision_at([0.0, 20.0, 20.5, np.nan]) == pytest.approx(2 / 3)  # <= 20 counts
    assert M.precision_at([5.0, 15.0], threshold=10.0) == 0.5
    curve = M.precision_curve([0.0, 20.0, 20.5, 60.0])
    assert curve.shape == (51,)
    assert curve[0] == 0.25 and curve[20] == 0.5 and curve[21] == 0.75 and curve[50] == 0.75
    with pytest.raises(ValueError):
        M.center_errors(np.zeros((3, 2)), np.zeros((2, 2)))


def test_count_losses_counts_events_not_frames():
    ious = [0.5, 0.0, 0.0, 0.0, 0.6, 0.0, 0.7]
    assert M.count_losses(ious) == 2
    assert M.count_losses(ious, min_frames=2) == 1
    assert M.count_losses(ious, min_frames=4) == 0
    assert M.count_losses([0.2, 0.5, 0.25], threshold=0.3) == 2
    assert M.count_losses([0.0, 0.0]) == 1  # a loss running to the end counts
    assert M.count_losses([]) == 0


def test_count_losses_ignores_nan_frames():
    assert M.count_losses([0.5, np.nan, 0.5]) == 0  # absent object is not a loss
    assert M.count_losses([0.0, np.nan, 0.0]) == 1  # ...and does not split one
    assert M.count_losses([0.0, np.nan, 0.0], min_frames=2) == 1


def test_a_loss_recovered_after_k_frames():
    ious = [np.nan, 0.9, 0.05, 0.2, 0.3, 0.6, 0.7]
    events = M.loss_events(ious)
    assert events.tolist() == [2]  # first frame below 0.1 after being on target
    np.testing.assert_array_equal(M.recovery_frames(ious, events), [3.0])  # IoU back at 0.6 three frames later
    assert M.recovery_summary(M.recovery_frames(ious, events)) == {"recovered": 1.0, "frames_to_recover": 3.0,
                                                                   "events": 1}


def test_a_loss_never_recovered():
    ious = [np.nan, 0.8, 0.0, 0.0, 0.4, 0.49]
    frames = M.recovery_frames(ious, M.loss_events(ious))
    assert M.loss_events(ious).tolist() == [2] and np.isnan(frames).all()
    s = M.recovery_summary(frames)
    assert s["recovered"] == 0.0 and math.isnan(s["frames_to_recover"]) and s["events"] == 1


def test_loss_events_use_hysteresis_and_start_on_target():
    # the tracker starts on target (it was given the truth): an early drop is a loss, in-between values change nothing
    assert M.loss_events([np.nan, 0.3, 0.05]).tolist() == [2]
    # a second dip below 0.1 without being back >= 0.5 in between is the same loss, not a new one
    assert M.loss_events([0.9, 0.05, 0.3, 0.05, 0.6, 0.05]).tolist() == [1, 5]
    assert M.loss_events([0.9, 0.05, 0.3, 0.05, 0.6, 0.05], lost=0.04).tolist() == []
    with pytest.raises(ValueError, match="must not exceed"):
        M.loss_events([0.5], lost=0.6)


def test_recovery_skips_nan_frames_but_counts_them_as_elapsed():
    ious = [np.nan, 0.8, np.nan, 0.05, np.nan, np.nan, 0.9]
    assert M.loss_events(ious).tolist() == [3]  # the absent frame neither makes nor hides a loss
    np.testing.assert_array_equal(M.recovery_frames(ious, [3]), [3.0])  # frames 4, 5 absent: not a recovery
    assert np.isnan(M.recovery_frames([0.9, 0.05, np.nan, np.nan], [1])).all()


def test_no_events_give_nan_fractions():
    ious = [np.nan, 0.9, 0.3, 0.4, 0.95]  # it drifts but never below 0.1
    assert M.loss_events(ious).size == 0
    s = M.recovery_summary(M.recovery_frames(ious, M.loss_events(ious)))
    assert math.isnan(s["recovered"]) and math.isnan(s["frames_to_recover"]) and s["events"] == 0
    assert M.loss_events([]).size == 0 and M.recovery_frames([], []).size == 0


def test_recovery_must_come_before_the_next_event_or_stop():
    ious = [np.nan, 0.2, 0.3, 0.1, 0.3, 0.6, 0.2, 0.55, 0.1]
    # perturbations at 1, 4 and 7: the first is only back on target at 5, after the second (at 4) happened
    np.testing.assert_array_equal(M.recovery_frames(ious, [1, 4, 7]), [np.nan, 1.0, 0.0])
    # a loss at 1 whose window is cut by a re-initialisation at 4
    np.testing.assert_array_equal(M.recovery_frames(ious, [1], stops=[4]), [np.nan])
    np.testing.assert_array_equal(M.recovery_frames(ious, [1], stops=[6]), [4.0])
    for bad in ([3, 1], [1, 1], [-1], [9], [1.5]):
        with pytest.raises(ValueError, match="strictly increasing frame indices"):
            M.recovery_frames(ious, bad)


def test_a_reset_is_not_a_loss_of_the_trackers_own():
    # re-initialised on a wrong box before frame 3: off target from there, so its 0.05 is no loss event;
    # back on target at 5, the drop at 6 is one
    ious = [np.nan, 0.9, 0.9, 0.05, 0.05, 0.9, 0.05]
    assert M.loss_events(ious).tolist() == [3, 6]
    assert M.loss_events(ious, resets=[3]).tolist() == [6]
    assert M.loss_events([np.nan, 0.9, 0.7, 0.05], resets=[2]).tolist() == [3]  # back on target at the reset frame


def test_recovery_summary_pools_events():
    pooled = M.recovery_summary(np.concatenate([[1.0, np.nan], [3.0]]))
    assert pooled == {"recovered": pytest.approx(2 / 3), "frames_to_recover": 2.0, "events": 3}


# -------------------------------------------------------------------------------- segmentation


def test_jaccard_values():
    a = square((20, 20), 2, 2, 6)
    assert M.jaccard(a, a) == 1.0
    assert M.jaccard(a, square((20, 20), 12, 12, 6)) == 0.0
    assert M.jaccard(np.zeros((5, 5)), np.zeros((5, 5))) == 1.0
    assert M.jaccard(a, np.zeros_like(a)) == 0.0
    # 3x3 squares offset by (1, 1): intersection 4, union 14.
    assert M.jaccard(square((6, 6), 0, 0, 3), square((6, 6), 1, 1, 3)) == pytest.approx(4 / 14)
    with pytest.raises(ValueError):
        M.jaccard(np.zeros((3, 3)), np.zeros((3, 4)))


def test_void_pixels_are_ignored():
    gt = square((20, 20), 5, 5, 6)
    pred = gt.copy()
    pred[0:3, :] = True  # wrong only inside the void band
    void = np.zeros_like(gt)
    void[0:3, :] = True
    assert M.jaccard(pred, gt) < 1.0
    assert M.jaccard(pred, gt, void=void) == 1.0
    assert M.boundary_f(pred, gt, void=void) == 1.0
    # Void also removes gt pixels from the count: gt half covered by void, pred the other half.
    pred2 = gt.copy()
    pred2[5:8, :] = False
    void2 = np.zeros_like(gt)
    void2[5:8, :] = True
    assert M.jaccard(pred2, gt, void=void2) == 1.0


def test_seg2bmap_hand_example():
    m = np.zeros((5, 5), dtype=bool)
    m[2, 2] = True
    expected = np.zeros((5, 5), dtype=bool)
    expected[1:3, 1:3] = True  # the pixel and its up/left/up-left neighbours
    np.testing.assert_array_equal(M.seg2bmap(m), expected)
    # The image border is not an object edge.
    assert not M.seg2bmap(np.ones((4, 6))).any()
    # A k x k square has 4k boundary pixels.
    assert M.seg2bmap(square((30, 30), 10, 10, 7)).sum() == 28


@FAST
@given(hnp.arrays(np.bool_, st.tuples(st.integers(1, 8), st.integers(1, 8))))
def test_seg2bmap_matches_its_definition(m):
    h, w = m.shape
    expected = np.zeros_like(m)
    for r in range(h):
        for c in range(w):
            nbrs = []
            if r == h - 1 and c == w - 1:
                continue
            if r == h - 1:
                nbrs = [(r, c + 1)]
            elif c == w - 1:
                nbrs = [(r + 1, c)]
            else:
                nbrs = [(r, c + 1), (r + 1, c), (r + 1, c + 1)]
            expected[r, c] = any(m[rr, cc] != m[r, c] for rr, cc in nbrs)
    np.testing.assert_array_equal(M.seg2bmap(m), expected)


def test_boundary_f_identical_shifted_and_far():
    gt = square((200, 200), 60, 60, 60)  # diagonal 282.8 -> tolerance ceil(2.26) = 3 px
    assert M.boundary_f(gt, gt) == 1.0
    assert M.boundary_f(square((200, 200), 62, 62, 60), gt) == 1.0  # corners sqrt(8) px off
    assert M.boundary_f(square((200, 200), 62, 63, 60), gt) < 1.0  # corners sqrt(13) px off
    assert M.boundary_f(square((200, 200), 90, 90, 60), gt) < 0.2


def test_boundary_f_tolerance_radius():
    # Shift by 3 px: within tolerance on a 200x200 image (radius 3), not on 100x100 (radius 2).
    assert M.boundary_f(square((200, 200), 20, 23, 30), square((200, 200), 20, 20, 30)) == 1.0
    assert M.boundary_f(square((100, 100), 20, 23, 30), square((100, 100), 20, 20, 30)) < 1.0
    # bound_th >= 1 is a radius in pixels.
    a, b = square((100, 100), 20, 23, 30), square((100, 100), 20, 20, 30)
    assert M.boundary_f(a, b, bound_th=3) == 1.0
    assert M.boundary_f(a, b, bound_th=2) < 1.0


def test_boundary_f_hand_value():
    # gt: 10x10 square (40 boundary px); pred adds a far stray pixel (4 unmatched boundary px):
    # P = 40/44, R = 1, F = 2PR/(P+R) = 20/21.
    gt = square((50, 50), 10, 10, 10)
    pred = gt.copy()
    pred[40, 40] = True
    assert M.boundary_f(pred, gt) == pytest.approx(20 / 21)
    # The other way round recall drops by the same amount: F is symmetric.
    assert M.boundary_f(gt, pred) == pytest.approx(20 / 21)


def test_boundary_f_empty_conventions():
    z = np.zeros((20, 20), dtype=bool)
    s = square((20, 20), 5, 5, 5)
    assert M.boundary_f(z, z) == 1.0
    assert M.boundary_f(z, s) == 0.0
    assert M.boundary_f(s, z) == 0.0


def _reference_f(pred, gt, radius):
    """Independent F: matching by Euclidean distance transform instead of disk dilation."""
    pb, gb = M.seg2bmap(pred), M.seg2bmap(gt)
    n_p, n_g = pb.sum(), gb.sum()
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    dist_to_g = ndimage.distance_transform_edt(~gb)
    dist_to_p = ndimage.distance_transform_edt(~pb)
    p = (dist_to_g[pb] <= radius).mean()
    r = (dist_to_p[gb] <= radius).mean()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@FAST
@given(
    hnp.arrays(np.bool_, (12, 14)),
    hnp.arrays(np.bool_, (12, 14)),
    st.sampled_from([1, 2, 3]),
)
def test_boundary_f_matches_distance_transform_reference(pred, gt, radius):
    assert M.boundary_f(pred, gt, bound_th=radius) == pytest.approx(_reference_f(pred, gt, radius))


def test_boundary_f_of_small_objects_in_a_large_frame_matches_the_reference():
    """boundary_f dilates only around the boundaries; the numbers stay those of the whole frame,
    objects at the frame's edge included."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        gt = np.zeros((120, 160), bool)
        y, x = rng.integers(-4, 115), rng.integers(-4, 155)
        gt[max(y, 0):y + rng.integers(3, 14), max(x, 0):x + rng.integers(3, 14)] = True
        pred = np.roll(gt, tuple(rng.integers(-4, 5, size=2)), axis=(0, 1))
        for radius in (1, 3, 6):
            assert M.boundary_f(pred, gt, bound_th=radius) == pytest.approx(_reference_f(pred, gt, radius))


def test_boundary_f_dilation_matches_opencv_border_handling():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    b = rng.random((15, 17)) < 0.1
    disk = M._disk(3)
    ours = ndimage.binary_dilation(b, structure=disk)
    theirs = cv2.dilate(b.astype(np.uint8), disk.astype(np.uint8)).astype(bool)
    np.testing.assert_array_equal(ours, theirs)
    assert disk.shape == (7, 7) and disk.sum() == 29  # skimage.morphology.disk(3)


def test_j_and_f_sequence_statistics():
    gt = square((40, 40), 10, 10, 12)
    gts = [gt] * 4
    s = M.j_and_f([gt, gt, gt, gt], gts)
    assert s["J_mean"] == s["F_mean"] == s["J&F"] == 1.0
    assert s["J_recall"] == s["F_recall"] == 1.0
    assert s["J_decay"] == 0.0 and s["n_frames"] == 4
    empty = np.zeros_like(gt)
    s = M.j_and_f(np.stack([gt, gt, gt, empty]), np.stack(gts))
    assert s["J_mean"] == 0.75 and s["F_mean"] == 0.75 and s["J&F"] == 0.75
    assert s["J_recall"] == 0.75
    s = M.j_and_f([empty, gt, gt, empty], gts, exclude_first_last=True)
    assert s["J_mean"] == 1.0 and s["n_frames"] == 2


def test_j_and_f_recall_uses_half_threshold_and_mixes_j_f():
    gt = square((40, 40), 10, 10, 10)
    half = gt.copy()
    half[10:15, :] = False  # J = 0.5 exactly: not > 0.5
    s = M.j_and_f([gt, half], [gt, gt])
    assert s["J_mean"] == pytest.approx(0.75)
    assert s["J_recall"] == 0.5
    f_half = M.boundary_f(half, gt)
    assert s["F_mean"] == pytest.approx((1 + f_half) / 2)
    assert s["J&F"] == pytest.approx((0.75 + (1 + f_half) / 2) / 2)


def test_davis_decay():
    assert M._davis_decay(np.array([1.0, 1, 1, 1, 0, 0, 0, 0])) == pytest.approx(1.0)


# ------------------------------------------------------------------------- saliency, prob., dist


def test_saliency_mae():
    gt = square((10, 10), 2, 2, 4)
    assert M.saliency_mae(gt.astype(float), gt) == 0.0
    assert M.saliency_mae(np.full((10, 10), 0.5), gt) == 0.5
    with pytest.raises(ValueError):
        M.saliency_mae(np.full((10, 10), 1.5), gt)


def test_f_measure_perfect_prediction():
    gt = square((16, 16), 4, 4, 6)
    f = M.f_measure(gt.astype(float), gt)
    assert f["max_f"] == 1.0 and f["adaptive_f"] == 1.0 and f["mean_f"] == 1.0


def test_f_measure_hand_value():
    gt = np.array([1, 1, 0, 0], dtype=bool)
    prob = np.array([1.0, 0.6, 0.6, 0.0])  # quantised 255, 153, 153, 0
    f_low = 1.3 * (2 / 3) * 1 / (0.3 * 2 / 3 + 1)  # thresholds 1..153: P = 2/3, R = 1
    f_high = 1.3 * 1 * 0.5 / (0.3 * 1 + 0.5)  # thresholds 154..255: P = 1, R = 1/2
    f = M.f_measure(prob, gt)
    assert f["max_f"] == pytest.approx(f_high)
    assert f["mean_f"] == pytest.approx((153 * f_low + 102 * f_high) / 255)
    # adaptive threshold min(2 * 0.55, 1) = 1 keeps only the first pixel
    assert f["adaptive_f"] == pytest.approx(f_high)


def test_f_measure_wrong_prediction_scores_low():
    gt = square((16, 16), 0, 0, 6)
    f = M.f_measure(square((16, 16), 10, 10, 6).astype(float), gt)
    assert f["max_f"] == 0.0 and f["adaptive_f"] == 0.0


def test_mask_nll_and_mse():
    gt = square((8, 8), 2, 2, 3)
    assert M.mask_nll(np.full((8, 8), 0.5), gt) == pytest.approx(math.log(2))
    assert M.mask_nll(gt.astype(float), gt) == pytest.approx(0.0, abs=1e-6)
    assert M.mask_nll((~gt).astype(float), gt) == pytest.approx(-math.log(1e-7), rel=1e-6)
    prob = np.array([0.9, 0.2])
    assert M.mask_nll(prob, [1, 0]) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)
    assert M.mask_mse(prob, [1, 0]) == pytest.approx((0.01 + 0.04) / 2)
    assert M.mask_mse(gt.astype(float), gt) == 0.0


def test_mahalanobis_values():
    cov = np.array([[2.0, 1.0], [1.0, 2.0]])
    assert M.mahalanobis_gaussians([1, 2], cov, [1, 2], np.eye(2)) == 0.0
    # pooled diag(2, 2): D = (1 + 4) / 2
    d = M.mahalanobis_gaussians([1, 2], np.diag([1.0, 3.0]), [0, 0], np.diag([3.0, 1.0]))
    assert d == pytest.approx(2.5)
    # pooled [[2, 1], [1, 2]], inverse (1/3)[[2, -1], [-1, 2]]: D = 2/3
    assert M.mahalanobis_gaussians([1, 0], cov, [0, 0], cov) == pytest.approx(2 / 3)
    assert M.mahalanobis_gaussians([0, 0], cov, [1, 0], cov) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        M.mahalanobis_gaussians([0, 0, 0], cov, [1, 0], cov)


@FAST
@given(st.integers(0, 10_000))
def test_mahalanobis_matches_explicit_inverse(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cp, cq = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mp, mq = rng.normal(size=5), rng.normal(size=5)
    diff = mp - mq
    expected = diff @ np.linalg.inv((cp + cq) / 2) @ diff
    got = M.mahalanobis_gaussians(mp, cp, mq, cq)
    assert got == pytest.approx(expected, rel=1e-6)
    assert got >= 0


def test_mahalanobis_singular_covariance_warns():
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = M.mahalanobis_gaussians([1, 0], np.diag([1.0, 0.0]), [0, 0], np.diag([1.0, 0.0]))
    assert d == pytest.approx(1.0)
    assert any(issubclass(w.category, RuntimeWarning) for w in rec)


def test_module_imports_nothing_from_the_project():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(M))
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            mods.add((node.module or "").split(".")[0])
    assert mods <= {"__future__", "warnings", "typing", "numpy", "scipy"}


def test_paired_by_name_pairs_only_the_items_both_scored():
    a = {"s1": 0.5, "s2": 0.7, "s3": 0.2, "only-a": 9.0}
    b = {"s3": 0.1, "s1": 0.3, "s2": 0.6, "only-b": -9.0}
    r = M.paired_by_name(a, b, n_boot=500)
    assert r is not None and r["n"] == 3 and r["wins"] == 3
    assert r["mean_diff"] == pytest.approx((0.2 + 0.1 + 0.1) / 3)
    assert M.paired_by_name({"s1": 0.5}, {"s1": 0.4, "s2": 0.1}, min_items=2) is None  # too few shared
    assert M.paired_by_name({"s1": 0.5}, {"s2": 0.1}) is None
