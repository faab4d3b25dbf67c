"""VAE evaluation (Tables 3–5) and the shared segmentation library: real outcomes on tiny data.

A *perfect segmenter* is built honestly: the dataset's frames are replaced by pictures of their
own annotation (object white, rest black) and the model's logits are read off its input, so the
network really does output the ground-truth patch; everything else (crop placement, paste-back at
full resolution, thresholding, DAVIS J/F) is the code under test.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bmvtrack.checkpoint import CheckpointError, save_checkpoint
from bmvtrack.config import to_dict
from bmvtrack.data.readers import TrackFilter, VideoDataset
from bmvtrack.data.synth import SynthConfig, generate_dataset
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.models.preprocess import MEAN, STD
from bmvtrack.motion import rbox_from_mask
from bmvtrack.segmentation import (
    box_from_prob,
    fill_rbox,
    load_segmenter,
    mask_from_prob,
    segment_crop,
)
from bmvtrack.evaluate_vae import VaeEvalConfig, evaluate, report_markdown

from bmvtrack.motion import PAPER_COV as PRIOR_COV  # the paper's prior (appendix 2.2) and Table 1
from bmvtrack.motion import PAPER_MEAN as PRIOR_MEAN
from bmvtrack.motion import PAPER_TABLE1_STD as TABLE1_STD


def tiny_cfg(**kw: object) -> ModelConfig:
    base: dict[str, object] = {"patch_size": 32, "base_width": 8, "decoder_width": 8, "z_channels": 8, "part_size": 4}
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def tiny_model(seed: int = 0, **kw: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_cfg(**kw), PRIOR_MEAN, PRIOR_COV, TABLE1_STD).eval()


class OracleModel(nn.Module):
    """Outputs the mask pictured in its input (white = object) as logits; posterior from a real tiny net."""

    def __init__(self, patch_size: int = 96, empty: bool = False, shift: int = 0) -> None:
        super().__init__()
        self.net = tiny_model(patch_size=32)
        self.encoder = self.net.encoder
        self.cfg = dataclasses.replace(self.net.cfg, patch_size=patch_size)
        self.empty = empty
        self.shift = shift  # > 0: the mean mask is off by `shift` px; samples are off by a random amount

    def forward(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> dict:
        out = self.net(x, sample=sample, generator=generator)
        grey = x[:, 0] * STD[0] + MEAN[0]  # undo the standardisation: 0 … 1
        fg = torch.full_like(grey, -20.0) if self.empty else 20.0 * (grey - 0.5)
        if self.shift:
            dev = (out["z"] - out["mu"][..., None]).mean(dim=(1, 2))  # 0 for the posterior mean
            fg = torch.stack([torch.roll(f, self.shift + round(40 * float(d)), dims=-1) for f, d in zip(fg, dev)])
        out["logits"] = torch.stack([torch.zeros_like(fg), fg], dim=1)
        return out


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(width=160, height=120, frames=6, objects=(1, 1), leave_prob=0.0, occlusion_prob=0.0)
    return generate_dataset(root, "davis2017", videos=2, seed=0, cfg=cfg, progress=False)


def open_ds(root: Path) -> VideoDataset:
    return VideoDataset(root, "davis2017", filters=TrackFilter(absent="keep", max_box_fraction=1.0))


def mask_frames(ds: VideoDataset) -> VideoDataset:
    """Make every frame a picture of its track's annotation (for the oracle segmenter)."""
    ds.frame = lambda tr, i: np.repeat((ds.mask(tr, i) * 255).astype(np.uint8)[..., None], 3, axis=-1)  # type: ignore[method-assign]
    return ds


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    m = tiny_model()
    save_checkpoint(path, {"kind": "bmvae", "model": m.state_dict(), "model_config": to_dict(m.cfg)})
    return path


# ----------------------------------------------------------------------------- checkpoints


def test_load_segmenter_round_trip(tiny_checkpoint: Path) -> None:
    model, cfg = load_segmenter(tiny_checkpoint)
    assert cfg.patch_size == 32 and not model.training
    ref = tiny_model()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x, sample=False)["logits"], ref(x, sample=False)["logits"], atol=1e-6)


def test_other_architecture_is_a_one_line_checkpoint_error(tmp_path: Path) -> None:
    m = tiny_model(arch="mvae")
    path = tmp_path / "mvae_weights.pt"
    save_checkpoint(path, {"kind": "bmvae", "model": m.state_dict(), "model_config": to_dict(tiny_cfg(arch="mvunet"))})
    with pytest.raises(CheckpointError) as exc:
        load_segmenter(path)
    msg = str(exc.value)
    assert "mvae_weights.pt" in msg and "arch=mvunet" in msg and "\n" not in msg


