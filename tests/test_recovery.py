"""Recovery from losses of track and the perturbation protocol of `python -m bmvtrack.evaluate`."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bmvtrack import evaluate
from bmvtrack.agents.baselines import make_tracker
from bmvtrack.data import TrackFilter, VideoDataset
from bmvtrack.evaluate import Perturbation, SequenceResult, evaluate_trackers, rescore, track_ground_truth
from bmvtrack.motion import RBox, aabb_iou

KEEP_ALL = TrackFilter(absent="keep", max_box_fraction=1.0)
SIDE = 16  # px; the square's box runs between its outermost pixel centres: 15 px
UNIFORM = [(8 + 4 * t, 16) for t in range(10)]  # 4 px a frame to the right
JERKY = [(8, 16), (12, 16), (20, 18), (22, 14), (30, 16), (31, 20), (40, 20), (44, 12), (52, 16), (53, 18)]
RECOVERY_KEYS = ("recovered", "frames_to_recover", "events", "perturbed_recovered", "perturbed_frames_to_recover",
                 "perturbed_events")


def make_square(root: Path, positions: list[tuple[int, int]], h: int = 48, w: int = 96) -> VideoDataset:
    """A DAVIS 2016 folder: a textured 16-px square whose top-left pixel is at ``positions[t]`` in frame t."""
    rng = np.random.default_rng(0)
    bg = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    patch = (rng.random((SIDE, SIDE, 3)) * 175 + 80).astype(np.uint8)
    for t, (x0, y0) in enumerate(positions):
        frame, mask = bg.copy(), np.zeros((h, w), np.uint8)
        frame[y0:y0 + SIDE, x0:x0 + SIDE] = patch
        mask[y0:y0 + SIDE, x0:x0 + SIDE] = 255
        for sub, arr, ext in (("JPEGImages", frame, "jpg"), ("Annotations", mask, "png")):
            p = root / sub / "240p" / "square" / f"{t:05d}.{ext}"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(p)
    return VideoDataset(root, layout="davis2016", resolution="240p", filters=KEEP_ALL)


def shifted_iou(d: int) -> float:
    """IoU of the square's box with itself moved ``d`` px sideways (boxes 15 px wide between pixel centres)."""
    inter = max(SIDE - 1 - d, 0) * (SIDE - 1)
    return inter / (2 * (SIDE - 1) ** 2 - inter)


class Snap:
    """Uses the ground truth: whatever box it is given, it answers the annotation of each frame."""

    name = "snap"
    uses_ground_truth = True

    def set_ground_truth(self, boxes, img_w, img_h):
        self.gt = list(boxes)

    def init(self, frame, box):
        self.t = 0

    def update(self, frame):
        self.t += 1
        return self.gt[self.t]


def test_zero_motion_loses_a_moving_square_once_and_never_recovers(tmp_path):
    ds = make_square(tmp_path / "sq", UNIFORM)
    res, score = evaluate_trackers({"zero": lambda: make_tracker("zero")}, ds, ds.tracks(), progress=False).runs["zero"][0]
    # frame t: the box of frame 0 against the square moved 4t px: 0.579, 0.304, 0.111, then no overlap
    np.testing.assert_allclose(score.iou[1:], [shifted_iou(4 * t) for t in range(1, 10)], atol=1e-9)
    assert score.loss_recovery().size == 1 and np.isnan(score.loss_recovery()).all()  # lost at frame 4 for good
    s = score.summary()
    assert (s["recovered"], s["events"], s["perturbed_events"]) == (0.0, 1, 0)
    assert math.isnan(s["frames_to_recover"]) and math.isnan(s["perturbed_recovered"])
    assert res.perturbed_frames == () and res.perturbed_boxes.shape == (0, 5)


def test_re_initialised_on_the_previous_truth_both_recover_at_once(tmp_path):
    """Shift 0, scale 0: the 'perturbed' box is the previous frame's truth. Zero motion is then one frame
    behind at each perturbation (IoU 0.579 ≥ 0.5: recovered at once) and never lost (its worst, 0.111, is
    above 0.1); the oracle, restarted there on the rest of the track's truth, stays exact."""
    ds = make_square(tmp_path / "sq", UNIFORM)
    factories = {n: (lambda n=n: make_tracker(n)) for n in ("zero", "oracle")}
    results = evaluate_trackers(factories, ds, ds.tracks(), progress=False,
                                perturbation=Perturbation(every=3, shift=0.0, scale=0.0))
    (zres, zero), (ores, oracle) = results.runs["zero"][0], results.runs["oracle"][0]
    assert zres.perturbed_frames == ores.perturbed_frames == (3, 6, 9)
    gt = track_ground_truth(ds, ds.tracks()[0])
    np.testing.assert_array_equal(zres.perturbed_boxes, [gt.rboxes[f - 1].as_array() for f in (3, 6, 9)])
    np.testing.assert_allclose(zero.iou[1:], [shifted_iou(4 * d) for d in (1, 2, 1, 2, 3, 1, 2, 3, 1)], atol=1e-9)
    np.testing.assert_allclose(oracle.iou[1:], 1.0, atol=1e-9)
    for s in (zero.summary(), oracle.summary()):
        assert (s["perturbed_recovered"], s["perturbed_frames_to_recover"], s["perturbed_events"]) == (1.0, 0.0, 3)
        assert s["events"] == 0 and math.isnan(s["recovered"])


