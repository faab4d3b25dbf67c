"""The motion posterior: box-relative motion ↔ G_t, training pairs, the pair βMVUnet, its tracker,
its pretraining and evaluation (tiny models on tiny synthetic data; real runs, real outcomes)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bmvtrack.agents.baselines import make_tracker
from bmvtrack.agents.baselines.motion_posterior import MotionPosteriorTracker, load_motion_posterior
from bmvtrack.checkpoint import CheckpointError
from bmvtrack.config import ConfigError
from bmvtrack.data.pair_sampler import PairConfig, PairSampler
from bmvtrack.data.patch_sampler import AugmentConfig
from bmvtrack.data.readers import DataConfig, TrackFilter, VideoDataset
from bmvtrack.data.synth import SynthConfig, generate_dataset
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.models.losses import motion_nll
from bmvtrack.motion import (
    MotionPrior, PriorError, RBox, apply_motion, apply_relative, box_warp, rbox_corners, rbox_from_mask,
    relative_between, relative_to_action, rotated_iou,
)
from bmvtrack.pretrain_vae import load_pretrain_config, train

BOXES = [RBox(100, 80, 40, 20, 10), RBox(20, 200, 12, 30, -40), RBox(300, 30, 60, 60, 44)]


@pytest.mark.parametrize("b0", BOXES)
def test_relative_motion_round_trips_and_converts_to_g_t_exactly(b0: RBox) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = np.array([rng.normal(0, 0.2), rng.normal(0, 0.2), rng.uniform(-0.6, 0.6), rng.normal(0, 0.3),
                      rng.normal(0, 0.3)])
        b1 = apply_relative(b0, r)
        np.testing.assert_allclose(relative_between(b0, b1), r, atol=1e-9)
        moved = apply_motion(b0, relative_to_action(b0, r, 320, 240), 320, 240)
        np.testing.assert_allclose(moved.as_array(), b1.as_array(), atol=1e-6)


def test_relative_motion_does_not_depend_on_where_the_box_is() -> None:
    """The point of the box-relative form: G_t's translation changes with the box's position, r does not."""
    step = (RBox(50, 50, 30, 20, 5), RBox(53, 49, 33, 20, 9))
    far = [RBox(b.cx + 200, b.cy + 150, b.w, b.h, b.angle) for b in step]
    np.testing.assert_allclose(relative_between(*step), relative_between(*far), atol=1e-12)
    g_near = relative_to_action(step[0], relative_between(*step), 320, 240)
    g_far = relative_to_action(far[0], relative_between(*far), 320, 240)
    assert abs(g_near[3] - g_far[3]) > 0.01  # G_t's Δx differs for the same box motion


def test_box_warp_carries_one_box_onto_the_other() -> None:
    a, b = BOXES[0], apply_relative(BOXES[0], [0.1, -0.2, 0.3, 0.2, -0.1])
    warp = box_warp(a, b)
    pts = np.c_[rbox_corners(a), np.ones(4)] @ warp.T
    np.testing.assert_allclose(pts, rbox_corners(b), atol=1e-9)


def test_prior_units_are_recorded_and_checked(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 5)) * 0.1
    prior = MotionPrior.from_samples(x, units="relative")
    prior.save(tmp_path / "p.json")
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["units"] == "relative" and d["variables"][0] == "log_s_x"
    assert MotionPrior.load(tmp_path / "p.json").units == "relative"
    with pytest.raises(PriorError, match="units"):
        MotionPrior.from_samples(x, units="pixels")


# ------------------------------------------------------------------------------------ data


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pair_data")
    cfg = SynthConfig(width=160, height=120, frames=8, objects=(1, 1), leave_prob=0.0, occlusion_prob=0.0)
    generate_dataset(root, "davis2017", videos=3, seed=3, cfg=cfg, progress=False)
    return root


def _dataset(root: Path, split: str = "train") -> VideoDataset:
    return VideoDataset.from_config(DataConfig(root=str(root), layout="davis2017", split=split,
                                               filters=TrackFilter(absent="keep", max_box_fraction=1.0)))


def test_a_warped_pair_shows_the_motion_it_is_labelled_with(pair_data: Path) -> None:
    """No jitter, no flip: the box fitted to the warped mask in the search crop is the reference box
    moved by the labelled motion (in crop pixels), up to the pixel grid."""
    ds = _dataset(pair_data)
    prior_cov = np.diag([0.1, 0.1, 0.1, 0.08, 0.08]) ** 2
    still = AugmentConfig(jitter_shift=0, jitter_scale=0, flip=False, colour=0)
    ps = PairSampler(ds, 96, still, pairs=PairConfig(warp_fraction=1.0, mask_noise=0), prior_mean=np.zeros(5),
                     prior_cov=prior_cov)
    rng = np.random.default_rng(0)
    checked = 0
    for i in range(0, len(ps), 3):
        x, label, r = ps.sample(i, rng)
        ref = rbox_from_mask(x[..., 3] > 0)
        got = rbox_from_mask(label)
        if ref is None or got is None or ref.w < 8 or ref.h < 8:
            continue
        # in the crop, translation r[3:] is a fraction of the window, i.e. of the 96-px crop side
        shift = np.array([got.cx - ref.cx, got.cy - ref.cy]) / 96
        np.testing.assert_allclose(shift, r[3:], atol=0.04)
        checked += 1
    assert checked >= 3


def test_real_pairs_are_labelled_with_the_annotated_motion_and_flips_mirror_it(pair_data: Path) -> None:
    ds = _dataset(pair_data)
    ps = PairSampler(ds, 64, pairs=PairConfig(warp_fraction=0.0))
    x, label, r = ps.sample(0)
    ti, fi = ps.items[0]
    np.testing.assert_allclose(r, relative_between(ps.boxes[ti][fi], ps.boxes[ti][fi + 1]), atol=1e-6)
    assert x.shape == (64, 64, 7) and x.dtype == np.uint8 and label.shape == (64, 64) and label.any()
    flip_only = AugmentConfig(jitter_shift=0, jitter_scale=0, flip=True, colour=0)
    ps_flip = PairSampler(ds, 64, flip_only, pairs=PairConfig(warp_fraction=0.0, mask_noise=0))
    for seed in range(8):  # some draw flips
        xf, lf, rf = ps_flip.sample(0, np.random.default_rng(seed))
        if not np.array_equal(xf, x):
            np.testing.assert_array_equal(xf, x[:, ::-1])
            np.testing.assert_allclose(rf, r * np.array([1, 1, -1, -1, 1]), atol=1e-6)
            return
    pytest.fail("no flip in 8 draws")


def test_warped_pairs_need_the_prior(pair_data: Path) -> None:
    ps = PairSampler(_dataset(pair_data), 32, pairs=PairConfig(warp_fraction=1.0))
    with pytest.raises(RuntimeError, match="prior"):
        ps.sample(0, np.random.default_rng(0))


def test_rollout_pairs_start_from_the_boxes_a_tracker_held(pair_data: Path, tmp_path: Path) -> None:
    """``pairs.rollouts``: a real pair's reference box is the one the tracker held at t (its output,
    or the perturbed box it was re-initialised on before t + 1), labelled with the move onto the
    annotation at t + 1; boxes the network could not learn from are left out."""
    from bmvtrack.data.images import DatasetError
    from bmvtrack.data.pair_sampler import rollout_target, usable_reference
    from bmvtrack.evaluate import command as evaluate
    from bmvtrack.evaluate import load_run_results

    run = tmp_path / "zero"
    assert evaluate.main(["--data", str(pair_data), "--layout", "davis2017", "--split", "train", "--trackers", "zero",
                          "--perturb-every", "3", "--perturb-shift", "0.1", "--out", str(run), "--no-progress",
                          "--no-wandb"]) == 0
    ds = _dataset(pair_data)
    still = AugmentConfig(jitter_shift=0, jitter_scale=0, flip=False, colour=0)
    ps = PairSampler(ds, 64, still, pairs=PairConfig(warp_fraction=0.0, mask_noise=0, rollouts=[str(run)],
                                                     rollout_fraction=1.0))
    results = {r.sequence: r for r in load_run_results(run)}
    names = [tr.name for tr in ds.tracks()]
    expected = {}
    for ti, fi in ps.items:
        res = results[names[ti]]
        held = res.boxes[fi]
        if fi + 1 in res.perturbed_frames:
            held = res.perturbed_boxes[list(res.perturbed_frames).index(fi + 1)]
        held = RBox(*(float(v) for v in held))
        if usable_reference(held, ps.boxes[ti][fi + 1], 0.25):
            expected[(ti, fi)] = held
    assert set(ps.rollout_refs) == set(expected) and len(expected) >= 3
    assert any(fi + 1 in results[names[ti]].perturbed_frames for ti, fi in expected)
    moved = 0
    for i, item in enumerate(ps.items):
        _, _, r = ps.sample(i, np.random.default_rng(i))
        ti, fi = item
        start = expected.get(item, ps.boxes[ti][fi])  # no usable rollout box: the annotation's (no jitter here)
        np.testing.assert_allclose(r, relative_between(start, rollout_target(start, ps.boxes[ti][fi + 1])), atol=1e-5)
        moved += item in expected and not np.allclose(start.as_array(), ps.boxes[ti][fi].as_array())
    assert moved >= 3
    # validation pairs (no rng) stay at the annotation
    ti, fi = next(iter(expected))
    _, _, r = ps.sample(ps.items.index((ti, fi)))
    np.testing.assert_allclose(r, relative_between(ps.boxes[ti][fi], ps.boxes[ti][fi + 1]), atol=1e-6)
    # a box the network cannot see the object from is no training reference
    b = ps.boxes[ti][fi + 1]
    assert not usable_reference(RBox(b.cx + 3 * b.w, b.cy, b.w, b.h, b.angle), b, 0.25)
    assert not usable_reference(RBox(b.cx, b.cy, b.w * 5, b.h, b.angle), b, 0.25)
    wide = RBox(b.cx, b.cy, b.w * 1.6, b.h, b.angle)
    assert usable_reference(wide, b, 0.25) and not usable_reference(wide, b, 0.25, max_scale=1.5)
    # the same box written with its sides swapped and turned by 90°: no move at all
    turned = RBox(b.cx, b.cy, b.h, b.w, b.angle + 90)
    assert usable_reference(turned, b, 0.25)
    np.testing.assert_allclose(relative_between(turned, rollout_target(turned, b)), 0, atol=1e-9)
    # a run on other data is an error naming it
    with pytest.raises(DatasetError, match="zero: none of its tracks"):
        PairSampler(_dataset(pair_data, "val"), 64, pairs=PairConfig(rollouts=[str(run)]))


# ------------------------------------------------------------------------------------ network


def _pair_cfg(**kw: object) -> ModelConfig:
    base = dict(input="pair", in_channels=7, patch_size=32, base_width=8, decoder_width=8, z_channels=8,
                keypoints=4)
    base.update(kw)
    return ModelConfig(**base)


def test_pair_model_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="in_channels 7"):
        ModelConfig(input="pair")
    with pytest.raises(ConfigError, match="cholesky"):
        _pair_cfg(bottleneck="batch")
    with pytest.raises(ConfigError, match="correlation needs input pair"):
        ModelConfig(correlation=8)
    assert _pair_cfg(correlation=8).feature_dim == _pair_cfg().feature_dim + 3


def test_the_template_matcher_finds_where_the_box_content_went() -> None:
    """Even untrained, the normalised correlation peaks where the reference's middle moved to:
    the answer's sign and size follow the shift (x, y in [-1, 1] of the crop; 12 px of 96 = 0.25)."""
    import cv2

    from bmvtrack.models.networks import TemplateMatcher
    from bmvtrack.models.preprocess import patches_to_tensor

    torch.manual_seed(0)
    matcher = TemplateMatcher(16, 0.01).eval()
    img = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8), (0, 0), 2)
    for dx, dy in ((0, 0), (12, 0), (-12, 8), (0, -12)):
        moved = np.roll(np.roll(img, dx, axis=1), dy, axis=0)
        x = np.concatenate([img, np.zeros((96, 96, 1), np.uint8), moved], -1)[None]
        with torch.no_grad():
            px, py, sharp = matcher(patches_to_tensor(x))[0].tolist()
        assert abs(px - 2 * dx / 96) < 0.1 and abs(py - 2 * dy / 96) < 0.1, (dx, dy, px, py)
        assert 0.0 < sharp <= 1.0


