"""Synthetic dataset generator: formats, determinism, motion, idempotence, CLI (tiny videos)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bmvtrack.config import ConfigError, load_config
from bmvtrack.data import synth
from bmvtrack.data.synth import (
    MARKER_NAME,
    TRUTH_NAME,
    SynthConfig,
    ensure_synthetic,
    generate_dataset,
)

REPO = Path(__file__).resolve().parents[1]


def tiny(**kw) -> SynthConfig:
    base = dict(width=80, height=60, frames=10)
    base.update(kw)
    return SynthConfig(**base)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def mask_ids(path: Path) -> set[int]:
    return set(np.unique(np.asarray(Image.open(path))).tolist())


def principal_angle_deg(mask: np.ndarray) -> tuple[float, float]:
    """Orientation (deg, in (-90, 90]) of the mask's principal axis and its eigenvalue ratio."""
    ys, xs = np.nonzero(mask)
    x, y = xs - xs.mean(), ys - ys.mean()
    mxx, myy, mxy = (x * x).mean(), (y * y).mean(), (x * y).mean()
    ang = 0.5 * math.degrees(math.atan2(2 * mxy, mxx - myy))
    tr, det = mxx + myy, mxx * myy - mxy**2
    disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
    return ang, (tr / 2 + disc) / max(tr / 2 - disc, 1e-9)


def wrap90(a: float) -> float:
    return (a + 90.0) % 180.0 - 90.0


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = tiny()
    a = tree_bytes(
        generate_dataset(tmp_path / "a", "davis2017", 2, seed=7, cfg=cfg, progress=False)
    )
    b = tree_bytes(
        generate_dataset(tmp_path / "b", "davis2017", 2, seed=7, cfg=cfg, progress=False)
    )
    c = tree_bytes(
        generate_dataset(tmp_path / "c", "davis2017", 2, seed=8, cfg=cfg, progress=False)
    )
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert len(jpgs) == 2 * cfg.frames
    assert all(a[k] != c[k] for k in jpgs if k in c)
    # video i's content depends only on (seed, i): a larger dataset starts with the same videos
    d = tree_bytes(
        generate_dataset(tmp_path / "d", "davis2017", 3, seed=7, cfg=cfg, progress=False)
    )
    assert all(d[k] == a[k] for k in jpgs)


def test_davis2017_layout_palette_masks(tmp_path):
    cfg = tiny(objects=(2, 3), train_fraction=0.5)
    root = generate_dataset(tmp_path / "davis", "davis2017", 3, seed=1, cfg=cfg, progress=False)
    truth = json.loads((root / TRUTH_NAME).read_text())["videos"]
    names = [synth.sequence_name(i) for i in range(3)]
    train = (root / "ImageSets/2017/train.txt").read_text().split()
    val = (root / "ImageSets/2017/val.txt").read_text().split()
    assert sorted(train + val) == names and train and val and not set(train) & set(val)
    expected_palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]
    for name in names:
        jpgs = sorted((root / "JPEGImages/60p" / name).iterdir())
        pngs = sorted((root / "Annotations/60p" / name).iterdir())
        assert [p.name for p in jpgs] == [f"{t:05d}.jpg" for t in range(cfg.frames)]
        assert [p.stem for p in pngs] == [p.stem for p in jpgs]
        n_obj = len(truth[name]["objects"])
        seen: set[int] = set()
        for jp, pp in zip(jpgs, pngs, strict=True):
            with Image.open(pp) as m, Image.open(jp) as im:
                assert m.mode == "P" and m.format == "PNG"
                assert m.getpalette()[:15] == expected_palette
                assert im.size == m.size == (cfg.width, cfg.height)
                ids = set(np.unique(np.asarray(m)).tolist())
            assert ids <= set(range(n_obj + 1))
            seen |= ids
        assert seen == set(range(n_obj + 1))  # every object is annotated somewhere
        # object ids in the files agree with the recorded visible pixel counts
        for oid, rec in truth[name]["objects"].items():
            counts = [int((np.asarray(Image.open(p)) == int(oid)).sum()) for p in pngs]
            assert counts == rec["pixels"]
            if not truth[name]["occluder"]:
                assert counts[0] > 0  # objects start apart, so visible unless a bar hides one


