"""Cross-validation folds: the committed DAVIS 2016 folds file, fold selection as a split, its errors."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bmvtrack.cli import add_data_args, data_config_from_args
from bmvtrack.config import ConfigError, load_config
from bmvtrack.data import DataConfig, DatasetError, TrackFilter, VideoDataset
from bmvtrack.data.readers import FoldSplit, load_folds

REPO = Path(__file__).resolve().parents[1]
FOLDS = REPO / "configs" / "folds" / "davis2016_3fold.yaml"
KEEP_ALL = TrackFilter(absent="keep", max_box_fraction=1.0)


def _make_folds_module():
    spec = importlib.util.spec_from_file_location("make_folds", REPO / "scripts" / "make_folds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def measured(davis2016_root):
    """scripts/make_folds.py, its per-sequence motion and its folds file text on the shared data (measured once)."""
    mod = _make_folds_module()
    motion = mod.sequence_motion(davis2016_root, "240p")
    real = mod.sequence_motion
    mod.sequence_motion = lambda root, resolution="240p": motion if Path(root) == davis2016_root else real(root, resolution)
    return mod, motion, mod.make_folds(davis2016_root, 3, "240p")


def _split(k: int, part: str, path: Path = FOLDS) -> str:
    return f"{path}:{k}:{part}"


def _tiny_davis(root: Path, names=("a", "b", "c", "d"), frames=3) -> Path:
    """A DAVIS 2016 folder: one 24×32 grey-mask sequence per name, a square moving right."""
    for s in names:
        for t in range(frames):
            (root / "JPEGImages/480p" / s).mkdir(parents=True, exist_ok=True)
            (root / "Annotations/480p" / s).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(root / "JPEGImages/480p" / s / f"{t:05d}.jpg")
            m = np.zeros((24, 32), np.uint8)
            m[5:11, 4 + t:10 + t] = 255
            Image.fromarray(m, mode="L").save(root / "Annotations/480p" / s / f"{t:05d}.png")
    return root


def _folds_file(path: Path, folds) -> Path:
    path.write_text(yaml.safe_dump({"folds": folds}))
    return path


# ------------------------------------------------------------------ the committed file, on the real data


def test_committed_folds_file_is_what_the_script_makes(davis2016_root, measured):
    text = measured[2]
    assert FOLDS.read_text() == text, f"regenerate: python scripts/make_folds.py --data {davis2016_root} --out {FOLDS}"


def test_folds_partition_the_30_train_sequences(davis2016_root):
    folds = load_folds(FOLDS)
    everything = VideoDataset(davis2016_root, resolution="240p", filters=KEEP_ALL).sequences
    assert len(everything) == 30
    assert [len(f) for f in folds] == [10, 10, 10]
    names = [s for f in folds for s in f]
    assert len(names) == len(set(names)) == 30  # no sequence in two folds
    assert sorted(names) == sorted(everything)
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(folds[a]) & set(folds[b])


def test_folds_are_balanced_by_the_documented_rule(measured):
    """Snake dealing of the motion ranking: each fold gets one of every 3 consecutive ranks."""
    _, motion, _ = measured
    ranked = sorted(motion, key=lambda s: (-motion[s][0], s))
    fold_of = {s: k for k, f in enumerate(load_folds(FOLDS)) for s in f}
    for r in range(10):
        assert sorted(fold_of[s] for s in ranked[3 * r:3 * r + 3]) == [0, 1, 2]
    means = [np.mean([motion[s][0] for s in f]) for f in load_folds(FOLDS)]
    assert max(means) - min(means) < 0.1 * np.mean(means)
    assert sum(motion[s][1] for s in motion) == 2079  # every annotated frame (README: 2,079)


def test_script_check_and_out_modes(davis2016_root, measured, tmp_path):
    mod = measured[0]
    assert mod.main(["--data", str(davis2016_root), "--check", str(FOLDS)]) == 0
    other = tmp_path / "other.yaml"
    other.write_text(FOLDS.read_text().replace("rhino", "rhino2"))
    assert mod.main(["--data", str(davis2016_root), "--check", str(other)]) == 1
    assert mod.main(["--data", str(davis2016_root), "--out", str(other)]) == 0
    assert other.read_text() == FOLDS.read_text()
    assert mod.deal(list("abcdefg"), 3) == [["a", "f", "g"], ["b", "e"], ["c", "d"]]


@pytest.mark.parametrize("k", [0, 1, 2])
def test_each_fold_train_and_test_are_disjoint_and_make_all_30(davis2016_root, k):
    train = VideoDataset(davis2016_root, resolution="240p", split=_split(k, "train"), filters=KEEP_ALL)
    test = VideoDataset(davis2016_root, resolution="240p", split=_split(k, "test"), filters=KEEP_ALL)
    assert len(train.sequences) == 20 and len(test.sequences) == 10
    assert not set(train.sequences) & set(test.sequences)
    assert len(set(train.sequences) | set(test.sequences)) == 30
    assert sorted(test.sequences) == sorted(load_folds(FOLDS)[k])
    # the tracks follow: every track of the test part is of a fold-k sequence, none in train
    train_seqs = {t.sequence for t in train.tracks()}
    test_seqs = {t.sequence for t in test.tracks()}
    assert test_seqs == set(load_folds(FOLDS)[k]) and not train_seqs & test_seqs


def test_every_sequence_is_held_out_exactly_once(davis2016_root):
    held_out = [s for k in range(3) for s in
                VideoDataset(davis2016_root, resolution="240p", split=_split(k, "test"), filters=KEEP_ALL).sequences]
    assert sorted(held_out) == sorted(VideoDataset(davis2016_root, resolution="240p").sequences)


def test_a_fold_the_480p_folder_lacks_is_an_error(davis2016_root):
    with pytest.raises(DatasetError, match=r"names 9 sequence\(s\) this dataset lacks"):
        VideoDataset(davis2016_root, resolution="480p", split=_split(2, "test"))  # only bear is at 480p


# ------------------------------------------------------------------ configs: YAML and --set


def test_train_config_selects_a_fold_by_yaml_and_set(tmp_path):
    from bmvtrack.agents.train_sac import TrainConfig

    p = tmp_path / "train.yaml"
    p.write_text(f"env:\n  data:\n    root: /data/davis2016\n    layout: davis2016\n    split: {_split(1, 'train')}\n"
                 f"eval_split: {_split(1, 'test')}\n")
    cfg = load_config(TrainConfig, p)
    assert cfg.env.data.split == _split(1, "train") and cfg.eval_split == _split(1, "test")
    held = cfg.env.held_out(cfg.eval_split)  # what train_sac evaluates on: the same fold's test part
    assert FoldSplit.parse(held.data.split) == FoldSplit(FOLDS, 1, "test")
    cfg = load_config(TrainConfig, p, [f"env.data.split={_split(2, 'train')}", f"eval_split={_split(2, 'test')}"])
    assert FoldSplit.parse(cfg.env.data.split) == FoldSplit(FOLDS, 2, "train")
    assert FoldSplit.parse(cfg.eval_split) == FoldSplit(FOLDS, 2, "test")
    with pytest.raises(ConfigError, match="part must be train or test"):
        load_config(TrainConfig, p, [f"env.data.split={FOLDS}:0:val"])


def test_pretrain_config_selects_a_fold_by_yaml_and_set(tmp_path, davis2016_root):
    from bmvtrack.pretrain_vae.config import load_pretrain_config

    p = tmp_path / "pretrain.yaml"
    p.write_text(f"data:\n  root: {davis2016_root}\n  layout: davis2016\n  resolution: 240p\n"
                 f"  split: {_split(0, 'train')}\nval_split: {_split(0, 'test')}\n")
    cfg = load_pretrain_config(p)
    train = VideoDataset.from_config(cfg.data)
    val = VideoDataset.from_config(dataclasses.replace(cfg.data, split=cfg.val_split))  # as validation opens it
    assert len(train.sequences) == 20 and len(val.sequences) == 10 and not set(train.sequences) & set(val.sequences)
    cfg = load_pretrain_config(p, [f"data.split={_split(2, 'test')}"])
    assert VideoDataset.from_config(cfg.data).sequences == sorted(load_folds(FOLDS)[2])
    with pytest.raises(ConfigError, match="fold must be a whole number"):
        load_pretrain_config(p, [f"data.split={FOLDS}:-1:test"])


def test_the_split_flag_selects_a_fold(tmp_path):
    root = _tiny_davis(tmp_path / "d")
    folds = _folds_file(tmp_path / "f.yaml", [["a", "c"], ["b"], ["d"]])
    p = argparse.ArgumentParser()
    add_data_args(p)
    cfg = data_config_from_args(p.parse_args(["--data", str(root), "--split", f"{folds}:0:train"]))
    assert VideoDataset.from_config(cfg).sequences == ["b", "d"]
    cfg = data_config_from_args(p.parse_args(["--data", str(root), "--split", f"{folds}:0:test"]))
    assert VideoDataset.from_config(cfg).sequences == ["a", "c"]
    with pytest.raises(ConfigError, match="a fold selection is"):
        data_config_from_args(p.parse_args(["--data", str(root), "--split", f"{folds}:0"]))


# ------------------------------------------------------------------ errors (made-up data, no shared data)


def test_fold_selection_on_made_up_data(tmp_path):
    root = _tiny_davis(tmp_path / "d")
    folds = _folds_file(tmp_path / "f.yaml", [["a", "b"], ["c", "d"]])
    assert VideoDataset(root, split=f"{folds}:1:test").sequences == ["c", "d"]
    assert VideoDataset(root, split=f"{folds}:1:train").sequences == ["a", "b"]
    assert [t.sequence for t in VideoDataset(root, split=f"{folds}:0:test").tracks()] == ["a", "b"]
    assert FoldSplit.parse("dev/train") is None and FoldSplit.parse(None) is None
    assert str(FoldSplit.parse(f"{folds}:1:test")) == f"{folds}:1:test"
    assert VideoDataset(root, split=f"{folds}:all").sequences == ["a", "b", "c", "d"]  # every fold's
    assert str(FoldSplit.parse(f"{folds}:all")) == f"{folds}:all"


def test_fold_selection_on_youtube_vos(tmp_path):
    base = tmp_path / "y" / "train"
    videos = {}
    for v in ("v1", "v2", "v3"):
        for t in (0, 5):
            (base / "JPEGImages" / v).mkdir(parents=True, exist_ok=True)
            (base / "Annotations" / v).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(base / "JPEGImages" / v / f"{t:05d}.jpg")
            m = np.zeros((24, 32), np.uint8)
            m[4:9, 4 + t:9 + t] = 1
            im = Image.fromarray(m, mode="P")
            im.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
            im.save(base / "Annotations" / v / f"{t:05d}.png")
        videos[v] = {"objects": {"1": {"category": "x", "frames": ["00000", "00005"]}}}
    (base / "meta.json").write_text(json.dumps({"videos": videos}))
    folds = _folds_file(tmp_path / "f.yaml", [["v1"], ["v2", "v3"]])
    ds = VideoDataset(tmp_path / "y", layout="youtube-vos", split=f"{folds}:1:test")
    assert ds.sequences == ["v2", "v3"] and [t.sequence for t in ds.tracks()] == ["v2", "v3"]
    assert VideoDataset(tmp_path / "y", layout="youtube-vos", split=f"{folds}:1:train").sequences == ["v1"]


@pytest.mark.parametrize("folds,split,message", [
    ([["a", "b"], ["c", "d"]], "{f}:2:test", r"no fold 2; the file has folds 0 to 1"),
    ([["a", "b"], ["b", "c", "d"]], "{f}:0:test", r"not a partition: sequence 'b' is in folds 0 and 1"),
    ([["a", "a"], ["c", "d"]], "{f}:0:test", r"not a partition: sequence 'a' is in fold 0 twice"),
    ([["a", "b"], []], "{f}:0:train", r"not a partition: fold 1 is empty"),
    ([["a", "b", "c", "d"]], "{f}:0:train", r"at least 2 folds"),
    ([["a", "b"], ["c", "zebra"]], "{f}:0:train", r"names 1 sequence\(s\) this dataset lacks: \['zebra'\]"),
    ([["a", "b"], ["c", "d"]], "{missing}:0:test", r"nope\.yaml: folds file not found"),
])
def test_fold_errors_are_one_clear_line(tmp_path, folds, split, message):
    root = _tiny_davis(tmp_path / "d")
    f = _folds_file(tmp_path / "f.yaml", folds)
    with pytest.raises(DatasetError, match=message) as info:
        VideoDataset(root, split=split.format(f=f, missing=tmp_path / "nope.yaml"))
    assert "\n" not in str(info.value)


def test_malformed_fold_split_is_a_config_error():
    for bad, message in [("f.yaml", "a fold selection is"), ("f.yaml:1", "a fold selection is"),
                         ("f.yaml:one:test", "fold must be a whole number"), ("f.yaml:0:val", "part must be train or test")]:
        with pytest.raises(ConfigError, match=message):
            DataConfig(root="x", split=bad)
        with pytest.raises(ConfigError, match=message):
            load_config(DataConfig, None, [f"split={bad}"])
    assert DataConfig(split="dev/train").split == "dev/train"  # an ordinary split is untouched


def test_command_reports_a_fold_error_in_one_line(tmp_path):
    root = _tiny_davis(tmp_path / "d")
    f = _folds_file(tmp_path / "f.yaml", [["a", "b"], ["c", "d"]])
    res = subprocess.run([sys.executable, "-m", "bmvtrack.analyze_motion", "--data", str(root), "--split", f"{f}:3:test",
                          "--out", str(tmp_path / "prior.json"), "--no-plot"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2, res.stderr[-1500:]
    assert res.stderr.strip().splitlines() == [f"error: {f}: no fold 3; the file has folds 0 to 1"]
    assert not (tmp_path / "prior.json").exists()


@pytest.mark.parametrize("text,message", [("folds: [[a, b], [c, d]\n", "not valid YAML"),
                                          ("- [a, b]\n- [c, d]\n", "top level must be a mapping"),
                                          ("fold: [[a, b], [c, d]]\n", r"the one key 'folds'.*got keys \['fold'\]"),
                                          ("folds: [[a, b], [c, 3]]\n", "fold 1 holds 3, not a sequence name")])
def test_malformed_folds_file(tmp_path, text, message):
    (tmp_path / "f.yaml").write_text(text)
    with pytest.raises(DatasetError, match=message) as info:
        load_folds(tmp_path / "f.yaml")
    assert "\n" not in str(info.value) and str(tmp_path / "f.yaml") in str(info.value)