def test_motion_nll_is_the_multivariate_normal_log_density() -> None:
    from torch.distributions import MultivariateNormal

    torch.manual_seed(0)
    a = torch.randn(4, 5, 5)
    cov = a @ a.transpose(-1, -2) + 0.5 * torch.eye(5)
    mu, x = torch.randn(4, 5), torch.randn(4, 5)
    ref = -MultivariateNormal(mu, covariance_matrix=cov).log_prob(x)
    torch.testing.assert_close(motion_nll(mu, torch.linalg.cholesky(cov), x), ref, rtol=1e-5, atol=1e-5)


class _FixedMotion(torch.nn.Module):
    """A stand-in network that always answers the same motion and an all-object mask."""

    def __init__(self, r: np.ndarray) -> None:
        super().__init__()
        self.cfg = _pair_cfg()
        self.r = torch.tensor(r, dtype=torch.float32)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, sample: bool = False) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        logits = torch.zeros(b, 2, x.shape[-2], x.shape[-1])
        logits[:, 1] = 5.0
        return {"mu": self.r.expand(b, 5), "cov": torch.eye(5).expand(b, 5, 5) * 0.01, "logits": logits}


def test_the_tracker_moves_its_box_by_mu_and_reports_the_g_t_that_does() -> None:
    r = np.array([0.05, -0.02, 0.1, 0.03, -0.04])
    tracker = MotionPosteriorTracker(_FixedMotion(r))
    frame = np.zeros((120, 160, 3), np.uint8)
    box = RBox(80, 60, 30, 20, 0)
    tracker.init(frame, box)
    out = tracker.update(frame)
    want = apply_relative(box, r)
    assert rotated_iou(out, want) > 0.999
    again = apply_motion(box, tracker.last_action, 160, 120)
    np.testing.assert_allclose(again.as_array(), out.as_array(), atol=1e-6)
    assert tracker.last_mask is not None and tracker.last_mask.any()
    mu, cov = tracker.last_posterior
    np.testing.assert_allclose(mu, r, atol=1e-6)


