"""The βMVUnet segmentation tracker baseline: follows the object with a perfect segmenter, survives an empty one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_vae_eval import OracleModel, mask_frames, open_ds, tiny_model

from bmvtrack.agents.baselines.base import Tracker
from bmvtrack.agents.baselines.segmentation_tracker import SegmentationTracker
from bmvtrack.checkpoint import CheckpointError, save_checkpoint
from bmvtrack.config import to_dict
from bmvtrack.evaluate import mask_aabb
from bmvtrack.metrics import jaccard
from bmvtrack.motion import RBox, boxes_from_masks, canonicalize, rbox_from_mask, rbox_to_xyxy, rotated_iou


def run_tracker(tracker: SegmentationTracker, ds, track) -> tuple[list[float], list[RBox], list[RBox | None]]:
    gt = boxes_from_masks([ds.mask(track, i) for i in range(len(track))])
    tracker.init(ds.frame(track, 0), gt[0])
    boxes = [gt[0]] + [tracker.update(ds.frame(track, i)) for i in range(1, len(track))]
    return [rotated_iou(b, g) for b, g in zip(boxes, gt)], boxes, gt


def test_perfect_segmenter_keeps_iou_high(moving_root: Path) -> None:
    ds = mask_frames(open_ds(moving_root))
    track = ds.tracks()[0]
    tracker = SegmentationTracker(OracleModel())
    assert tracker.name == "segmentation" and isinstance(tracker, Tracker)
    ious, _, gt = run_tracker(tracker, ds, track)
    assert len(track) == 10
    assert min(ious[1:]) > 0.85 and np.mean(ious[1:]) > 0.9
    assert tracker.misses == 0 and tracker.frames == 9
    assert tracker.last_prob is not None and tracker.last_prob.shape == track.size
    # the object really moved, so a box that stayed put would not have scored this
    assert rotated_iou(gt[0], gt[-1]) < min(ious[1:])


def test_empty_mask_keeps_previous_box(moving_root: Path) -> None:
    ds = mask_frames(open_ds(moving_root))
    track = ds.tracks()[0]
    tracker = SegmentationTracker(OracleModel(empty=True))
    _, boxes, gt = run_tracker(tracker, ds, track)
    assert all(b == gt[0] for b in boxes)
    assert tracker.misses == len(track) - 1


def test_it_reports_the_mask_its_box_was_fitted_to_and_that_masks_tight_box(moving_root: Path) -> None:
    """``last_mask``: the mask pieces the box was fitted to; ``last_aabb``: their tight box (SiamMask's
    convention) — the previous one when an empty mask keeps the box, None (the corner bounds) when
    the proposal's box takes over or before any update."""
    ds = mask_frames(open_ds(moving_root))
    track = ds.tracks()[0]
    gt = boxes_from_masks([ds.mask(track, i) for i in range(len(track))])
    tracker = SegmentationTracker(OracleModel())
    tracker.init(ds.frame(track, 0), gt[0])
    assert tracker.last_mask is None and tracker.last_aabb is None
    previous = gt[0]
    for i in range(1, len(track)):
        box = tracker.update(ds.frame(track, i))
        mask = tracker.last_mask
        assert mask.shape == track.size and mask.dtype == bool
        refit = canonicalize(rbox_from_mask(mask.astype(np.uint8)), previous.angle)
        np.testing.assert_allclose(refit.as_array(), box.as_array(), atol=1e-4)  # the box is this mask's
        np.testing.assert_array_equal(tracker.last_aabb, mask_aabb(mask))
        assert jaccard(mask, ds.mask(track, i)) > 0.9
        previous = box
    reported = tracker.last_aabb.copy()
    tracker.model.empty = True  # the mask vanishes: box and axis-aligned box are kept
    assert tracker.update(ds.frame(track, 1)) == previous
    assert not tracker.last_mask.any() and np.array_equal(tracker.last_aabb, reported)
    blind = SegmentationTracker(OracleModel(empty=True))
    blind.init(ds.frame(track, 0), gt[0])
    blind.update(ds.frame(track, 1))
    assert blind.last_aabb is None and not blind.last_mask.any()
    fused = SegmentationTracker(OracleModel(empty=True), proposal="csrt")
    fused.init(ds.frame(track, 0), gt[0])
    assert fused.update(ds.frame(track, 1)) != gt[0] and fused.last_aabb is None  # CSRT's box took over


def test_update_before_init_raises() -> None:
    with pytest.raises(RuntimeError, match="before init"):
        SegmentationTracker(OracleModel()).update(np.zeros((120, 160, 3), np.uint8))


def test_tracker_from_checkpoint_runs_on_real_network(moving_root: Path, tmp_path: Path) -> None:
    m = tiny_model()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"kind": "bmvae", "model": m.state_dict(), "model_config": to_dict(m.cfg)})
    ds = open_ds(moving_root)
    track = ds.tracks()[0]
    tracker = SegmentationTracker(path, threshold=0.5, context=0.25, box_method="principal")
    _, boxes, _ = run_tracker(tracker, ds, track)
    assert all(isinstance(b, RBox) and np.isfinite(b.as_array()).all() and b.w > 0 and b.h > 0 for b in boxes)
    with pytest.raises(CheckpointError, match="absent.pt"):
        SegmentationTracker(tmp_path / "absent.pt")


