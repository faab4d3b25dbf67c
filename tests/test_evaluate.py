"""Running, scoring and reporting trackers (bmvtrack.evaluate) and the `python -m bmvtrack.evaluate` command."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import subprocess
import sys
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
OVERALL_COLUMNS = ["tracker", "sequences", "frames", "success_auc", "precision_20", "mean_iou", "success_auc_bounds",
                   "success_auc_rot", "mean_iou_rot", "losses", "fps", "uses_gt"]


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
    assert by["kcf"]["success_auc"] == by["kcf"]["success_auc_bounds"]  # axis-aligned: one conversion
    assert all(math.isfinite(float(r["success_auc"])) and float(r["fps"]) > 0 for r in rows)
    with open(paths["sequences_csv"], newline="") as fh:
        seq_rows = list(csv.DictReader(fh))
    assert len(seq_rows) == 4 and "sequence" in seq_rows[0]
    assert "oracle †" in paths["overall_md"].read_text()
    # the report can be recomputed from the saved predictions alone
    again = rescore(load_results(paths["results"]), ds)
    before = {r["tracker"]: r for r in results.overall()}
    for r in again.overall():
        for k in ("success_auc", "precision_20", "mean_iou", "success_auc_bounds", "mean_iou_rot", "losses"):
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
    # the true rotated box's inscribed ellipse is nearer the mask's tight bounds than its corners
    assert o["success_auc"] > o["success_auc_bounds"]


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
    assert evaluate.main(data + ["--trackers", "zero", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "results").iterdir()) == ["zero"]
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