def test_youtube_vos_layout_and_meta(tmp_path):
    cfg = tiny(frames=12, train_fraction=0.5)
    root = generate_dataset(tmp_path / "ytvos", "youtube-vos", 3, seed=2, cfg=cfg, progress=False)
    splits = {
        s: json.loads((root / s / "meta.json").read_text())["videos"] for s in ("train", "valid")
    }
    assert sorted(splits["train"]) == ["synth-0000", "synth-0001"]
    assert sorted(splits["valid"]) == ["synth-0002"]
    for split, videos in splits.items():
        for name, entry in videos.items():
            jpgs = sorted(p.name for p in (root / split / "JPEGImages" / name).iterdir())
            assert jpgs == [f"{t:05d}.jpg" for t in range(12)]
            pngs = sorted((root / split / "Annotations" / name).iterdir())
            assert [p.stem for p in pngs] == ["00000", "00005", "00010"]
            present: dict[str, list[str]] = {}
            for p in pngs:
                with (
                    Image.open(p) as m,
                    Image.open(root / split / "JPEGImages" / name / f"{p.stem}.jpg") as im,
                ):
                    assert m.mode == "P" and m.size == im.size == (cfg.width, cfg.height)
                    for oid in np.unique(np.asarray(m)).tolist():
                        if oid:
                            present.setdefault(str(oid), []).append(p.stem)
            assert {k: v["frames"] for k, v in entry["objects"].items()} == present
            assert all(v["category"] in synth.SHAPES for v in entry["objects"].values())
            for v in entry["objects"].values():
                assert all(int(f) % 5 == 0 for f in v["frames"])


def test_objects_move_and_rotate_smoothly(tmp_path):
    cfg = tiny(
        width=128,
        height=96,
        frames=12,
        objects=(1, 1),
        shapes=["bumpy_ellipse"],
        aspect=(0.3, 0.35),
        object_size=(0.45, 0.5),
        occlusion_prob=0.0,
        leave_prob=0.0,
        max_distractors=0,
    )
    root = generate_dataset(tmp_path / "rot", "davis2017", 2, seed=3, cfg=cfg, progress=False)
    truth = json.loads((root / TRUTH_NAME).read_text())["videos"]
    for name, rec in truth.items():
        poses = np.asarray(rec["objects"]["1"]["poses"])
        cam = np.asarray(rec["camera"])
        masks = [
            np.asarray(Image.open(p)) == 1
            for p in sorted((root / "Annotations/96p" / name).iterdir())
        ]
        cents = np.array([[np.nonzero(m)[1].mean(), np.nonzero(m)[0].mean()] for m in masks])
        # the mask sits where the pose (plus camera shake) says, and it really moves
        assert np.abs(cents - (poses[:, :2] + cam)).max() < 5.0  # bumps, border truncation
        assert np.linalg.norm(cents[-1] - cents[0]) > 2.0
        assert np.linalg.norm(np.diff(cents, axis=0), axis=1).min() > 0.0
        # orientation measured from the mask turns smoothly, by the drawn rotation
        measured = [principal_angle_deg(m) for m in masks]
        assert min(r for _, r in measured) > 2.0  # elongated enough for a defined axis
        turn = np.array([wrap90(b[0] - a[0]) for a, b in zip(measured, measured[1:], strict=False)])
        drawn = np.degrees(np.arcsin(np.asarray(rec["objects"]["1"]["motion"])[:, 2]))
        assert np.abs(turn).max() < 15.0
        assert np.abs(turn - drawn).max() < 4.0
        assert np.abs(np.diff(poses[:, 4])).max() < 15.0


def test_leaving_objects_have_empty_masks():
    cfg = tiny(frames=30, objects=(1, 1), leave_prob=1.0, occlusion_prob=0.0)
    for i in range(2):
        video = synth.generate_video(np.random.default_rng((0, i)), cfg)
        px = [int((lab == 1).sum()) for lab in video.labels]
        assert px[0] > 0
        assert 0 in px, px
        first_gone = px.index(0)
        assert all(
            p > 0 for p in px[:first_gone]
        )  # it drifts out, not pops out: visible until then