def test_overlap_keeps_the_box_off_a_look_alike_next_to_the_target(moving_root: Path) -> None:
    """A second white object beside the target, inside the search crop but off the target's box:
    fitting the box to every mask piece ("all") drags the box onto it, "overlap" keeps the target."""
    ds = mask_frames(open_ds(moving_root))
    plain = ds.frame

    def with_look_alike(tr, i):
        img = plain(tr, i).copy()
        x0, y0, x1, y1 = rbox_to_xyxy(rbox_from_mask(ds.mask(tr, i)))
        gap = 0.12 * ((x1 - x0) + (y1 - y0))
        a, b = int(np.ceil(x1 + gap)), int(np.ceil(x1 + 2.5 * gap))
        img[int(y0):int(np.ceil(y1)), a:b] = 255
        return img

    ds.frame = with_look_alike  # type: ignore[method-assign]
    track = ds.tracks()[0]
    ious = {keep: np.mean(run_tracker(SegmentationTracker(OracleModel(), keep=keep), ds, track)[0][1:])
            for keep in ("overlap", "all")}
    assert ious["overlap"] > 0.85 and ious["all"] < ious["overlap"] - 0.15, ious


def test_csrt_proposal_takes_over_from_an_empty_mask_and_leaves_a_good_one_alone(moving_root: Path) -> None:
    """segmentation-csrt: with no mask at all the box follows CSRT (the plain tracker stays put); with
    a perfect mask CSRT agrees, so the boxes are the mask's."""
    ds = mask_frames(open_ds(moving_root))
    track = ds.tracks()[0]
    blind = SegmentationTracker(OracleModel(empty=True), proposal="csrt")
    ious, boxes, gt = run_tracker(blind, ds, track)
    assert blind.misses == len(track) - 1
    assert np.mean(ious[1:]) > 0.5 and boxes[-1] != gt[0]
    assert np.mean(ious[1:]) > np.mean([rotated_iou(gt[0], g) for g in gt[1:]]) + 0.1  # better than staying put
    fused = run_tracker(SegmentationTracker(OracleModel(), proposal="csrt"), ds, track)[1]
    alone = run_tracker(SegmentationTracker(OracleModel()), ds, track)[1]
    assert fused == alone


def test_registered_segmentation_trackers_get_their_options(tmp_path: Path) -> None:
    """Each name of the registry builds the tracker it describes (one loaded network for all)."""
    from bmvtrack.agents.baselines import SEGMENTATION_TRACKERS
    from bmvtrack.agents.loading import learned_tracker_factories

    m = tiny_model()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"kind": "bmvae", "model": m.state_dict(), "model_config": to_dict(m.cfg)})
    names = list(SEGMENTATION_TRACKERS)
    factories, rest = learned_tracker_factories([], names + ["csrt"], path)
    assert rest == ["csrt"] and set(factories) == set(names)
    built = {n: factories[n]() for n in names}
    assert built["segmentation-all"].keep == "all" and built["segmentation"].adapt is None
    assert built["segmentation-adapt"].adapt is not None and built["segmentation-adapt"].proposal is None
    assert built["segmentation-csrt"].proposal is not None and built["segmentation-csrt"].box_method == "minarearect"
    assert built["segmentation-csrt-principal"].box_method == "principal"
    assert len({id(t.model) for t in built.values()}) == 1


def test_colour_fusion_keeps_the_box_whose_colours_stand_out(moving_root: Path) -> None:
    """``fuse="colour"`` (``segmentation-colour``): of the mask's box and the proposal's, the one of
    higher colour contrast against the first frame's object; the proposal's where the mask is empty."""
    from test_appearance import scene

    from bmvtrack.agents.baselines import registered_tracker

    rng = np.random.default_rng(0)
    tracker = SegmentationTracker(OracleModel(), proposal="csrt", fuse="colour")
    tracker.init(scene(100, 100, rng), RBox(100, 100, 40, 30, 0))
    later = scene(180, 140, rng)
    on, off, piece = RBox(180, 140, 40, 30, 0), RBox(60, 60, 40, 30, 0), RBox(170, 140, 20, 30, 0)
    assert tracker._fuse(later, on, off) is on and tracker._fuse(later, off, on) is on
    assert tracker._fuse(later, piece, on) is on  # a piece of the object loses to the whole
    assert tracker._fuse(later, None, off) is off
    overlap = SegmentationTracker(OracleModel(), proposal="csrt")  # by overlap: CSRT off the mask, the piece that overlaps
    assert overlap._fuse(later, off, on) is on and overlap._fuse(later, piece, on) is piece
    assert registered_tracker("segmentation-colour").options["fuse"] == "colour"
    with pytest.raises(ValueError, match="fuse must be one of"):
        SegmentationTracker(OracleModel(), fuse="vote")
    ds = mask_frames(open_ds(moving_root))  # with a perfect segmenter the mask's box is kept throughout
    ious, _, _ = run_tracker(SegmentationTracker(OracleModel(), proposal="csrt", fuse="colour"), ds, ds.tracks()[0])
    assert min(ious[1:]) > 0.85