def test_the_oracle_restarts_from_the_perturbation_frame(tmp_path):
    """On jerky motion an oracle that replayed the track from its start after a re-initialisation would
    apply frame 1's motion at frame 3 and miss; restarted on the truth from the previous frame on, it is exact."""
    ds = make_square(tmp_path / "sq", JERKY)
    run = evaluate_trackers({"oracle": lambda: make_tracker("oracle")}, ds, ds.tracks(), progress=False,
                            perturbation=Perturbation(every=3, shift=0.0, scale=0.0))
    np.testing.assert_allclose(run.runs["oracle"][0][1].iou[1:], 1.0, atol=1e-9)


def test_perturbations_are_paired_and_only_a_tracker_back_on_the_truth_recovers(tmp_path):
    ds = make_square(tmp_path / "sq", UNIFORM)
    track = ds.tracks()[0]
    pert = Perturbation(every=3, shift=2.0, scale=0.2, seed=7)
    factories = {"zero": lambda: make_tracker("zero"), "oracle": lambda: make_tracker("oracle"), "snap": Snap}
    results = evaluate_trackers(factories, ds, [track], progress=False, perturbation=pert)
    runs = {name: runs[0] for name, runs in results.runs.items()}
    # the same boxes for every tracker: the previous frame's truth moved by N(0, 2)·15 px, sides by exp(N(0, 0.2))
    gt = track_ground_truth(ds, track)
    z = np.random.default_rng([7, 0]).standard_normal((3, 4))
    expected = [[b.cx + 2.0 * zx * 15, b.cy + 2.0 * zy * 15, b.w * math.exp(0.2 * zw), b.h * math.exp(0.2 * zh),
                 b.angle] for b, (zx, zy, zw, zh) in zip((gt.rboxes[f - 1] for f in (3, 6, 9)), z)]
    for res, _ in runs.values():
        assert res.perturbed_frames == (3, 6, 9)
        np.testing.assert_allclose(res.perturbed_boxes, expected, atol=1e-9)
    # these draws throw the box off the square at every perturbation: it overlaps none of its window's frames by 0.5
    for f, box in zip((3, 6, 9), expected):
        assert all(aabb_iou(evaluate.rbox_to_xyxy(RBox(*box)), gt.aabbs[t]) < 0.5 for t in range(f, min(f + 3, 10)))
    # so zero motion, holding that box, never recovers; snap answers the truth again at once
    zero, snap, oracle = (runs[n][1].summary() for n in ("zero", "snap", "oracle"))
    assert (zero["perturbed_recovered"], zero["perturbed_events"]) == (0.0, 3)
    assert math.isnan(zero["perturbed_frames_to_recover"])
    assert (snap["perturbed_recovered"], snap["perturbed_frames_to_recover"]) == (1.0, 0.0)
    # the oracle moves its wrong box with the square: its IoU holds until the next perturbation
    iou = runs["oracle"][1].iou
    for a, b in ((3, 6), (6, 9)):
        np.testing.assert_allclose(iou[a:b], iou[a], atol=1e-6)
    assert oracle["perturbed_recovered"] == np.mean(iou[[3, 6, 9]] >= 0.5)
    # the overall row pools the events of every sequence
    row = {r["tracker"]: r for r in results.overall()}["snap"]
    assert (row["perturbed_recovered"], row["perturbed_events"]) == (1.0, 3)


def test_perturbation_settings_are_checked():
    for bad in ({"every": 0}, {"every": 2, "shift": -1.0}, {"every": 2, "scale": math.inf}, {"every": 2, "seed": -1},
                {"every": 1.5}):
        with pytest.raises(ValueError, match="perturbation"):
            Perturbation(**bad)
    # only where the object is present in the frame and the one before
    base = [RBox(10, 10, 4, 4, 0), None, RBox(10, 10, 4, 4, 0), RBox(10, 10, 4, 4, 0), RBox(10, 10, 4, 4, 0)]
    assert sorted(Perturbation(1).boxes(base, 0)) == [3, 4]


# ----------------------------------------------------------------------------- the command


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _without_times(rows: list[dict[str, str]], keys=None) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in ("fps", "fps_per_frame") and (keys is None or k in keys)}
            for r in rows]