def test_motion_process_is_the_configured_mgd():
    cfg = SynthConfig()
    proc = synth.MotionProcess(
        np.random.default_rng(0), cfg.motion_mean, cfg.motion_cov, cfg.motion_smoothing
    )
    draws = np.array([proc.step() for _ in range(20000)])
    std = np.sqrt(np.diag(np.asarray(cfg.motion_cov)))
    assert np.allclose(draws.mean(axis=0), cfg.motion_mean, atol=0.1 * std.max())
    assert np.allclose(draws.std(axis=0), std, rtol=0.1)
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1] - 0.3) < 0.1
    lag1 = [np.corrcoef(draws[:-1, k], draws[1:, k])[0, 1] for k in range(5)]
    assert np.allclose(lag1, cfg.motion_smoothing, atol=0.05)


def test_ensure_synthetic_is_idempotent(tmp_path):
    cfg = tiny(frames=4)
    out = tmp_path / "ds"
    ensure_synthetic(out, "davis2017", videos=2, seed=0, cfg=cfg, progress=False)
    marker = out / MARKER_NAME
    frame = out / "JPEGImages/60p/synth-0001/00003.jpg"
    assert marker.is_file() and frame.is_file()
    before = (frame.stat().st_ino, frame.stat().st_mtime_ns, marker.stat().st_ino)
    assert ensure_synthetic(out, "davis2017", videos=2, seed=0, cfg=cfg, progress=False) == out
    assert (
        frame.stat().st_ino,
        frame.stat().st_mtime_ns,
        marker.stat().st_ino,
    ) == before  # nothing rewritten
    # an interrupted generation (no marker, a file missing) is redone
    marker.unlink()
    frame.unlink()
    ensure_synthetic(out, "davis2017", videos=2, seed=0, cfg=cfg, progress=False)
    assert marker.is_file() and frame.is_file()
    # different arguments replace the old synthetic data, leaving no stale videos
    ensure_synthetic(out, "davis2017", videos=1, seed=0, cfg=cfg, progress=False)
    assert not (out / "JPEGImages/60p/synth-0001").exists()
    assert json.loads(marker.read_text())["videos"] == 1


def test_default_config_file_matches_defaults_and_loader_is_strict(tmp_path):
    assert load_config(SynthConfig, REPO / "configs/synth_default.yaml") == SynthConfig()
    bad = tmp_path / "bad.yaml"
    bad.write_text("widht: 100\n")
    with pytest.raises(ConfigError, match="widht"):
        load_config(SynthConfig, bad)
    with pytest.raises(ConfigError, match="motion_cov"):
        SynthConfig(
            motion_cov=[[1.0 if i == j else 0.0 for j in range(5)] for i in range(4)]
            + [[0, 0, 0, 0, -1.0]]
        )
    with pytest.raises(ConfigError, match="shapes"):
        SynthConfig(shapes=["triangle"])


def test_cli_runs(tmp_path):
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text("width: 64\nheight: 48\nframes: 20\n")
    out = tmp_path / "cli"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        sys.executable,
        "-m",
        "bmvtrack.data.synth",
        "--out",
        str(out),
        "--layout",
        "youtube-vos",
        "--videos",
        "2",
        "--seed",
        "3",
        "--config",
        str(cfg_file),
        "--frames",
        "6",
        "--quiet",
    ]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "wrote 2 videos" in res.stdout
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["config"]["frames"] == 6 and marker["layout"] == "youtube-vos"
    assert len(list((out / "train/JPEGImages/synth-0000").iterdir())) == 6
    assert sorted(p.name for p in (out / "valid/Annotations/synth-0001").iterdir()) == [
        "00000.png",
        "00005.png",
    ]
    res = subprocess.run(
        cmd[:-1] + ["--set", "colour=1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "colour" in res.stderr


def test_two_commands_asking_for_the_same_dataset_at_once_generate_it_once(tmp_path, monkeypatch) -> None:
    """Two runs started together on the synthetic default: the second waits for the first and finds
    the dataset complete (it used to write the same files at the same time)."""
    import threading
    import time

    from bmvtrack.data import synth

    calls = []
    real = synth.generate_dataset

    def slow_generate(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)  # long enough for the other thread to arrive while this one writes
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "generate_dataset", slow_generate)
    cfg = synth.SynthConfig(width=96, height=64, frames=3)
    out = tmp_path / "synth"
    threads = [threading.Thread(target=synth.ensure_synthetic, args=(out,), kwargs=dict(videos=2, cfg=cfg, progress=False))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert (out / synth.MARKER_NAME).is_file()
