"""scripts/summarize_folds.py: folds pool into one sample of sequences, seeds average per sequence,
calibration pools pairs (each track weighted by its pairs), and the paired interval is reported."""
from __future__ import annotations

from pathlib import Path

import pytest

from bmvtrack.motion import RELATIVE_NAMES


@pytest.fixture(scope="module")
def summarize(load_script):
    return load_script("summarize_folds")


def _seq(tracker: str, seq: str, auc: float, jf: str = "") -> dict[str, object]:
    return {"tracker": tracker, "sequence": seq, "frames": 10, "success_auc": auc, "precision_20": auc,
            "jf": jf, "fps": 50.0}


def test_folds_pool_seeds_average_and_calibration_weighs_pairs(write_csv, tmp_path: Path, summarize) -> None:
    write_csv(tmp_path / "eval-f0" / "sequences.csv",
           [_seq("motion-posterior", "a", 0.6, "0.5"), _seq("zero", "a", 0.4), _seq("motion-posterior", "b", 0.5, "0.4"),
            _seq("zero", "b", 0.45)])
    write_csv(tmp_path / "eval-f1" / "sequences.csv",
           [_seq("motion-posterior", "c", 0.7, "0.6"), _seq("zero", "c", 0.3),
            _seq("motion-posterior", "a", 0.4, "0.5"), _seq("zero", "a", 0.4)])  # "a" again: a second seed
    res, runs = summarize.tracking(tmp_path)
    assert runs == ["eval-f0", "eval-f1"]
    assert res["motion-posterior"]["a"]["success_auc"] == pytest.approx(0.5)
    assert sorted(res["zero"]) == ["a", "b", "c"]
    cal = {"J": 0.5, "F": 0.5, "JF": 0.5, "box_JF": 0.3, "maha_patch": 1.0, "cover50": 0.0, "cover90": 1.0,
           "prior_cover50": 0.5, "prior_cover90": 0.9, "motion_nll": 1.0, "prior_nll": 2.0, "kl": 1.0,
           **{f"{k}_{n}": 1.0 for n in RELATIVE_NAMES for k in ("mse", "prior_mse")}}
    write_csv(tmp_path / "motion-f0" / "eval" / "vae_eval_gt.csv",
           [{"sequence": "a", "n_frames": 9, **cal, "n_pairs": 30},
            {"sequence": "b", "n_frames": 9, **{**cal, "cover50": 1.0, "cover90": 0.0, "mse_dx_win": 5.0}, "n_pairs": 10},
            {"sequence": "overall", "n_frames": 18, **cal, "n_pairs": 40}])
    net = summarize.network(tmp_path, "motion", "gt")
    assert net["cover50"] == pytest.approx(10 / 40) and net["cover90"] == pytest.approx(30 / 40)
    assert net["tracks"] == 2 and net["pairs"] == 40
    # squared errors pool over pairs: 1 − (30·1 + 10·5) / (40·1)
    assert net["skill_dx_win"] == pytest.approx(-1.0) and net["skill_dy_win"] == pytest.approx(0.0)
    assert summarize.main([str(tmp_path)]) == 0
    text = (tmp_path / "summary.md").read_text()
    assert "| motion posterior (pair) | gt | +0.00 | +0.00 | +0.00 | -1.00 | +0.00 |" in text
    assert "3 held-out sequences" in text and "| zero | +0.183 |" in text  # (0.5 + 0.5 + 0.7 − 0.4 − 0.45 − 0.3) / 3
    assert 0.0 <= net["cover90_low"] <= net["cover90"] <= net["cover90_high"] <= 1.0 and net["cover90_low"] < 0.75