def test_evaluate_command_with_perturbations(moving_root, tmp_path, capsys):
    data = ["--data", str(moving_root), "--layout", "davis2017", "--no-progress", "--no-wandb", "--trackers",
            "zero,oracle"]
    plain, never, pert = tmp_path / "plain", tmp_path / "never", tmp_path / "pert"
    assert evaluate.main(data + ["--out", str(plain)]) == 0
    assert evaluate.main(data + ["--out", str(never), "--perturb-every", "100"]) == 0  # no frame that far
    assert evaluate.main(data + ["--out", str(pert), "--perturb-every", "3", "--perturb-seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "perturbed every 3 frames (shift 0.5, scale 0.2, seed 1)" in printed

    # opt-in: without it (or with no frame to perturb) the report is the one-pass evaluation's
    old_columns = [k for k in _rows(plain / "overall.csv")[0] if k not in RECOVERY_KEYS]
    for name in ("overall.csv", "sequences.csv"):
        assert _without_times(_rows(plain / name)) == _without_times(_rows(never / name))
    ds = VideoDataset(moving_root, "davis2017")
    lib = evaluate_trackers({n: (lambda n=n: make_tracker(n)) for n in ("zero", "oracle")}, ds, ds.tracks(),
                            progress=False)
    as_written = [{k: "" if v is None else str(v) for k, v in r.items()} for r in lib.overall()]  # as csv writes them
    assert _without_times(_rows(plain / "overall.csv"), old_columns) == _without_times(as_written, old_columns)
    seq_auc = {(r["tracker"], r["sequence"]): r["success_auc"] for r in _rows(plain / "sequences.csv")}
    assert seq_auc == {(r["tracker"], r["sequence"]): repr(r["success_auc"]) for r in lib.per_sequence()}
    assert json.loads((plain / "manifest.json").read_text())["perturbation"] is None
    assert "Perturbations" not in (plain / "overall.md").read_text()
    res = SequenceResult.load(plain / "results" / "zero" / "synth-0000_1.json")
    assert res.perturbed_frames == ()

    # the perturbed run: frames 3, 6, 9 of the 10-frame track, the same boxes for both trackers
    manifest = json.loads((pert / "manifest.json").read_text())
    assert manifest["perturbation"] == {"every": 3, "shift": 0.5, "scale": 0.2, "seed": 1}
    assert "--perturb-every 3 --perturb-seed 1" in (pert / "command.txt").read_text()
    saved = {n: json.loads((pert / "results" / n / "synth-0000_1.json").read_text()) for n in ("zero", "oracle")}
    assert saved["zero"]["perturbed_frames"] == saved["oracle"]["perturbed_frames"] == [3, 6, 9]
    assert saved["zero"]["perturbed_boxes"] == saved["oracle"]["perturbed_boxes"]
    overall = {r["tracker"]: r for r in _rows(pert / "overall.csv")}
    assert all(r["perturbed_events"] == "3" for r in overall.values())
    assert "| Perturbations |" in (pert / "overall.md").read_text()
    assert overall["zero"]["success_auc"] != {r["tracker"]: r for r in _rows(plain / "overall.csv")}["zero"]["success_auc"]

    # --rescore of the perturbed run gives the same recovery columns, and says it was perturbed
    again = tmp_path / "again"
    assert evaluate.main(data[:-2] + ["--out", str(again), "--rescore", str(pert)]) == 0
    for name in ("overall.csv", "sequences.csv"):
        assert _without_times(_rows(again / name), RECOVERY_KEYS + ("tracker", "sequence")) == _without_times(
            _rows(pert / name), RECOVERY_KEYS + ("tracker", "sequence"))
    assert json.loads((again / "manifest.json").read_text())["perturbation"] == manifest["perturbation"]

    # a result saved before the protocol existed (no such fields) is a run without perturbations
    old = {k: v for k, v in saved["zero"].items() if k not in ("perturbed_frames", "perturbed_boxes")}
    legacy = SequenceResult.from_dict(old)
    assert legacy.perturbed_frames == () and legacy.perturbed_boxes.shape == (0, 5)
    row = rescore([legacy], ds).per_sequence()[0]
    assert row["perturbed_events"] == 0 and math.isnan(row["perturbed_recovered"])
    with pytest.raises(ValueError, match="perturbed frames"):
        SequenceResult.from_dict(saved["zero"] | {"perturbed_frames": [3, 6]})

    # usage errors, before anything runs
    for extra in (["--perturb-shift", "1"], ["--perturb-every", "0"], ["--perturb-every", "2", "--perturb-scale", "-1"],
                  ["--perturb-every", "3", "--rescore", str(pert)]):
        with pytest.raises(SystemExit):
            evaluate.main(data + ["--out", str(tmp_path / "x")] + extra)
        assert "perturb" in capsys.readouterr().err