def test_the_centre_tracker_moves_the_centre_by_mu_and_holds_size_and_angle() -> None:
    r = np.array([0.05, -0.02, 0.1, 0.03, -0.04])
    tracker = make_tracker("motion-posterior-centre", model=_FixedMotion(r))
    frame = np.zeros((120, 160, 3), np.uint8)
    box = RBox(80, 60, 30, 20, 10)
    tracker.init(frame, box)
    out = tracker.update(frame)
    moved = apply_relative(box, r)
    np.testing.assert_allclose([out.cx, out.cy], [moved.cx, moved.cy], atol=1e-6)
    np.testing.assert_allclose([out.w, out.h, out.angle], [box.w, box.h, box.angle], atol=1e-9)
    np.testing.assert_allclose(tracker.last_posterior[0], r, atol=1e-6)  # the network's posterior, unchanged


def test_the_flip_tracker_cancels_what_the_network_reads_from_looks_alone() -> None:
    """A network that answers the same motion for a pair and its mirror image is reading the look,
    not the motion: merged with the mirror, its turn and x-motion cancel; scales and y stay."""
    r = np.array([0.05, -0.02, 0.1, 0.03, -0.04])
    tracker = MotionPosteriorTracker(_FixedMotion(r), flip=True)
    frame = np.zeros((120, 160, 3), np.uint8)
    tracker.init(frame, RBox(80, 60, 30, 20, 0))
    tracker.update(frame)
    mu, cov = tracker.last_posterior
    np.testing.assert_allclose(mu, [0.05, -0.02, 0.0, 0.0, -0.04], atol=1e-6)
    assert cov[2, 2] > 0.01 and cov[3, 3] > 0.01  # the disagreement widens Σ′ where it cancelled
    np.testing.assert_allclose(cov[0, 0], 0.01, atol=1e-6)


