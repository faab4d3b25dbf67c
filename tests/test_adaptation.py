"""First-frame adaptation: it teaches an untrained network the object, and touches nothing else."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_segmentation_tracker import run_tracker
from test_vae_eval import open_ds, tiny_model

from agents.baselines.segmentation import SegmentationTracker
from bmvtrack.adaptation import AdaptConfig, adapt_segmenter
from bmvtrack.data.patch_sampler import AugmentConfig, augmented_patch
from bmvtrack.metrics import jaccard
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import boxes_from_masks
from bmvtrack.segmentation import predict_patches

FAST = AdaptConfig(steps=40, lr=3e-3, batch_size=8)


def first_frame(root: Path):
    ds = open_ds(root)
    track = ds.tracks()[0]
    mask = ds.mask(track, 0)
    return ds, track, ds.frame(track, 0), mask, boxes_from_masks([mask])[0]


def crop_j(model, frame, mask, box) -> float:
    """J of the network's mask on the plain (unaugmented) crop around ``box``."""
    patch, label = augmented_patch(frame, mask, box, model.cfg.patch_size, AugmentConfig(), None)
    prob, _ = predict_patches(model, patch[None])
    return float(jaccard(prob[0] > 0.5, label))


def test_adaptation_teaches_an_untrained_network_the_object_and_leaves_the_base_alone(moving_root: Path) -> None:
    ds, track, frame, mask, box = first_frame(moving_root)
    base = tiny_model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = adapt_segmenter(base, frame, mask, box, FAST)
    # the base is untouched, running BatchNorm statistics included
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert not tuned.training and not any(p.requires_grad for p in tuned.parameters())
    # a later frame it never saw is segmented far better than before
    later = len(track) // 2
    m2 = ds.mask(track, later)
    b2 = boxes_from_masks([m2])[0]
    j0, j1 = crop_j(base, ds.frame(track, later), m2, b2), crop_j(tuned, ds.frame(track, later), m2, b2)
    assert j1 > 0.6 and j1 > j0 + 0.3, (j0, j1)


def test_decoder_only_adaptation_keeps_every_encoder_output(moving_root: Path) -> None:
    _, _, frame, mask, box = first_frame(moving_root)
    base = tiny_model()
    tuned = adapt_segmenter(base, frame, mask, box, AdaptConfig(steps=5, lr=3e-3, batch_size=4, params="decoder"))
    patch, _ = augmented_patch(frame, mask, box, base.cfg.patch_size, AugmentConfig(), None)
    x = patches_to_tensor(patch[None])
    with torch.no_grad():
        a, b = base(x, sample=False), tuned(x, sample=False)
    for key in ("mu", "scale_tril", "features"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["logits"], b["logits"])


def test_adaptation_is_reproducible_and_validates_its_input(moving_root: Path) -> None:
    _, _, frame, mask, box = first_frame(moving_root)
    cfg = AdaptConfig(steps=3, lr=1e-3, batch_size=4, seed=7)
    s1 = adapt_segmenter(tiny_model(), frame, mask, box, cfg).state_dict()
    s2 = adapt_segmenter(tiny_model(), frame, mask, box, cfg).state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    with pytest.raises(ValueError, match="differ in size"):
        adapt_segmenter(tiny_model(), frame, mask[:-1], box, cfg)
    for bad in ({"steps": -1}, {"lr": 0.0}, {"batch_size": 0}, {"params": "encoder"}):
        with pytest.raises(ValueError):
            AdaptConfig(**bad)  # type: ignore[arg-type]


def test_adapted_tracker_follows_the_object_where_the_untrained_one_cannot(moving_root: Path) -> None:
    """Given only frame 0's box (the box-tracking protocol), adaptation turns a random network into a tracker."""
    ds = open_ds(moving_root)
    track = ds.tracks()[0]
    plain = np.mean(run_tracker(SegmentationTracker(tiny_model()), ds, track)[0][1:])
    tracker = SegmentationTracker(tiny_model(), adapt=FAST, name="segmentation-adapt")
    adapted = np.mean(run_tracker(tracker, ds, track)[0][1:])
    assert tracker.model is not tracker.base_model
    assert adapted > 0.5 and adapted > plain + 0.3, (plain, adapted)