def test_another_experiment_is_pooled_alike_and_compared_paired(write_csv, tmp_path: Path, summarize) -> None:
    base, other = tmp_path / "base", tmp_path / "beta1"
    for folder, auc in ((base, 0.5), (other, 0.3)):
        write_csv(folder / "eval-f0" / "sequences.csv",
                  [_seq("motion-posterior", s, auc + 0.01 * i) for i, s in enumerate("abc")] +
                  [_seq("zero", s, 0.4) for s in "abc"])
    assert summarize.main([str(base), "--with", f"β = 1={other}"]) == 0
    text = (base / "summary.md").read_text()
    assert "| motion-posterior (β = 1) | +0.200 |" in text  # the paired difference, sequence by sequence
    assert "Networks, paired" not in text  # no network scored by both
    for folder, jf in ((base, (0.5, 0.6, 0.7)), (other, (0.4, 0.4, 0.4))):
        write_csv(folder / "mvunet-f0" / "eval" / "vae_eval_gt.csv",
                  [{"sequence": s, "J": v, "F": v, "JF": v, "box_JF": 0.3, "maha_patch": 0.0} for s, v in zip("abc", jf)] +
                  [{"sequence": "overall", "J": 0.0, "F": 0.0, "JF": 0.0, "box_JF": 0.0, "maha_patch": 0.0}])
    write_csv(base / "mvunet-f0-s1" / "eval" / "vae_eval_gt.csv",  # a second seed of sequence "a": averaged
              [{"sequence": "a", "J": 0.3, "F": 0.3, "JF": 0.3, "box_JF": 0.3, "maha_patch": 0.0}])
    assert summarize.main([str(base), "--with", f"β = 1={other}"]) == 0
    text = (base / "summary.md").read_text()
    assert "| single-crop βMVUnet | gt | β = 1 | +16.7 |" in text and "| 2/3 |" in text  # (0.4 + 0.6 + 0.7) / 3 − 0.4; "a" level
    with pytest.raises(SystemExit, match="NAME=DIR"):
        summarize.main([str(base), "--with", str(other)])


def test_focus_names_the_trackers_compared_with_every_other(write_csv, tmp_path: Path, summarize) -> None:
    write_csv(tmp_path / "eval-f0" / "sequences.csv",
              [_seq("segmentation-colour", s, 0.6 + 0.01 * i) for i, s in enumerate("abc")] +
              [_seq("segmentation-adapt", s, 0.5) for s in "abc"] + [_seq("motion-posterior", s, 0.4) for s in "abc"])
    assert summarize.main([str(tmp_path), "--focus", "segmentation-colour"]) == 0
    text = (tmp_path / "summary.md").read_text()
    assert "segmentation-colour minus each" in text and "| segmentation-adapt | +0.110 |" in text
    assert "motion-posterior minus each" not in text


def test_same_box_compares_every_trackers_rotated_box_converted_alike(write_csv, tmp_path: Path, summarize) -> None:
    # the segmenting tracker's headline is its mask's tight box (0.7); its rotated box's corners score 0.5
    rows = [{**_seq("segmentation-adapt", s, 0.7), "success_auc_bounds": 0.5, "success_auc_rot": 0.6} for s in "abc"]
    rows += [{**_seq("motion-posterior", s, 0.55 + 0.01 * i), "success_auc_bounds": 0.55 + 0.01 * i,
              "success_auc_rot": 0.6} for i, s in enumerate("abc")]
    write_csv(tmp_path / "eval-f0" / "sequences.csv", rows)
    assert summarize.main([str(tmp_path)]) == 0
    assert "AUC corners" not in (tmp_path / "summary.md").read_text()
    assert summarize.main([str(tmp_path), "--same-box"]) == 0
    text = (tmp_path / "summary.md").read_text()
    assert "| segmentation-adapt | -0.140 |" in text  # the headline: mask box against corners
    assert "| segmentation-adapt | +0.060 [+0.050, +0.070], 3/3 | +0.000 [+0.000, +0.000], 0/3 |" in text
    assert "| segmentation-adapt | 0.700 | 0.700 |  | 50.0 | 0.500 | 0.600 |" in text