def test_the_tracker_refuses_a_single_crop_network(tmp_path: Path) -> None:
    from bmvtrack.checkpoint import save_checkpoint

    cfg = ModelConfig(patch_size=32, base_width=8, decoder_width=8, z_channels=8)
    net = build_model(cfg, np.ones(5), np.eye(5) * 0.01)
    from bmvtrack.config import to_dict

    save_checkpoint(tmp_path / "single.pt", {"kind": "bmvae", "version": 1, "model": net.state_dict(),
                                             "model_config": to_dict(cfg)})
    with pytest.raises(CheckpointError, match="single-crop"):
        load_motion_posterior(tmp_path / "single.pt")


# ------------------------------------------------------------------------------------ pretraining


def _pair_overrides(data: Path, out: Path, **extra: object) -> list[str]:
    base: dict[str, object] = {
        "model.input": "pair", "model.in_channels": 7, "model.keypoints": 4, "model.beta": 0.1,
        "model.reference": "box", "model.correlation": 8,
        "model.patch_size": 32, "model.base_width": 8, "model.decoder_width": 8, "model.z_channels": 8,
        "data.root": str(data), "prior": str(out / "relative_prior.json"), "out_dir": str(out),
        "batch_size": 4, "epochs": 8, "log_every": 1, "checkpoint_every": 0, "time_budget_min": 0,
        "lr_min": 1e-3, "lr_max": 3e-3, "cycle_steps": 20, "wandb.enabled": False,
        "sample_masks": 2, "val_max_patches": 16,
    }
    base.update(extra)
    return [f"{k}={json.dumps(v)}" for k, v in base.items()]


