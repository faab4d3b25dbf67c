"""Baseline trackers: the interface, the registry, zero motion, the oracle and OpenCV's trackers."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from bmvtrack.agents.baselines import (
    OpenCVTracker,
    Tracker,
    ZeroMotionTracker,
    available_trackers,
    cv_rect_to_rbox,
    make_tracker,
    rbox_to_cv_rect,
    register_tracker,
)
from bmvtrack.agents.baselines import base as registry
from bmvtrack.data import TrackFilter, VideoDataset
from bmvtrack.motion import RBox, apply_motion, motion_between, rotated_iou
from bmvtrack.evaluate import run_tracker, score_sequence, track_ground_truth

KEEP_ALL = TrackFilter(absent="keep", max_box_fraction=1.0)


def _textured(h=120, w=160, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _head(track, n):
    """The first ``n`` frames of a track (a short real sequence for slow trackers)."""
    return dataclasses.replace(track, frame_paths=track.frame_paths[:n], mask_paths=track.mask_paths[:n],
                               frame_names=track.frame_names[:n], present=track.present[:n])


@pytest.fixture(scope="module")
def bear(davis2016_root):
    ds = VideoDataset(davis2016_root, resolution="240p", filters=KEEP_ALL)
    ds.sequences = ["bear"]  # scan only this sequence
    (track,) = ds.tracks()
    return ds, track


# ------------------------------------------------------------------------------ registry


def test_registry_names_the_five_baselines():
    assert {"zero", "mil", "kcf", "csrt", "oracle"} <= set(available_trackers())
    for name in ("zero", "mil", "kcf", "csrt", "oracle"):
        t = make_tracker(name)
        assert isinstance(t, Tracker) and t.name == name
    assert make_tracker("oracle").uses_ground_truth is True
    assert make_tracker("ZERO").uses_ground_truth is False
    with pytest.raises(KeyError, match="registered"):
        make_tracker("no-such-tracker")


def test_register_tracker_extends_and_refuses_silent_shadowing():
    try:
        register_tracker("my-zero", lambda **kw: ZeroMotionTracker(name="my-zero", **kw))
        assert "my-zero" in available_trackers()
        assert make_tracker("my-zero").name == "my-zero"
        with pytest.raises(ValueError, match="already registered"):
            register_tracker("my-zero", ZeroMotionTracker)
        register_tracker("my-zero", ZeroMotionTracker, overwrite=True)
        assert make_tracker("my-zero").name == "zero"
    finally:
        registry._REGISTRY.pop("my-zero", None)


# ------------------------------------------------------------------------------ zero and oracle


def test_zero_motion_never_moves():
    t = ZeroMotionTracker()
    box = RBox(50, 40, 20, 10, 12.0)
    t.init(_textured(), box)
    assert all(t.update(_textured(seed=s)) == box for s in range(3))


def test_oracle_replays_ground_truth_and_restarts_after_absence():
    w, h = 160, 120
    gt = [RBox(40, 40, 20, 10, 0.0)]
    for step in range(4):
        gt.append(RBox(gt[-1].cx + 3, gt[-1].cy + 1, gt[-1].w * 1.05, gt[-1].h, gt[-1].angle + 5))
    gt += [None, RBox(100, 80, 15, 15, -10.0), RBox(103, 82, 16, 15, -5.0)]
    t = make_tracker("oracle")
    with pytest.raises(RuntimeError, match="set_ground_truth"):
        t.init(_textured(), gt[0])
    t.set_ground_truth(gt, w, h)
    t.init(_textured(), gt[0])
    preds = [t.update(_textured()) for _ in range(len(gt) - 1)]
    for p, g in zip(preds, gt[1:]):
        if g is not None:
            assert rotated_iou(p, g) > 0.9999
    assert preds[4] == preds[3]  # absent frame: the box stays
    assert preds[5] == gt[6]  # back: restart from the annotation
    # the replay goes through apply_motion, as an agent's action does
    assert preds[0] == apply_motion(gt[0], motion_between(gt[0], gt[1], w, h), w, h)


def test_oracle_reproduces_real_davis_bear(bear):
    """Replaying the ground-truth G_t on real DAVIS 240p reproduces every box (rotated IoU ≈ 1)."""
    ds, track = bear
    gt = track_ground_truth(ds, track)
    res = run_tracker(make_tracker("oracle"), ds, track, gt.rboxes)
    score = score_sequence(res, gt.rboxes, gt.aabbs)
    assert np.nanmean(score.iou_rot) >= 0.99
    assert np.nanmin(score.iou_rot) >= 0.98
    assert score.summary()["losses"] == 0


# ------------------------------------------------------------------------------ OpenCV


def test_cv_rect_conversion_round_trips_and_respects_the_frame():
    box = RBox(50.0, 30.0, 19.0, 9.0, 0.0)  # extent 40.5..59.5 → pixels 41..60 (nearest)
    rect = rbox_to_cv_rect(box, 160, 120)
    assert rect[2:] == (20, 10)
    back = cv_rect_to_rbox(rect)
    assert back.angle == 0 and (back.w, back.h) == (19.0, 9.0)
    assert abs(back.cx - box.cx) <= 0.5 and abs(back.cy - box.cy) <= 0.5
    # tiny boxes grow to min_side; boxes reaching outside are clipped; boxes at a border stay inside
    assert rbox_to_cv_rect(RBox(80, 60, 1, 1, 0), 160, 120, min_side=8)[2:] == (8, 8)
    x, y, w, h = rbox_to_cv_rect(RBox(0, 0, 30, 30, 0), 160, 120)
    assert (x, y) == (0, 0) and (w, h) == (16, 16)
    x, y, w, h = rbox_to_cv_rect(RBox(159, 119, 2, 2, 0), 160, 120, min_side=8)
    assert x + w <= 160 and y + h <= 120 and (w, h) == (8, 8)


@pytest.mark.parametrize("kind", ["mil", "kcf", "csrt"])
def test_opencv_trackers_follow_real_frames(bear, kind):
    """A few real frames: finite, axis-aligned boxes that stay on the slowly walking bear."""
    ds, track = bear
    short = _head(track, 8)
    gt = track_ground_truth(ds, short)
    res = run_tracker(make_tracker(kind), ds, short, gt.rboxes)
    assert np.all(np.isfinite(res.boxes)) and np.all(res.boxes[1:, 4] == 0.0)  # row 0: the given box
    assert np.all(res.times > 0)
    score = score_sequence(res, gt.rboxes, gt.aabbs)
    assert np.nanmean(score.iou) > 0.5, score.iou


@pytest.mark.parametrize("kind", ["mil", "kcf", "csrt"])
@pytest.mark.parametrize("box", [RBox(80, 60, 2, 2, 0), RBox(79.5, 59.5, 159, 119, 0), RBox(158, 118, 30, 30, 0)],
                         ids=["tiny", "whole-frame", "at-corner"])
def test_opencv_awkward_boxes_do_not_hang_or_crash(kind, box):
    """MIL loops forever under ~5 px and asserts on boxes without room around them; the wrapper copes."""
    t = OpenCVTracker(kind)
    frame = _textured()
    t.init(frame, box)
    assert not t.init_failed
    out = [t.update(_textured(seed=s)) for s in range(2)]
    assert all(np.all(np.isfinite(b.as_array())) and b.w > 0 and b.h > 0 for b in out)


def test_opencv_failed_update_keeps_the_last_box():
    t = OpenCVTracker("kcf")
    t.init(_textured(), RBox(80, 60, 20, 20, 0))
    last = t.update(_textured())

    class Failing:
        def update(self, img):
            return False, (0, 0, 0, 0)

    t._tracker = Failing()
    assert t.update(_textured()) == last and t.failed_updates == 1


def test_opencv_unknown_kind_and_missing_contrib(monkeypatch):
    with pytest.raises(ValueError, match="kind"):
        OpenCVTracker("boosting-forest")
    monkeypatch.delattr(cv2, "TrackerCSRT_create")
    if hasattr(cv2, "legacy"):
        monkeypatch.delattr(cv2.legacy, "TrackerCSRT_create", raising=False)
    with pytest.raises(RuntimeError, match="contrib"):
        make_tracker("csrt")


def test_mil_is_reproducible_whatever_ran_before(bear):
    """MIL draws from libc rand() and OpenCV's RNG; init reseeds both, so order does not matter."""
    ds, track = bear
    short = _head(track, 5)
    gt = track_ground_truth(ds, short)
    first = run_tracker(make_tracker("mil"), ds, short, gt.rboxes).boxes
    run_tracker(OpenCVTracker("mil", seed=None), ds, short, gt.rboxes)  # advances both generators
    cv2.randu(np.zeros(100), 0, 1)
    again = run_tracker(make_tracker("mil"), ds, short, gt.rboxes).boxes
    np.testing.assert_array_equal(first, again)
