"""First-frame adaptation: it teaches an untrained network the object, and touches nothing else."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_segmentation_tracker import run_tracker
from test_vae_eval import open_ds, tiny_model

from bmvtrack.agents.baselines.segmentation_tracker import SegmentationTracker
from bmvtrack.adaptation import (IGNORE, AdaptConfig, AdaptedModels, adapt_segmenter, adapt_to_box, cache_folder,
                                 pseudo_label)
from bmvtrack.data.pair_sampler import draw_warp, make_pair
from bmvtrack.data.patch_sampler import AugmentConfig, augmented_patch
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.models.losses import motion_nll
from bmvtrack.metrics import jaccard
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import boxes_from_masks
from bmvtrack.segmentation import fill_rbox, predict_patches, segment_crop

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


class _LeftHalfNet(torch.nn.Module):
    """Marks the left half of every crop as object (or nothing, with ``empty``): a known own mask."""

    def __init__(self, size: int, empty: bool = False) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(patch_size=size)
        self.empty = empty

    def forward(self, x: torch.Tensor, sample: bool = False, generator=None) -> dict[str, torch.Tensor]:
        logits = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        if not self.empty:
            logits[:, 1, :, : x.shape[-1] // 2] = 5.0
        return {"logits": logits}


def test_pseudo_label_keeps_the_networks_own_object_inside_the_box_and_nothing_outside(moving_root: Path) -> None:
    _, _, frame, _, box = first_frame(moving_root)
    inside = fill_rbox(box, frame.shape[:2])
    prob, _ = segment_crop(_LeftHalfNet(32), frame, box)
    label = pseudo_label(_LeftHalfNet(32), frame, box, core=0.0)
    assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1, IGNORE}
    assert (label[~inside] == 0).all()  # outside the box: background, even where the network saw object
    assert ((prob > 0.5) & ~inside).any()
    assert np.array_equal(label == 1, inside & (prob > 0.5))
    assert np.array_equal(label == IGNORE, inside & (prob <= 0.5)) and (label == IGNORE).any()
    # a network that sees nothing in the box gets the filled box
    assert np.array_equal(pseudo_label(_LeftHalfNet(32, empty=True), frame, box, core=0.0) == 1, inside)


def test_pseudo_label_survives_the_augmentations_with_its_ignore_value(moving_root: Path) -> None:
    _, _, frame, _, box = first_frame(moving_root)
    label = pseudo_label(_LeftHalfNet(32), frame, box, core=0.0)
    aug = AugmentConfig(rotate=20.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, crop = augmented_patch(frame, label, box, 32, aug, rng)
        assert crop.dtype == np.uint8 and set(np.unique(crop)) <= {0, 1, IGNORE}
    tuned = adapt_to_box(tiny_model(), frame, box, AdaptConfig(steps=2, lr=1e-3, batch_size=4, label="pseudo"))
    assert not tuned.training
    with pytest.raises(ValueError, match="label"):
        AdaptConfig(label="mask")  # type: ignore[arg-type]


def test_pseudo_label_does_not_teach_a_box_shaped_mask(moving_root: Path) -> None:
    """A network that already segments the object (here: adapted on frame 0's mask) is adapted again
    from the box alone. The filled box teaches it to mark the box's corners; its own mask does not."""
    ds, track, frame, mask, box = first_frame(moving_root)
    assert mask.sum() < 0.7 * fill_rbox(box, mask.shape).sum()  # the object is not box-shaped
    good = adapt_segmenter(tiny_model(), frame, mask, box, FAST)
    scores = {}
    for label in ("box", "pseudo"):
        tuned = adapt_to_box(good, frame, box, replace(FAST, label=label, core=0.5))
        j, extra = [], []
        for i in (3, 6, 9):
            m = ds.mask(track, i)
            patch, truth = augmented_patch(ds.frame(track, i), m, boxes_from_masks([m])[0], tuned.cfg.patch_size,
                                           AugmentConfig(), None)
            pred = predict_patches(tuned, patch[None])[0][0] > 0.5
            j.append(jaccard(pred, truth))
            extra.append((pred & ~truth).sum() / truth.sum())  # false object area, relative to the object
        scores[label] = (float(np.mean(j)), float(np.mean(extra)))
    (j_box, extra_box), (j_pseudo, extra_pseudo) = scores["box"], scores["pseudo"]
    assert extra_pseudo < extra_box - 0.15 and j_pseudo > j_box, scores


def test_adapted_models_are_made_once_kept_on_disk_and_remade_when_corrupt(moving_root: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    _, _, frame, _, box = first_frame(moving_root)
    cfg = AdaptConfig(steps=2, lr=1e-2, batch_size=4)
    made: list[int] = []

    def first():
        made.append(1)
        return frame, box

    base = tiny_model()
    one = AdaptedModels(base, cfg, tmp_path).get("a.png#1", "seq/1", first)
    assert made == [1] and not torch.equal(one.state_dict()["outc.weight"], base.state_dict()["outc.weight"])
    again = AdaptedModels(tiny_model(), cfg, tmp_path)  # a later run: loaded, not adapted
    two = again.get("a.png#1", "seq/1", first)
    assert made == [1] and again.get("a.png#1", "seq/1", first) is two
    assert all(torch.equal(v, two.state_dict()[k]) for k, v in one.state_dict().items())
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(b"not a checkpoint")
    three = AdaptedModels(tiny_model(), cfg, tmp_path).get("a.png#1", "seq/1", first)
    assert made == [1, 1] and str(path) in capsys.readouterr().err
    assert all(torch.equal(v, three.state_dict()[k]) for k, v in one.state_dict().items())
    with pytest.raises(ValueError, match="steps"):
        AdaptedModels(base, AdaptConfig(steps=0))


def test_cache_folder_is_specific_to_the_network_file_and_the_adaptation(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights two")
    cfg = AdaptConfig()
    assert cache_folder(tmp_path, a, cfg) == cache_folder(tmp_path, a, AdaptConfig())
    assert len({cache_folder(tmp_path, a, cfg), cache_folder(tmp_path, b, cfg),
                cache_folder(tmp_path, a, replace(cfg, core=0.25))}) == 3


# ------------------------------------------------------------------------------------ the motion network


def tiny_motion_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = ModelConfig(input="pair", in_channels=7, reference="box", patch_size=32, base_width=8, decoder_width=8,
                      z_channels=8, keypoints=4)
    return build_model(cfg, np.zeros(5), np.diag([0.04, 0.04, 0.01, 0.04, 0.04])).eval()


@torch.no_grad()
def warp_scores(net: torch.nn.Module, frame: np.ndarray, mask: np.ndarray, box, n: int = 32,
                seed: int = 99, scale: float = 1.0) -> tuple[float, float]:
    """Mean NLL of the true motion and mean J of the decoded mask, over ``n`` pairs of ``frame`` and
    its own warps by prior draws, the prior's std × ``scale`` (``seed``: other draws than the adaptation's)."""
    rng = np.random.default_rng(seed)
    buffers = {k.rsplit(".", 1)[-1]: v for k, v in net.state_dict().items() if "prior_" in k}
    mean, chol = buffers["prior_mean"].double().numpy(), np.linalg.cholesky(buffers["prior_cov"].double().numpy())
    items = []
    for _ in range(n):
        target, warp = draw_warp(box, mean, scale * chol, 0.25, rng)
        items.append(make_pair(frame, mask, box, frame, mask, target, net.cfg.patch_size, AdaptConfig().pair_augment, "box",
                               None, warp))
    out = net(patches_to_tensor(np.stack([x for x, _, _ in items])), sample=False)
    r = torch.from_numpy(np.stack([r for _, _, r in items])).to(out["mu"].dtype)
    nll = float(motion_nll(out["mu"], out["scale_tril"], r).mean())
    prob = torch.softmax(out["logits"], 1)[:, 1].numpy()
    j = float(np.mean([jaccard(p > 0.5, y > 0) for p, (_, y, _) in zip(prob, items)]))
    return nll, j


def test_motion_network_adaptation_learns_the_frames_motions_and_object(moving_root: Path) -> None:
    """A motion network adapted on frame 0's box (adapt_to_box dispatches on model.input: pair)
    predicts motions of that frame's warps it never trained on better, segments the object better,
    and leaves its base alone; the same config gives the same copy."""
    _, _, frame, mask, box = first_frame(moving_root)
    base = tiny_motion_net()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    cfg = replace(FAST, label="box")
    tuned = adapt_to_box(base, frame, box, cfg)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert not tuned.training and not any(p.requires_grad for p in tuned.parameters())
    (nll0, j0), (nll1, j1) = warp_scores(base, frame, mask, box), warp_scores(tuned, frame, mask, box)
    assert nll1 < nll0 - 0.2, (nll0, nll1)
    assert j1 > j0 + 0.3, (j0, j1)
    again = adapt_to_box(base, frame, box, cfg)
    assert all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), again.state_dict().values()))
    label = pseudo_label(base, frame, box, 0.5)  # a pair network's own mask of the frame at the box
    inside = fill_rbox(box, frame.shape[:2])
    assert set(np.unique(label)) <= {0, 1, IGNORE} and not label[~inside].any() and (label == 1).any()


def test_motion_network_adaptation_with_wider_warps_predicts_wider_motions(moving_root: Path) -> None:
    """warp_scale draws the adaptation's warps from the prior widened (as pretraining's
    pairs.warp_scale): the copy adapted so predicts warps of that width better than one adapted on
    the prior's own."""
    _, _, frame, mask, box = first_frame(moving_root)
    base = tiny_motion_net()
    narrow = adapt_to_box(base, frame, box, replace(FAST, label="box"))
    wide = adapt_to_box(base, frame, box, replace(FAST, label="box", warp_scale=3.0))
    nll_narrow, _ = warp_scores(narrow, frame, mask, box, scale=3.0)
    nll_wide, _ = warp_scores(wide, frame, mask, box, scale=3.0)
    assert nll_wide < nll_narrow - 0.5, (nll_narrow, nll_wide)
    with pytest.raises(ValueError, match="warp_scale > 0"):
        AdaptConfig(warp_scale=0.0)