def test_truncated_or_missing_checkpoint_names_the_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pt"
    data = tiny_checkpoint.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_segmenter(cut)
    with pytest.raises(CheckpointError, match="nowhere.pt"):
        load_segmenter(tmp_path / "nowhere.pt")
    wrong = tmp_path / "policy.pt"
    save_checkpoint(wrong, {"kind": "policy", "model": {}})
    with pytest.raises(CheckpointError, match="policy.pt"):
        load_segmenter(wrong)


# ----------------------------------------------------------------------------- segmentation


def test_box_from_prob_keeps_all_components_or_the_largest() -> None:
    prob = np.zeros((100, 100), np.float32)
    prob[10:30, 10:30] = 0.9
    prob[60:65, 70:90] = 0.8
    all_box = box_from_prob(prob, keep="all")
    big = box_from_prob(prob, keep="largest")
    assert all_box is not None and big is not None
    assert big.w * big.h < 0.5 * all_box.w * all_box.h
    assert (big.cx, big.cy) == pytest.approx((19.5, 19.5), abs=0.6)
    assert box_from_prob(np.full((20, 20), 0.2, np.float32)) is None
    assert mask_from_prob(prob, 0.85).sum() == 400


def test_segment_crop_of_oracle_reproduces_the_mask(synth_root: Path) -> None:
    ds = mask_frames(open_ds(synth_root))
    tr = ds.tracks()[0]
    gt = ds.mask(tr, 2)
    prob, win = segment_crop(OracleModel(), ds.frame(tr, 2), rbox_from_mask(gt.astype(np.uint8)))
    assert prob.shape == gt.shape and prob.dtype == np.float32
    pred = prob > 0.5
    assert (pred & gt).sum() / (pred | gt).sum() > 0.93
    assert 0 <= win.x0 < win.x1 <= gt.shape[1]


# ----------------------------------------------------------------------------- evaluation


def test_perfect_segmenter_scores_about_one_and_box_reference_less(synth_root: Path) -> None:
    ds = mask_frames(open_ds(synth_root))
    rep = evaluate(OracleModel(), ds, VaeEvalConfig(crop="gt"))
    o = rep.overall
    assert o["J"] > 0.93 and o["F"] > 0.97 and o["JF"] > 0.95
    assert 0.0 < o["box_JF"] < 0.99 and o["box_JF"] < o["JF"]
    assert o["mae"] < 0.02 and o["max_f"] > 0.95 and o["mse"] < 0.02
    assert np.isfinite(o["maha_batch"]) and np.isfinite(o["maha_patch"]) and o["maha_batch"] >= 0
    # the honest tracking mode follows the object just as well with a perfect segmenter
    trk = evaluate(OracleModel(), ds, VaeEvalConfig(crop="tracking")).overall
    assert trk["JF"] > 0.9 and trk["misses"] == 0


def test_filled_box_reference_matches_its_definition(synth_root: Path) -> None:
    ds = open_ds(synth_root)
    tr = ds.tracks()[0]
    gt = ds.mask(tr, 0)
    box = rbox_from_mask(gt.astype(np.uint8))
    filled = fill_rbox(box, gt.shape)
    assert (filled & gt).sum() / gt.sum() > 0.97  # the box covers the object …
    assert filled.sum() > gt.sum()  # … and more than the object
    assert not fill_rbox(None, gt.shape).any()


def test_best_of_n_at_least_deterministic(synth_root: Path) -> None:
    ds = mask_frames(open_ds(synth_root))
    model = OracleModel(shift=4)  # mean mask 4 px off; stochastic samples scattered around it
    cfg = VaeEvalConfig(crop="perturbed", best_of=6, seed=3)
    o = evaluate(model, ds, cfg).overall
    assert o["J"] < 0.95  # the deterministic mask really is off
    assert o["best_J"] > o["J"] and o["best_JF"] > o["JF"] and o["best_sample_frac"] > 0
    # the perturbation and the samples are seeded: the same run gives the same figures
    again = evaluate(model, ds, cfg).overall
    assert again["JF"] == o["JF"] and again["best_JF"] == o["best_JF"]
    # a real (untrained) network: best-of-N never falls below the posterior mean in J
    real = evaluate(tiny_model(), open_ds(synth_root), VaeEvalConfig(crop="gt", best_of=3)).overall
    assert real["best_J"] >= real["J"]