def test_pretraining_a_motion_posterior_end_to_end(pair_data: Path, tmp_path: Path) -> None:
    """Pairs train, the NLL falls, the box-relative prior is measured and stored, the checkpoint is a
    motion-posterior tracker, and evaluate_vae reports its calibration and J&F."""
    cfg = load_pretrain_config(None, _pair_overrides(pair_data, tmp_path))
    res = train(cfg, progress=False)
    rows = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    nll = [r["train/nll"] for r in rows if "train/nll" in r]
    assert len(nll) >= 10 and np.mean(nll[-3:]) < np.mean(nll[:3])
    val = [r for r in rows if "val/cover90" in r]
    assert val and all(0.0 <= r["val/cover90"] <= 1.0 and math.isfinite(r["val/prior_nll"]) for r in val)
    assert all(r["val/skill_dx_win"] <= 1.0 and math.isfinite(r["val/skill_sin_theta"]) for r in val)
    assert MotionPrior.load(tmp_path / "relative_prior.json").units == "relative"

    model, mcfg = load_motion_posterior(res.checkpoint)
    assert mcfg.input == "pair"
    ds = _dataset(pair_data, "val")
    tr = ds.tracks()[0]
    tracker = make_tracker("motion-posterior", model=model)
    tracker.init(ds.frame(tr, 0), rbox_from_mask(ds.mask(tr, 0)))
    for i in range(1, len(tr)):
        box = tracker.update(ds.frame(tr, i))
        assert np.isfinite(box.as_array()).all()

    from bmvtrack.calibration import mse_skill
    from bmvtrack.evaluate_vae import VaeEvalConfig, evaluate, model_prior, report_csv, report_markdown
    from bmvtrack.motion import RELATIVE_NAMES

    for crop in ("gt", "tracking"):
        report = evaluate(model, ds, VaeEvalConfig(crop=crop))
        o = report.overall
        assert 0.0 <= o["JF"] <= 1.0 and 0.0 <= o["cover90"] <= 1.0 and 0.0 <= o["prior_cover90"] <= 1.0
        assert math.isfinite(o["nll_gain"]) and o["kl"] > 0.0
        assert sum(len(t.motions) for t in report.tracks) == o["n_patches"]
        # per component, μ′ against the prior mean over the pooled pairs, in the CSV and the report
        mse, prior_mse, skill = mse_skill(np.concatenate([t.motions for t in report.tracks]),
                                          np.concatenate([t.mu for t in report.tracks]), model_prior(model)[0])
        for i, name in enumerate(RELATIVE_NAMES):
            assert o[f"mse_{name}"] == pytest.approx(mse[i]) and o[f"prior_mse_{name}"] == pytest.approx(prior_mse[i])
            assert o[f"skill_{name}"] == pytest.approx(skill[i])
        assert "| dx_win |" in report_markdown(report) and "skill_dx_win" in report_csv(report)
    adapted = evaluate(model, ds, VaeEvalConfig(crop="gt", adapt_steps=2, max_tracks=1))  # frame 0's pairs
    assert 0.0 <= adapted.overall["JF"] <= 1.0

    # the adapted tracker fine-tunes a copy at its first init and keeps it when re-initialised
    from bmvtrack.adaptation import AdaptConfig

    tracker = make_tracker("motion-posterior-adapt", model=model,
                           adapt=AdaptConfig(steps=2, batch_size=2))
    tracker.init(ds.frame(tr, 0), rbox_from_mask(ds.mask(tr, 0)))
    copy = tracker.model
    assert copy is not model and any(not torch.equal(a, b) for a, b in zip(copy.state_dict().values(),
                                                                          model.state_dict().values()))
    tracker.update(ds.frame(tr, 1))
    tracker.init(ds.frame(tr, 1), rbox_from_mask(ds.mask(tr, 1)))
    assert tracker.model is copy


def test_a_motion_posterior_refuses_a_prior_over_g_t(pair_data: Path, tmp_path: Path) -> None:
    MotionPrior.paper().save(tmp_path / "g_prior.json")
    cfg = load_pretrain_config(None, _pair_overrides(pair_data, tmp_path / "run", prior=str(tmp_path / "g_prior.json")))
    with pytest.raises(PriorError, match="relative"):
        train(cfg, progress=False)
