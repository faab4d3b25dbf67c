"""Running, scoring and reporting trackers (bmvtrack.evaluate) and the `python -m bmvtrack.evaluate` command."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bmvtrack.agents.baselines import make_tracker
from bmvtrack import evaluate
from bmvtrack.data import TrackFilter, VideoDataset
from bmvtrack.motion import RBox
from bmvtrack.run_folder import RunFolderError
from bmvtrack.evaluate import (
    SequenceResult,
    aabb_to_rbox,
    evaluate_trackers,
    load_results,
    mask_aabb,
    rescore,
    run_tracker,
    score_sequence,
    track_ground_truth,
    write_report,
)

KEEP_ALL = TrackFilter(absent="keep", max_box_fraction=1.0)
OVERALL_COLUMNS = ["tracker", "sequences", "frames", "success_auc", "precision_20", "mean_iou", "jf",
                   "success_auc_ellipse", "success_auc_bounds", "success_auc_rot", "mean_iou_rot", "losses", "fps",
                   "fps_per_frame", "box", "j_mean", "f_mean", "uses_gt",
                   # recovery (after every earlier column)
                   "recovered", "frames_to_recover", "events", "perturbed_recovered", "perturbed_frames_to_recover",
                   "perturbed_events"]


def make_moving_square(root: Path, n_frames=6, h=48, w=64, absent=(3,)) -> Path:
    """A DAVIS 2016 folder: one textured square moving right by 3 px a frame; absent in ``absent``."""
    rng = np.random.default_rng(0)
    bg = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    patch = (rng.random((12, 12, 3)) * 175 + 80).astype(np.uint8)
    for t in range(n_frames):
        frame, mask = bg.copy(), np.zeros((h, w), np.uint8)
        if t not in absent:
            x0 = 10 + 3 * t
            frame[18:30, x0:x0 + 12] = patch
            mask[18:30, x0:x0 + 12] = 255
        for sub, arr in (("JPEGImages", frame), ("Annotations", mask)):
            p = root / sub / "240p" / "square" / f"{t:05d}.{'jpg' if sub == 'JPEGImages' else 'png'}"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(p, quality=95) if sub == "JPEGImages" else Image.fromarray(arr).save(p)
    return root


class GarbageTracker:
    """Answers NaN, then a box far outside the frame, then None, then a box with a negative side."""

    name = "garbage"

    def init(self, frame, box):
        self.t = 0

    def update(self, frame):
        self.t += 1
        return [RBox(float("nan"), 1, 1, 1, 0), RBox(5000, 5000, 10, 10, 0), None, RBox(10, 10, -4, 4, 0)][
            (self.t - 1) % 4]


@pytest.fixture()
def square(tmp_path):
    root = make_moving_square(tmp_path / "square")
    ds = VideoDataset(root, layout="davis2016", resolution="240p", filters=KEEP_ALL)
    return ds, ds.tracks()[0]


def test_mask_aabb_uses_pixel_centres():
    m = np.zeros((20, 30), bool)
    m[5:9, 10:20] = True
    assert mask_aabb(m).tolist() == [10, 5, 19, 8]
    assert mask_aabb(np.zeros((4, 4), bool)) is None
    line = np.zeros((10, 10), bool)
    line[4, 2:8] = True  # one pixel thin: widened to MIN_SIDE about the centre
    assert mask_aabb(line).tolist() == [2, 3.5, 7, 4.5]


def test_oracle_is_exact_on_the_square_and_absent_frames_are_excluded(square):
    ds, track = square
    assert track.present == (True, True, True, False, True, True)
    gt = track_ground_truth(ds, track)
    assert np.isnan(gt.aabbs[3]).all() and gt.rboxes[3] is None
    score = score_sequence(run_tracker(make_tracker("oracle"), ds, track, gt.rboxes), gt.rboxes, gt.aabbs)
    assert np.isnan(score.iou[[0, 3]]).all()  # frame 0 given, frame 3 absent
    assert score.n_frames == 4
    np.testing.assert_allclose(score.iou[[1, 2, 4, 5]], 1.0, atol=1e-9)
    np.testing.assert_allclose(score.iou_rot[[1, 2, 4, 5]], 1.0, atol=1e-9)
    s = score.summary()
    assert s["losses"] == 0 and s["precision_20"] == 1.0 and s["success_auc"] == pytest.approx(20 / 21)


def test_garbage_predictions_score_zero_and_count_a_loss(square):
    ds, track = square
    gt = track_ground_truth(ds, track)
    res = run_tracker(GarbageTracker(), ds, track, gt.rboxes)
    assert np.isnan(res.boxes[[1, 3, 4]]).all(axis=1).all()  # NaN, None, negative side → no box
    assert np.isfinite(res.boxes[2]).all()  # far away is still a box
    score = score_sequence(res, gt.rboxes, gt.aabbs)
    np.testing.assert_array_equal(score.iou[[1, 2, 4, 5]], 0.0)
    np.testing.assert_array_equal(score.iou_rot[[1, 2, 4, 5]], 0.0)
    assert np.isinf(score.center_error[[1, 4, 5]]).all() and score.center_error[2] > 1000
    s = score.summary()
    assert s["losses"] == 1  # one long loss (the absent frame neither ends nor extends it)
    assert s["success_auc"] == 0.0 and s["precision_20"] == 0.0 and s["mean_iou"] == 0.0


def test_sequence_result_json_round_trip(square, tmp_path):
    ds, track = square
    gt = track_ground_truth(ds, track)
    res = run_tracker(GarbageTracker(), ds, track, gt.rboxes)
    res.save(tmp_path / "r.json")
    back = SequenceResult.load(tmp_path / "r.json")
    np.testing.assert_array_equal(np.isnan(back.boxes), np.isnan(res.boxes))
    np.testing.assert_array_equal(np.nan_to_num(back.boxes), np.nan_to_num(res.boxes))
    assert (back.tracker, back.sequence, back.img_size) == (res.tracker, res.sequence, res.img_size)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="bad.json"):
        SequenceResult.load(tmp_path / "bad.json")


def test_report_files_and_csv_columns_and_rescore(square, tmp_path):
    ds, track = square
    factories = {n: (lambda n=n: make_tracker(n)) for n in ("zero", "kcf", "oracle")}
    factories["garbage"] = GarbageTracker
    results = evaluate_trackers(factories, ds, [track], progress=False)
    paths = write_report(results, tmp_path / "report", title="square")
    for key in ("overall_md", "overall_csv", "sequences_md", "sequences_csv", "success_png"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    assert paths["success_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(paths["overall_csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == OVERALL_COLUMNS
    by = {r["tracker"]: r for r in rows}
    assert set(by) == {"zero", "kcf", "oracle", "garbage"}
    assert by["oracle"]["uses_gt"] == "True" and by["zero"]["uses_gt"] == "False"
    assert float(by["oracle"]["success_auc"]) > float(by["zero"]["success_auc"])
    assert int(by["garbage"]["losses"]) == 1 and float(by["garbage"]["mean_iou"]) == 0.0
    # axis-aligned: every conversion is its own box; a rotated box reports its corner bounds
    assert by["kcf"]["success_auc"] == by["kcf"]["success_auc_bounds"] == by["kcf"]["success_auc_ellipse"]
    assert by["oracle"]["success_auc"] == by["oracle"]["success_auc_bounds"]
    assert {n: r["box"] for n, r in by.items()} == {"zero": "corners", "kcf": "axis-aligned", "oracle": "corners",
                                                    "garbage": "corners"}
    assert all(r["jf"] == r["j_mean"] == "" for r in rows)  # no tracker here segments: J&F blank
    assert all(math.isfinite(float(r["success_auc"])) and float(r["fps"]) > 0 and float(r["fps_per_frame"]) > 0
               for r in rows)
    with open(paths["sequences_csv"], newline="") as fh:
        seq_rows = list(csv.DictReader(fh))
    assert len(seq_rows) == 4 and "sequence" in seq_rows[0]
    md = paths["overall_md"].read_text()
    assert "oracle †" in md
    assert md.splitlines()[2].startswith("| Tracker | Seqs | Frames | Success AUC | Prec@20px | mIoU | J&F | AUC ellipse |")
    assert "| zero | 1 | 4 |" in md and " |  | " in md  # J&F of a tracker without masks: a blank cell
    # the report can be recomputed from the saved predictions alone
    again = rescore(load_results(paths["results"]), ds)
    before = {r["tracker"]: r for r in results.overall()}
    for r in again.overall():
        for k in ("success_auc", "precision_20", "mean_iou", "success_auc_ellipse", "success_auc_bounds",
                  "mean_iou_rot", "losses", "fps", "fps_per_frame"):
            assert r[k] == pytest.approx(before[r["tracker"]][k]), (r["tracker"], k)


def test_oracle_beats_zero_motion_on_real_davis(davis2016_root):
    """Real DAVIS 240p 'bear' (absent frames kept, no size filter): the oracle replays the truth."""
    ds = VideoDataset(davis2016_root, resolution="240p", filters=KEEP_ALL)
    ds.sequences = ["bear"]
    results = evaluate_trackers({"zero": lambda: make_tracker("zero"), "oracle": lambda: make_tracker("oracle")},
                                ds, ds.tracks(), progress=False)
    by = {r["tracker"]: r for r in results.overall()}
    o, z = by["oracle"], by["zero"]
    assert o["mean_iou_rot"] >= 0.99
    assert z["mean_iou_rot"] < o["mean_iou_rot"] - 0.1 and z["mean_iou"] < o["mean_iou"]
    assert o["success_auc"] > z["success_auc"] and o["success_auc_rot"] > z["success_auc_rot"]
    assert o["losses"] == 0
    # the oracle reports a rotated box: its axis-aligned box is the corners' bounds, and the inscribed
    # ellipse's bounds are nearer the mask's tight bounds
    assert o["success_auc"] == o["success_auc_bounds"] and o["box"] == "corners"
    assert o["success_auc_ellipse"] > o["success_auc_bounds"]


def test_evaluate_command(square, tmp_path, capsys):
    ds, _ = square
    out = tmp_path / "out"
    data = ["--data", str(ds.root), "--resolution", "240p", "--no-progress"]
    argv = data + ["--trackers", "zero,oracle", "--out", str(out), "--max-tracks", "1"]
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| zero |" in printed and "| oracle † |" in printed and str(out) in printed
    assert (out / "overall.csv").is_file() and (out / "results" / "oracle" / "square_1.json").is_file()
    assert "--trackers zero,oracle" in (out / "command.txt").read_text()
    # --rescore recomputes the same report from the saved predictions, running nothing
    assert evaluate.main(data + ["--out", str(tmp_path / "again"), "--rescore", str(out / "results")]) == 0
    lines = [sorted((d / "overall.csv").read_text().splitlines()) for d in (out, tmp_path / "again")]
    assert lines[0] == lines[1]
    with pytest.raises(SystemExit):
        evaluate.main(data + ["--trackers", "zero,nope", "--out", str(out)])
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a bad adaptation setting is a usage error, not a traceback
        evaluate.main(data + ["--trackers", "zero", "--adapt-core", "1.5", "--out", str(out)])
    assert "core" in capsys.readouterr().err


class Recorder:
    """Remembers the box it was initialised with."""

    axis_aligned = True
    name = "recorder"

    def init(self, frame, box):
        Recorder.got = box

    def update(self, frame):
        return Recorder.got


def test_axis_aligned_trackers_start_from_the_tight_bounds(davis2016_root):
    ds = VideoDataset(davis2016_root, resolution="240p", filters=KEEP_ALL)
    ds.sequences = ["bear"]
    track = ds.tracks()[0]
    short = dataclasses.replace(track, frame_paths=track.frame_paths[:2], mask_paths=track.mask_paths[:2],
                                frame_names=track.frame_names[:2], present=track.present[:2])
    gt = track_ground_truth(ds, short)
    assert abs(gt.rboxes[0].angle) > 1  # the rotated box is tilted, so the two starts differ
    evaluate_trackers({"rec": Recorder}, ds, [short], progress=False)
    assert Recorder.got == aabb_to_rbox(gt.aabbs[0])
    evaluate_trackers({"rec": Recorder}, ds, [short], progress=False, axis_aligned_init="rbox")
    assert Recorder.got == gt.rboxes[0]
    with pytest.raises(ValueError, match="axis_aligned_init"):
        evaluate_trackers({"rec": Recorder}, ds, [short], progress=False, axis_aligned_init="loose")


# ----------------------------------------------------------------------------- the output folder and the manifest


def _overall_trackers(folder: Path) -> list[str]:
    with open(folder / "overall.csv", newline="") as fh:
        return sorted(r["tracker"] for r in csv.DictReader(fh))


def test_evaluate_never_mixes_an_earlier_run_into_its_report(square, tmp_path, capsys):
    ds, _ = square
    out = tmp_path / "out"
    data = ["--data", str(ds.root), "--resolution", "240p", "--no-progress", "--no-wandb"]
    out.mkdir()
    (out / ".overall.csv.abc.tmp").write_text("a write a kill interrupted")
    assert evaluate.main(data + ["--trackers", "zero,oracle", "--out", str(out)]) == 0
    assert not list(out.rglob(".*.tmp"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["trackers"] == ["zero", "oracle"]
    assert manifest["results"] == {"zero": ["results/zero/square_1.json"], "oracle": ["results/oracle/square_1.json"]}
    before = (out / "overall.csv").read_bytes()
    # a new evaluation into it is refused (one line, how to go on), and nothing is touched
    with pytest.raises(RunFolderError) as err:
        evaluate.main(data + ["--trackers", "kcf", "--out", str(out)])
    msg = str(err.value)
    assert "\n" not in msg and "already holds an evaluation" in msg and "--overwrite" in msg and "--resume" not in msg
    assert (out / "overall.csv").read_bytes() == before and (out / "results" / "oracle").is_dir()
    # --overwrite: the old per-tracker results are gone before the new run; the report has its trackers only
    assert sorted(p.name for p in (out / "got10k").iterdir()) == ["oracle", "zero"]
    assert (out / "pytracking" / "oracle" / "square_1.txt").is_file()
    assert evaluate.main(data + ["--trackers", "zero", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "results").iterdir()) == ["zero"]
    for toolkit in ("got10k", "pytracking"):  # the toolkits' files of the replaced run are gone too
        assert sorted(p.name for p in (out / toolkit).iterdir()) == ["zero"]
    assert _overall_trackers(out) == ["zero"]
    capsys.readouterr()
    # a stale result planted beside the run (e.g. by an older evaluate) is left out of a rescore, with a warning
    stale = out / "results" / "oracle" / "square_1.json"
    stale.parent.mkdir()
    stale.write_text(json.dumps(SequenceResult.load(out / "results" / "zero" / "square_1.json").to_dict()
                                | {"tracker": "oracle"}))
    assert evaluate.main(data + ["--rescore", str(out), "--out", str(tmp_path / "again")]) == 0
    assert _overall_trackers(tmp_path / "again") == ["zero"]
    assert "left out 1 result file(s) its manifest does not list (e.g. results/oracle/square_1.json)" in capsys.readouterr().err
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert again["kind"] == "rescore" and again["trackers"] == ["zero"]
    # a rescored report holds no results of its own
    with pytest.raises(RunFolderError, match="holds a report rescored from"):
        evaluate.main(data + ["--rescore", str(tmp_path / "again"), "--out", str(tmp_path / "third")])
    # --trackers narrows a rescore to trackers the run evaluated, and only those
    with pytest.raises(RunFolderError, match="did not run oracle"):
        evaluate.main(data + ["--rescore", str(out), "--trackers", "oracle", "--out", str(tmp_path / "fourth")])


def test_rescore_refuses_what_it_cannot_trust(square, tmp_path):
    ds, _ = square
    out = tmp_path / "out"
    data = ["--data", str(ds.root), "--resolution", "240p", "--no-progress", "--no-wandb"]
    assert evaluate.main(data + ["--trackers", "zero,oracle", "--out", str(out)]) == 0
    report = (out / "overall.csv").read_bytes()
    # never into the folder it reads: --overwrite there would delete the results being rescored
    for target in (out, out / "results", out / "results" / "sub"):
        with pytest.raises(RunFolderError, match="must be another folder than the run being rescored"):
            evaluate.main(data + ["--rescore", str(out / "results"), "--out", str(target), "--overwrite"])
    assert (out / "overall.csv").read_bytes() == report and (out / "results" / "zero" / "square_1.json").is_file()
    # a listed result that went missing, or holds another tracker's boxes: the run is damaged
    moved = out / "results" / "oracle" / "square_1.json"
    keep = moved.read_text()
    moved.unlink()
    with pytest.raises(RunFolderError, match=r"square_1\.json: listed in .*manifest\.json but missing"):
        evaluate.main(data + ["--rescore", str(out), "--out", str(tmp_path / "r1")])
    moved.write_text(keep.replace('"tracker": "oracle"', '"tracker": "zero"'))
    with pytest.raises(RunFolderError, match="the run was modified after it finished"):
        evaluate.main(data + ["--rescore", str(out), "--out", str(tmp_path / "r2")])
    moved.write_text(keep)
    # an interrupted evaluation (manifest still "running") has incomplete results
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(manifest | {"status": "running"}))
    with pytest.raises(RunFolderError, match="did not finish"):
        evaluate.main(data + ["--rescore", str(out), "--out", str(tmp_path / "r3")])
    # one being written right now (its lock held by another process)
    (out / "manifest.json").write_text(json.dumps(manifest))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from bmvtrack.run_folder import claim_run_folder;"
                               "claim_run_folder(sys.argv[1], []); print('held', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=f"is still being written \\(process {holder.pid}\\)"):
            evaluate.main(data + ["--rescore", str(out), "--out", str(tmp_path / "r4")])
        with pytest.raises(RunFolderError, match=f"another process \\(pid {holder.pid}\\) is writing this folder"):
            evaluate.main(data + ["--trackers", "zero", "--out", str(out), "--overwrite"])
    finally:
        holder.kill()
        holder.wait()
    assert (out / "overall.csv").read_bytes() == report
    # a folder from before manifests: stale results cannot be told apart, so the user names the trackers
    (out / "manifest.json").unlink()
    with pytest.raises(RunFolderError, match=r"has no manifest\.json .* pass --trackers to choose from oracle, zero"):
        evaluate.main(data + ["--rescore", str(out), "--out", str(tmp_path / "r5")])
    assert evaluate.main(data + ["--rescore", str(out), "--trackers", "oracle", "--out", str(tmp_path / "r5")]) == 0
    assert _overall_trackers(tmp_path / "r5") == ["oracle"]


# ----------------------------------------------------------------------------- the standard columns


def test_mask_run_lengths_round_trip():
    rng = np.random.default_rng(0)
    for m in (rng.random((7, 9)) > 0.5, np.zeros((4, 5), bool), np.ones((3, 2), bool), np.eye(4, dtype=bool)):
        rle = evaluate.encode_mask(m)
        assert rle["size"] == list(m.shape) and sum(rle["counts"]) == m.size
        np.testing.assert_array_equal(evaluate.decode_mask(json.loads(json.dumps(rle))), m)
    assert evaluate.encode_mask(np.ones((3, 2), bool))["counts"] == [0, 6]  # runs start with background
    with pytest.raises(ValueError, match="sum to"):
        evaluate.decode_mask({"size": [2, 2], "counts": [1, 2]})


def make_tilted_ellipse(root: Path, n_frames=8, h=96, w=128) -> Path:
    """A DAVIS 2016 folder: an ellipse tilted by 35° moving right by 3 px a frame (frames are its mask)."""
    import cv2

    for t in range(n_frames):
        mask = np.zeros((h, w), np.uint8)
        cv2.ellipse(mask, (40 + 3 * t, 48), (22, 9), 35, 0, 360, 255, -1)
        for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
            p = root / sub / "240p" / "ellipse" / f"{t:05d}.{ext}"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.repeat(mask[..., None], 3, axis=-1) if ext == "jpg" else mask).save(p)
    return root


@pytest.fixture()
def ellipse(tmp_path):
    from test_vae_eval import mask_frames

    ds = mask_frames(VideoDataset(make_tilted_ellipse(tmp_path / "ellipse"), layout="davis2016", resolution="240p",
                                  filters=KEEP_ALL))
    return ds, ds.tracks()[0]


def test_a_tracker_that_segments_is_scored_by_its_masks_tight_box_and_j_and_f(ellipse):
    """SiamMask's convention: a segmentation tracker's axis-aligned box is its mask's tight box, so a
    perfect segmenter scores (almost) perfectly where the corners of its rotated box would not; a
    tracker with a rotated box only (the oracle) reports the corner bounds. J&F of the tracked
    masks: high for the perfect segmenter, lower for one whose masks are 4 px off, blank for the oracle."""
    from test_vae_eval import OracleModel

    from bmvtrack.agents.baselines import SegmentationTracker
    from bmvtrack.motion import rbox_to_xyxy

    ds, track = ellipse
    factories = {"seg": lambda: SegmentationTracker(OracleModel(), name="seg"),
                 "seg-off": lambda: SegmentationTracker(OracleModel(shift=4), name="seg-off"),
                 "oracle": lambda: make_tracker("oracle")}
    results = evaluate_trackers(factories, ds, [track], progress=False)
    by = {r["tracker"]: r for r in results.overall()}
    seg, off, orc = by["seg"], by["seg-off"], by["oracle"]
    assert seg["box"] == off["box"] == "mask" and orc["box"] == "corners"
    # the tracked mask is the object's, so its tight box is the ground truth's; the corners are far looser
    assert seg["mean_iou"] > 0.93 and seg["success_auc"] > 0.9
    assert seg["success_auc_bounds"] < seg["success_auc"] - 0.2
    assert orc["success_auc"] == orc["success_auc_bounds"] < 0.75 and orc["mean_iou_rot"] > 0.99
    res, score = results.runs["seg"][0]
    gt = track_ground_truth(ds, track)
    for i in range(1, len(track)):
        tight = mask_aabb(res.mask(i))
        np.testing.assert_array_equal(res.aabbs[i], tight)  # what the tracker reported: its mask's tight box
        assert score.iou[i] == pytest.approx(evaluate.aabb_iou(tight, gt.aabbs[i]))
        assert score.iou_bounds[i] == pytest.approx(evaluate.aabb_iou(rbox_to_xyxy(res.box(i)), gt.aabbs[i]))
    # J&F (DAVIS): frames 1 … N−2 of the tracked masks against the annotation
    assert seg["jf"] > 0.9 and off["jf"] < seg["jf"] - 0.1 and orc["jf"] is None
    assert score.jf["n_frames"] == len(track) - 2
    assert seg["jf"] == pytest.approx((seg["j_mean"] + seg["f_mean"]) / 2)
    # the masks travel with the saved result, so a rescore gives the same numbers
    again = {r["tracker"]: r for r in rescore([SequenceResult.from_dict(json.loads(json.dumps(r.to_dict())))
                                               for runs in results.runs.values() for r, _ in runs], ds).overall()}
    for name, row in by.items():
        for k in ("success_auc", "precision_20", "mean_iou", "jf", "success_auc_bounds", "fps", "box"):
            assert again[name][k] == (pytest.approx(row[k]) if isinstance(row[k], float) else row[k]), (name, k)


class SlowStart:
    """Costs 60 ms to build and 40 ms to initialise, then tracks (standing still) at once."""

    name = "slow"

    def __init__(self):
        time.sleep(0.06)

    def init(self, frame, box):
        time.sleep(0.04)
        self.box = box

    def update(self, frame):
        return self.box


def test_fps_count_every_per_track_set_up(square):
    ds, track = square
    results = evaluate_trackers({"slow": SlowStart}, ds, [track, track], progress=False)
    runs = results.runs["slow"]
    for res, score in runs:
        assert res.setup_seconds >= 0.06 and res.times[0] >= 0.04
        assert score.fps == pytest.approx(len(res) / (res.setup_seconds + res.times.sum()))
        assert score.fps_per_frame == pytest.approx((len(res) - 1) / res.times[1:].sum())
    row = results.overall()[0]
    total = sum(res.setup_seconds + res.times.sum() for res, _ in runs)
    assert row["fps"] == pytest.approx(12 / total) and row["fps"] < 12 / 0.2  # the set-up is counted
    assert row["fps_per_frame"] == pytest.approx(10 / sum(res.times[1:].sum() for res, _ in runs))
    assert row["fps_per_frame"] > 100 * row["fps"]  # updates alone are nearly free


def test_toolkit_files_in_the_got10k_and_pytracking_formats(square, tmp_path):
    """got10k: <tracker>/<seq>/<seq>_001.txt with x,y,w,h lines and <seq>_time.txt; pytracking:
    <tracker>/<seq>.txt tab-separated and <seq>_time.txt. Boxes count pixels (w = x1 − x0 + 1), so the
    oracle's boxes are the annotation's pixel boxes and the toolkits' own IoU of them is 1."""
    ds, track = square
    results = evaluate_trackers({"oracle": lambda: make_tracker("oracle"), "garbage": GarbageTracker}, ds, [track],
                                progress=False)
    paths = write_report(results, tmp_path / "report")
    got = paths["got10k"] / "oracle" / "square_1"
    lines = (got / "square_1_001.txt").read_text().splitlines()
    assert len(lines) == len(track) and lines[0] == "10.000,18.000,12.000,12.000"  # frame 0: the square, 12 px
    boxes = np.loadtxt(got / "square_1_001.txt", delimiter=",")
    pyt = paths["pytracking"] / "oracle"
    assert (pyt / "square_1.txt").read_text().splitlines()[1] == "13.000\t18.000\t12.000\t12.000"
    np.testing.assert_array_equal(np.loadtxt(pyt / "square_1.txt", delimiter="\t"), boxes)
    gt = track_ground_truth(ds, track)
    present = ~np.isnan(gt.aabbs).any(axis=1)
    anno = np.column_stack([gt.aabbs[:, :2], gt.aabbs[:, 2:] - gt.aabbs[:, :2] + 1])[present]
    pred = boxes[present]
    # pytracking's calc_iou_overlap (inclusive pixel boxes)
    tl = np.maximum(pred[:, :2], anno[:, :2])
    br = np.minimum(pred[:, :2] + pred[:, 2:] - 1, anno[:, :2] + anno[:, 2:] - 1)
    inter = np.clip(br - tl + 1, 0, None).prod(axis=1)
    np.testing.assert_allclose(inter / (pred[:, 2:].prod(axis=1) + anno[:, 2:].prod(axis=1) - inter), 1.0)
    # times: one line per frame, frame 0 holding the set-up, summing to the track's time
    res = results.runs["oracle"][0][0]
    for f, sep in ((got / "square_1_time.txt", ","), (pyt / "square_1_time.txt", "\t")):
        t = np.loadtxt(f, delimiter=sep)
        assert t.shape == (len(track),) and t.sum() == pytest.approx(res.seconds, abs=1e-5)
    # a frame without a box is 0,0,0,0 (got10k scores it 0, pytracking keeps the previous box), never NaN
    garbage = (paths["got10k"] / "garbage" / "square_1" / "square_1_001.txt").read_text().splitlines()
    assert garbage[1] == "0.000,0.000,0.000,0.000" and "nan" not in "".join(garbage)