def test_command_writes_csv_and_markdown(synth_root: Path, tiny_checkpoint: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from bmvtrack.evaluate_vae import main

    out = tmp_path / "eval"
    rc = main(["--checkpoint", str(tiny_checkpoint), "--data", str(synth_root), "--crop", "tracking",
               "--best-of", "2", "--out", str(out), "--no-wandb", "--quiet"])
    assert rc == 0
    rows = list(csv.DictReader((out / "vae_eval_tracking.csv").open()))
    assert rows[-1]["sequence"] == "overall" and len(rows) == len(open_ds(synth_root).tracks()) + 1
    for key in ("J", "F", "JF", "box_JF", "best_JF", "mae", "max_f", "nll", "mse", "maha_batch", "misses"):
        assert key in rows[0]
    assert all(0.0 <= float(r["JF"]) <= 1.0 for r in rows)
    md = (out / "vae_eval_tracking.md").read_text()
    assert "headline" in md and "paper's protocol" in md and "filled in" in md
    assert not list(out.glob(".*.tmp"))
    assert "J&F" in capsys.readouterr().out


def test_command_reports_bad_checkpoint_in_one_line(synth_root: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from bmvtrack.evaluate_vae import main

    rc = main(["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(synth_root), "--no-wandb"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing.pt" in err and err.count("\n") == 1


def test_overlap_keeps_the_components_touching_the_anchor() -> None:
    prob = np.zeros((100, 100), np.float32)
    prob[10:30, 10:30] = 0.9  # the target, under the anchor
    prob[10:30, 34:40] = 0.9  # a piece of it just outside the anchor, not connected
    prob[60:95, 50:95] = 0.9  # a large neighbour
    anchor = np.zeros((100, 100), bool)
    anchor[8:32, 8:36] = True
    kept = mask_from_prob(prob, keep="overlap", anchor=anchor)
    assert kept.sum() == 400 + 120  # both pieces that touch the anchor, not the neighbour
    box = box_from_prob(prob, keep="overlap", anchor=anchor)
    assert box is not None and box.cx < 30 and box.cy < 30
    assert mask_from_prob(prob, keep="overlap", anchor=~anchor & (prob == 0)).sum() == prob.astype(bool).sum()
    with pytest.raises(ValueError, match="anchor"):
        mask_from_prob(prob, keep="overlap")


def test_box_in_window_equals_the_fit_on_the_full_pasted_map() -> None:
    """The tracker and the RL cue paste only the window's region; the box must be the one the
    full-frame paste gives, for windows anywhere in the frame (edges included)."""
    import cv2

    from bmvtrack.data.patches import CropWindow, paste_patch
    from bmvtrack.motion import RBox
    from bmvtrack.segmentation import box_in_window

    rng = np.random.default_rng(0)
    hw = (120, 160)
    for _ in range(20):
        x0, y0 = rng.uniform(-0.4, 90), rng.uniform(-0.4, 60)
        win = CropWindow(x0, y0, min(x0 + rng.uniform(20, 70), 160.0), min(y0 + rng.uniform(20, 60), 120.0), 32)
        prob = cv2.GaussianBlur(rng.random((32, 32)).astype(np.float32), (0, 0), 2.0)
        prob = (prob - prob.min()) / (prob.max() - prob.min())
        prev = RBox((win.x0 + win.x1) / 2, (win.y0 + win.y1) / 2, 12.0, 9.0, float(rng.uniform(-40, 40)))
        for keep in ("overlap", "all"):
            local = box_in_window(prob, win, hw, prev, keep=keep)
            full = paste_patch(prob, win, hw)
            anchor = fill_rbox(prev, hw) if keep == "overlap" else None
            ref = box_from_prob(full, keep=keep, reference_angle=prev.angle, anchor=anchor)
            assert (local is None) == (ref is None)
            if ref is not None:
                assert local.as_array() == pytest.approx(ref.as_array(), abs=1e-3)


def test_first_frame_adaptation_raises_j_and_is_labelled(synth_root: Path) -> None:
    """An untrained network fine-tuned on frame 0's annotation segments the later, scored frames."""
    ds = open_ds(synth_root)
    cfg = VaeEvalConfig(crop="gt", max_tracks=2)
    plain = evaluate(tiny_model(), ds, cfg)
    tuned = evaluate(tiny_model(), ds, dataclasses.replace(cfg, adapt_steps=30, adapt_lr=3e-3))
    assert tuned.overall["J"] > plain.overall["J"] + 0.2, (plain.overall["J"], tuned.overall["J"])
    assert "first-frame adaptation" in report_markdown(tuned) and "first-frame adaptation" not in report_markdown(plain)
    with pytest.raises(ValueError):
        VaeEvalConfig(adapt_steps=-1)