def test_version_1_results_rescore_with_the_corner_bounds_and_say_so(ellipse, tmp_path):
    from test_vae_eval import OracleModel

    from bmvtrack.agents.baselines import SegmentationTracker

    ds, track = ellipse
    results = evaluate_trackers({"seg": lambda: SegmentationTracker(OracleModel(), name="seg")}, ds, [track],
                                progress=False)
    res = results.runs["seg"][0][0]
    new = results.overall()[0]
    old = {k: v for k, v in res.to_dict().items() if k not in ("version", "aabbs", "masks", "setup_seconds")}
    old["format"] = evaluate.LEGACY_RESULT_FORMAT
    (tmp_path / "old.json").write_text(json.dumps(old))
    legacy = SequenceResult.load(tmp_path / "old.json")
    assert legacy.version == 1 and legacy.aabbs is None and legacy.masks is None
    said = []
    row = rescore([legacy], ds, warn=said.append).overall()[0]
    assert len(said) == 1 and "seg" in said[0] and "format version 1" in said[0] and "corner bounds" in said[0]
    assert row["box"] == "corners (v1)" and row["jf"] is None
    assert row["success_auc"] == pytest.approx(new["success_auc_bounds"])
    assert row["success_auc"] < new["success_auc"] - 0.2
    assert "corners (v1): rescored from results saved in format version 1" in evaluate.markdown_table([row])
    # a result of a version this code does not know is refused, not misread
    (tmp_path / "future.json").write_text(json.dumps(res.to_dict() | {"version": 3}))
    with pytest.raises(ValueError, match="future.json.*version 3"):
        SequenceResult.load(tmp_path / "future.json")
