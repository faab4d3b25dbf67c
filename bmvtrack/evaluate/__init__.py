"""Running box trackers over tracks, scoring them, and writing the baseline report.

A *run* step drives one tracker over one track and records what it predicted
(``run_tracker`` → ``SequenceResult``, storable as JSON); a separate *score* step compares the
predictions with the annotation using the pure-numpy functions of ``bmvtrack.metrics``
(``score_sequence`` → ``SequenceScore``), so a report can be recomputed from saved results
without running anything again. Trackers come in as objects with ``init(frame, box)`` and
``update(frame) -> RBox`` (``bmvtrack.agents.baselines`` defines them); this module knows nothing of
who they are.

Protocol and conventions
------------------------
* Boxes are the motion module's ``RBox``; pixel ``(col, row)`` has its centre at ``(col, row)``
  and a box's extent runs between the centres of its outermost pixels (the convention of
  ``minAreaRect`` on mask pixels). The ground truth of a frame is (a) the canonical rotated box
  of its mask (``motion_stats.track_boxes``) and (b) the mask's tight axis-aligned bounds in the
  same convention, ``[x0, y0, x1, y1]`` = extreme foreground pixel centres (so an axis-aligned
  rectangular mask's rotated box and its bounds coincide).
* Headline IoU (OTB protocol, since OpenCV trackers are axis-aligned): an axis-aligned box made
  from the prediction against the mask's tight bounds. Since session 11 that box is the bounds of
  the ellipse inscribed in the predicted rotated box (``motion.rbox_ellipse_xyxy``), the object's
  likely extent inside its minimum-area rectangle; before, it was the rotated box's corners, which
  capped even the ground-truth rotated box at 0.80 AUC on DAVIS dev-val and 0.68 on synthetic
  video. Both are reported ("AUC" and "AUC bounds"); for an axis-aligned prediction they are
  equal. The rotated IoU (predicted ``RBox`` against the canonical ground-truth ``RBox``) is
  reported beside them. Centre error: distance between the centre of the predicted box and the
  centre of the mask's tight bounds (the same under both conversions).
* The tracker is initialised on frame 0 with the ground-truth rotated box — or, for a tracker
  that declares ``axis_aligned = True`` (OpenCV's), with the mask's tight axis-aligned bounds
  (the OTB protocol; ``axis_aligned_init="rbox"`` gives it the rotated box's looser bounds
  instead). Frame 0 is given, not scored (GOT-10k protocol), and is NaN in the per-frame arrays. Frames where the object is
  absent are NaN too: they count neither as success nor as failure.
* A prediction that is not a box (None, non-finite numbers, a side ≤ 0) scores IoU 0 and centre
  error +inf on a frame where the object is present: it is a failure, not a crash.
* Losses of track: runs of scored frames with axis-aligned IoU ≤ 0 (no overlap), a long loss
  counting once (``metrics.count_losses``).
* Overall numbers average the per-sequence numbers over sequences (OTB / got10k: the overall
  success curve is the mean of per-sequence curves); losses are summed; fps is all frames over
  all time spent inside ``init``/``update`` (frame decoding excluded).
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from bmvtrack.data.readers import Track, VideoDataset
from bmvtrack.io import atomic_save, atomic_write_text, file_slug
from bmvtrack.metrics import (
    center_errors,
    count_losses,
    precision_at,
    success_auc,
    success_curve,
    success_thresholds,
)
from bmvtrack.motion import (
    MIN_SIDE, BoxMethod, RBox, aabb_iou, aabb_to_rbox, rbox_ellipse_xyxy, rbox_to_xyxy, rotated_iou,
)
from bmvtrack.analyze_motion import track_boxes
from bmvtrack.run_folder import RunFolderError, writer_pid

RESULT_FORMAT = "bmvtrack.evaluate/sequence-result/v1"
MANIFEST_FORMAT = "bmvtrack.evaluate/manifest/v1"
MANIFEST_NAME = "manifest.json"
RESULTS_DIR = "results"
# What an evaluation writes into its --out: any of these present means the folder holds one.
EVALUATION_OUTPUTS = (MANIFEST_NAME, RESULTS_DIR, "overall.md", "overall.csv", "sequences.md", "sequences.csv",
                      "success.png", "command.txt", "metrics.jsonl")

# Columns of the tables, in order: (key, header, format).
_METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("success_auc", "AUC", "{:.3f}"),
    ("precision_20", "Prec@20", "{:.3f}"),
    ("mean_iou", "mIoU", "{:.3f}"),
    ("success_auc_bounds", "AUC bounds", "{:.3f}"),
    ("success_auc_rot", "AUC rot", "{:.3f}"),
    ("mean_iou_rot", "mIoU rot", "{:.3f}"),
    ("losses", "Losses", "{:d}"),
    ("fps", "FPS", "fps"),
)


# ----------------------------------------------------------------------------- ground truth


def mask_aabb(mask: np.ndarray) -> np.ndarray | None:
    """Tight axis-aligned bounds ``[x0, y0, x1, y1]`` of a mask's foreground pixel centres (None if empty).

    Sides shorter than ``MIN_SIDE`` (a one-pixel-thin object) are widened about the centre, as
    rotated boxes are.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    cols = np.flatnonzero(m.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(m.any(axis=1))
    out = np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)
    for lo, hi in ((0, 2), (1, 3)):
        if out[hi] - out[lo] < MIN_SIDE:
            c = (out[hi] + out[lo]) / 2.0
            out[lo], out[hi] = c - MIN_SIDE / 2.0, c + MIN_SIDE / 2.0
    return out


@dataclass
class GroundTruth:
    """A track's annotation as boxes: canonical rotated boxes and tight axis-aligned bounds."""

    rboxes: list[RBox | None]
    aabbs: np.ndarray  # (N, 4) [x0, y0, x1, y1], NaN rows where the object is absent


def track_ground_truth(ds: VideoDataset, track: Track, method: BoxMethod = "minarearect") -> GroundTruth:
    """Rotated boxes (``motion_stats.track_boxes``) and tight bounds of every frame of a track."""
    rboxes = track_boxes(ds, track, method)
    aabbs = np.full((len(track), 4), np.nan)
    for i in range(len(track)):
        if track.present[i]:
            b = mask_aabb(ds.mask(track, i))
            if b is not None:
                aabbs[i] = b
    return GroundTruth(rboxes, aabbs)


# ----------------------------------------------------------------------------- running


def _slug(name: str) -> str:
    return file_slug(name).strip("_") or "unnamed"


def result_file(results_dir: str | Path, tracker: str, sequence: str) -> Path:
    """Where a sequence result is saved: ``<results_dir>/<tracker>/<track>.json`` (names made file-safe)."""
    return Path(results_dir) / _slug(tracker) / f"{_slug(sequence)}.json"


def tracker_slug_clashes(names: Iterable[str]) -> list[list[str]]:
    """Groups of tracker names that would share a results folder (``a b`` and ``a_b``)."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(_slug(n), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


def _box_row(box: Any) -> np.ndarray:
    """A prediction as ``[cx, cy, w, h, angle]``; NaN row if it is not a usable box."""
    try:
        row = box.as_array() if isinstance(box, RBox) else np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return np.full(5, np.nan)
    if row.shape != (5,) or not np.all(np.isfinite(row)) or row[2] <= 0 or row[3] <= 0:
        return np.full(5, np.nan)
    return row.astype(np.float64)


@dataclass
class SequenceResult:
    """What one tracker predicted on one track: a box per frame and the time each call took."""

    tracker: str
    sequence: str  # the track's name, "<sequence>/<object id>"
    boxes: np.ndarray  # (N, 5) [cx, cy, w, h, angle]; NaN rows where the prediction was not a box
    times: np.ndarray  # (N,) seconds in init (frame 0) / update (later frames)
    img_size: tuple[int, int]  # (H, W)
    uses_ground_truth: bool = False
    frame_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def fps(self) -> float:
        total = float(np.sum(self.times))
        return len(self) / total if total > 0 else float("inf")

    def box(self, i: int) -> RBox | None:
        row = self.boxes[i]
        return None if np.isnan(row).any() else RBox.from_array(row)

    def to_dict(self) -> dict:
        return {
            "format": RESULT_FORMAT,
            "tracker": self.tracker,
            "sequence": self.sequence,
            "img_size": list(self.img_size),
            "uses_ground_truth": bool(self.uses_ground_truth),
            "frame_names": list(self.frame_names),
            "box_fields": ["cx", "cy", "w", "h", "angle"],
            "boxes": [None if np.isnan(r).any() else [float(v) for v in r] for r in self.boxes],
            "times": [float(t) for t in self.times],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SequenceResult:
        if d.get("format") != RESULT_FORMAT:
            raise ValueError(f"not a sequence result (format {d.get('format')!r}, expected {RESULT_FORMAT!r})")
        boxes = np.array([[np.nan] * 5 if b is None else b for b in d["boxes"]], dtype=np.float64).reshape(-1, 5)
        return cls(
            tracker=str(d["tracker"]), sequence=str(d["sequence"]), boxes=boxes,
            times=np.asarray(d["times"], dtype=np.float64), img_size=tuple(int(v) for v in d["img_size"]),
            uses_ground_truth=bool(d.get("uses_ground_truth", False)),
            frame_names=tuple(d.get("frame_names", ())),
        )

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SequenceResult:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: unreadable sequence result: {exc}") from None


def run_tracker(tracker: Any, ds: VideoDataset, track: Track, gt_boxes: Sequence[RBox | None],
                name: str | None = None, init_box: RBox | None = None) -> SequenceResult:
    """One pass: ``init`` on frame 0 with the ground-truth box, ``update`` on every later frame.

    ``init_box`` replaces ``gt_boxes[0]`` as the box given to ``init`` (e.g. the mask's tight
    bounds for an axis-aligned tracker); it is recorded as the frame-0 prediction.
    A tracker with ``uses_ground_truth = True`` first gets ``set_ground_truth(gt_boxes, W, H)``.
    Only the time inside ``init``/``update`` is measured. Exceptions raised by the tracker
    propagate (a bug is not a tracking failure); a returned non-box is recorded as a NaN row.
    """
    if len(gt_boxes) != len(track):
        raise ValueError(f"{track.name}: {len(gt_boxes)} ground-truth boxes for {len(track)} frames")
    if gt_boxes[0] is None and init_box is None:
        raise ValueError(f"{track.name}: the object is absent in frame 0, nothing to initialise on")
    h, w = track.size
    uses_gt = bool(getattr(tracker, "uses_ground_truth", False))
    if uses_gt:
        tracker.set_ground_truth(list(gt_boxes), w, h)
    n = len(track)
    boxes = np.full((n, 5), np.nan)
    times = np.zeros(n)
    frame = ds.frame(track, 0)
    first = init_box if init_box is not None else gt_boxes[0]
    t0 = time.perf_counter()
    tracker.init(frame, first)
    # a tracker that reused work made for another (a shared first-frame adaptation) is charged for it
    times[0] = time.perf_counter() - t0 + float(getattr(tracker, "reused_init_seconds", 0.0))
    boxes[0] = first.as_array()
    for i in range(1, n):
        frame = ds.frame(track, i)
        t0 = time.perf_counter()
        pred = tracker.update(frame)
        times[i] = time.perf_counter() - t0
        boxes[i] = _box_row(pred)
    return SequenceResult(
        tracker=name or str(getattr(tracker, "name", type(tracker).__name__)), sequence=track.name,
        boxes=boxes, times=times, img_size=(int(h), int(w)), uses_ground_truth=uses_gt,
        frame_names=tuple(track.frame_names),
    )


# ----------------------------------------------------------------------------- scoring


@dataclass
class SequenceScore:
    """Per-frame scores of one result (NaN: frame 0 or object absent) and their summary."""

    tracker: str
    sequence: str
    iou: np.ndarray  # axis-aligned IoU (headline, OTB protocol): inscribed ellipse's bounds vs tight bounds
    iou_bounds: np.ndarray  # axis-aligned IoU of the rotated box's corners' bounds (the headline before session 11)
    iou_rot: np.ndarray  # rotated IoU against the canonical ground-truth RBox
    center_error: np.ndarray  # px; +inf where the prediction was not a box
    fps: float
    uses_ground_truth: bool = False
    loss_threshold: float = 0.0

    @property
    def n_frames(self) -> int:
        """Scored frames (object present, frame 0 excluded)."""
        return int(np.count_nonzero(~np.isnan(self.iou)))

    def summary(self) -> dict[str, Any]:
        valid, valid_rot = self.iou[~np.isnan(self.iou)], self.iou_rot[~np.isnan(self.iou_rot)]
        return {
            "tracker": self.tracker,
            "sequence": self.sequence,
            "uses_gt": self.uses_ground_truth,
            "frames": self.n_frames,
            "success_auc": success_auc(self.iou),
            "precision_20": precision_at(self.center_error, 20.0),
            "mean_iou": float(valid.mean()) if valid.size else float("nan"),
            "success_auc_bounds": success_auc(self.iou_bounds),
            "success_auc_rot": success_auc(self.iou_rot),
            "mean_iou_rot": float(valid_rot.mean()) if valid_rot.size else float("nan"),
            "losses": count_losses(self.iou, self.loss_threshold),
            "fps": self.fps,
        }


def score_sequence(result: SequenceResult, gt_rboxes: Sequence[RBox | None], gt_aabbs: Any,
                   loss_threshold: float = 0.0) -> SequenceScore:
    """Per-frame axis-aligned IoU, rotated IoU and centre error of a result against the annotation.

    ``gt_rboxes``: canonical rotated boxes (None where absent); ``gt_aabbs``: (N, 4)
    ``[x0, y0, x1, y1]`` tight mask bounds (NaN rows or None entries where absent).
    """
    n = len(result)
    if len(gt_rboxes) != n:
        raise ValueError(f"{result.sequence}: {n} predictions for {len(gt_rboxes)} ground-truth boxes")
    aabbs = np.array([[np.nan] * 4 if b is None else b for b in gt_aabbs], dtype=np.float64).reshape(-1, 4)
    if len(aabbs) != n:
        raise ValueError(f"{result.sequence}: {n} predictions for {len(aabbs)} ground-truth bounds")
    iou, iou_bounds, iou_rot, err = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for i in range(1, n):  # frame 0 is given, not scored
        gt_r, gt_a = gt_rboxes[i], aabbs[i]
        present = gt_r is not None and not np.isnan(gt_a).any()
        if not present:
            continue
        pred = result.box(i)
        if pred is None:
            iou[i], iou_bounds[i], iou_rot[i], err[i] = 0.0, 0.0, 0.0, math.inf
            continue
        iou[i] = aabb_iou(rbox_ellipse_xyxy(pred), gt_a)
        iou_bounds[i] = aabb_iou(rbox_to_xyxy(pred), gt_a)
        iou_rot[i] = rotated_iou(pred, gt_r)
        err[i] = float(center_errors([[pred.cx, pred.cy]], [[(gt_a[0] + gt_a[2]) / 2, (gt_a[1] + gt_a[3]) / 2]])[0])
    return SequenceScore(result.tracker, result.sequence, iou, iou_bounds, iou_rot, err, result.fps,
                         result.uses_ground_truth, loss_threshold)


# ----------------------------------------------------------------------------- evaluation


@dataclass
class EvaluationResults:
    """Results and scores of several trackers on several tracks: ``runs[tracker]`` in track order."""

    runs: dict[str, list[tuple[SequenceResult, SequenceScore]]] = field(default_factory=dict)

    def add(self, result: SequenceResult, score: SequenceScore) -> None:
        self.runs.setdefault(result.tracker, []).append((result, score))

    @property
    def trackers(self) -> list[str]:
        return list(self.runs)

    def per_sequence(self) -> list[dict[str, Any]]:
        """One row per (tracker, track)."""
        return [s.summary() for runs in self.runs.values() for _, s in runs]

    def overall(self) -> list[dict[str, Any]]:
        """One row per tracker: per-sequence numbers averaged over sequences, losses summed."""
        rows = []
        for name, runs in self.runs.items():
            sums = [s.summary() for _, s in runs]
            row: dict[str, Any] = {
                "tracker": name,
                "uses_gt": any(s.uses_ground_truth for _, s in runs),
                "sequences": len(runs),
                "frames": int(sum(r["frames"] for r in sums)),
            }
            for key in ("success_auc", "precision_20", "mean_iou", "success_auc_bounds", "success_auc_rot",
                        "mean_iou_rot"):
                vals = np.array([r[key] for r in sums], dtype=np.float64)
                row[key] = float(np.nanmean(vals)) if np.any(~np.isnan(vals)) else float("nan")
            row["losses"] = int(sum(r["losses"] for r in sums))
            total_time = float(sum(np.sum(res.times) for res, _ in runs))
            total_frames = sum(len(res) for res, _ in runs)
            row["fps"] = total_frames / total_time if total_time > 0 else float("inf")
            rows.append(row)
        return rows

    def success_curves(self, rotated: bool = False) -> dict[str, np.ndarray]:
        """Mean over sequences of the per-sequence success curves (thresholds 0..1 step 0.05)."""
        out = {}
        for name, runs in self.runs.items():
            curves = np.array([success_curve(s.iou_rot if rotated else s.iou) for _, s in runs])
            ok = ~np.isnan(curves).any(axis=1)
            out[name] = curves[ok].mean(axis=0) if ok.any() else np.full(len(success_thresholds()), np.nan)
        return out


def evaluate_trackers(
    trackers: Mapping[str, Callable[[], Any]],
    ds: VideoDataset,
    tracks: Iterable[Track],
    progress: bool = True,
    box_method: BoxMethod = "minarearect",
    results_dir: str | Path | None = None,
    loss_threshold: float = 0.0,
    axis_aligned_init: Literal["tight", "rbox"] = "tight",
) -> EvaluationResults:
    """Run every tracker on every track (a fresh tracker from its factory per track) and score it.

    ``trackers`` maps the name shown in the report to a zero-argument factory. A tracker with
    ``axis_aligned = True`` is initialised with the mask's tight bounds (``"tight"``, OTB) or
    with the rotated ground-truth box like every other tracker (``"rbox"``). With
    ``results_dir`` each sequence result is saved as JSON as soon as it exists
    (``<results_dir>/<tracker>/<track>.json``).
    """
    if axis_aligned_init not in ("tight", "rbox"):
        raise ValueError(f"axis_aligned_init must be 'tight' or 'rbox', got {axis_aligned_init!r}")
    tracks = list(tracks)
    out = EvaluationResults({name: [] for name in trackers})
    bar = tqdm(total=len(tracks) * len(trackers), desc="tracking", disable=not progress, leave=False)
    for track in tracks:
        gt = track_ground_truth(ds, track, box_method)
        for name, factory in trackers.items():
            bar.set_postfix_str(f"{name} {track.name}")
            tracker = factory()
            init_box = None
            if axis_aligned_init == "tight" and getattr(tracker, "axis_aligned", False):
                init_box = aabb_to_rbox(gt.aabbs[0])
            result = run_tracker(tracker, ds, track, gt.rboxes, name=name, init_box=init_box)
            if results_dir is not None:
                result.save(result_file(results_dir, name, track.name))
            out.add(result, score_sequence(result, gt.rboxes, gt.aabbs, loss_threshold))
            bar.update(1)
    bar.close()
    return out


def save_results(results: EvaluationResults, results_dir: str | Path) -> list[Path]:
    """Every sequence result as ``<results_dir>/<tracker>/<track>.json``; returns the paths."""
    paths = []
    for name, runs in results.runs.items():
        for res, _ in runs:
            p = result_file(results_dir, name, res.sequence)
            res.save(p)
            paths.append(p)
    return paths


def load_results(results_dir: str | Path) -> list[SequenceResult]:
    """All sequence results saved under ``results_dir`` (sorted by path)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: results folder not found")
    found = sorted(root.rglob("*.json"))
    if not found:
        raise FileNotFoundError(f"{root}: no sequence results (*.json) in it")
    return [SequenceResult.load(p) for p in found]


# ----------------------------------------------------------------------------- run manifest
#
# An evaluation's own record of what it ran. `evaluate` writes it when it starts (status
# "running") and again when every result and the report are written (status "finished", with the
# result file of each tracker and track). `--rescore` reads exactly the files it lists, so a result
# file left in the folder by an earlier evaluation, or copied in, never enters a report.


def write_manifest(out_dir: str | Path, *, status: Literal["running", "finished"], trackers: Sequence[str],
                   tracks: Sequence[str] = (), results: EvaluationResults | None = None,
                   **info: Any) -> Path:
    """Write ``<out_dir>/manifest.json`` (atomically): the trackers run, the tracks, the result files.

    ``info`` adds plain fields (command, data, ``kind="rescore"`` and ``source`` for a rescored report).
    """
    out = Path(out_dir)
    files: dict[str, list[str]] = {}
    if results is not None:
        for name, runs in results.runs.items():
            files[name] = [result_file(RESULTS_DIR, name, res.sequence).as_posix() for res, _ in runs]
    doc = {"format": MANIFEST_FORMAT, "kind": "evaluation", "status": status, "trackers": list(trackers),
           "tracks": list(tracks), "results": files, "written": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
    path = out / MANIFEST_NAME
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path


def read_manifest(run_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of an evaluation folder (None when it has none); errors name the file."""
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: unreadable run manifest ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise RunFolderError(f"{path}: not an evaluate manifest (format {doc.get('format') if isinstance(doc, dict) else None!r})")
    return doc


def evaluation_folder(path: str | Path) -> Path:
    """The run folder of ``--rescore PATH``: PATH itself, or its parent when PATH is its ``results/``."""
    path = Path(path)
    if not (path / MANIFEST_NAME).is_file() and path.name == RESULTS_DIR and (path.parent / MANIFEST_NAME).is_file():
        return path.parent
    return path


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def load_run_results(path: str | Path, trackers: Sequence[str] | None = None,
                     warn: Callable[[str], None] = _warn) -> list[SequenceResult]:
    """The sequence results an evaluation folder's own manifest says it produced (for ``--rescore``).

    ``path``: the folder ``evaluate --out`` wrote, or its ``results/``. Only the files the
    manifest lists are read; other result files under it (stale, or copied in) are left out with
    a warning, never reported. A run still being written (its lock is held), one that did not
    finish, and a listed file that is missing or holds another tracker's result are errors.
    ``trackers`` narrows the report to some of the run's trackers. A folder without a manifest
    (results written before evaluate recorded one) cannot tell a stale file from a fresh one, so
    ``trackers`` must name the trackers to report there.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: results folder not found")
    run_dir = evaluation_folder(path)
    pid = writer_pid(run_dir)
    if pid is not None:
        raise RunFolderError(f"{run_dir}: is still being written (process {pid}); rescore it when that evaluation is done")
    manifest = read_manifest(run_dir)
    if manifest is None:
        return _load_unrecorded(path, trackers, warn)
    if manifest.get("kind") == "rescore":
        raise RunFolderError(f"{run_dir}: holds a report rescored from {manifest.get('source')}, not results of its "
                             "own; rescore that folder instead")
    if manifest.get("status") != "finished":
        raise RunFolderError(f"{run_dir}: its evaluation did not finish (manifest status {manifest.get('status')!r}), "
                             "so its results are incomplete; evaluate again with --overwrite")
    listed: dict[str, list[str]] = manifest.get("results") or {}
    chosen = list(listed)
    if trackers is not None:
        unknown = [t for t in trackers if t not in listed]
        if unknown:
            raise RunFolderError(f"{run_dir}: its evaluation did not run {', '.join(unknown)} "
                                 f"(it ran {', '.join(listed) or 'nothing'})")
        chosen = list(trackers)
    out: list[SequenceResult] = []
    for name in chosen:
        for rel in listed[name]:
            file = run_dir / rel
            if not file.is_file():
                raise RunFolderError(f"{file}: listed in {run_dir / MANIFEST_NAME} but missing; the run is damaged, "
                                     "evaluate again with --overwrite")
            res = SequenceResult.load(file)
            if res.tracker != name:
                raise RunFolderError(f"{file}: holds a result of {res.tracker!r}, but the manifest lists it for "
                                     f"{name!r}; the run was modified after it finished")
            out.append(res)
    known = {(run_dir / rel).resolve() for files in listed.values() for rel in files}
    stray = [p for p in sorted((run_dir / RESULTS_DIR).rglob("*.json")) if p.resolve() not in known]
    if stray:
        warn(f"{run_dir}: left out {len(stray)} result file(s) its manifest does not list "
             f"(e.g. {stray[0].relative_to(run_dir)}): not part of this evaluation")
    return out


def _load_unrecorded(path: Path, trackers: Sequence[str] | None, warn: Callable[[str], None]) -> list[SequenceResult]:
    """Results of a folder without a manifest: only the trackers the user names."""
    root = path / RESULTS_DIR if (path / RESULTS_DIR).is_dir() else path
    found = load_results(root)
    names = sorted({r.tracker for r in found})
    if trackers is None:
        raise RunFolderError(f"{path}: has no {MANIFEST_NAME} (written before evaluate recorded its trackers, or "
                             f"gathered by hand), so stale results cannot be told apart; pass --trackers to choose "
                             f"from {', '.join(names)}")
    missing = [t for t in trackers if t not in names]
    if missing:
        raise RunFolderError(f"{path}: no results of {', '.join(missing)} (found {', '.join(names)})")
    warn(f"{path}: no {MANIFEST_NAME}; reporting every result of {', '.join(trackers)} found there")
    return [r for r in found if r.tracker in trackers]


def rescore(results: Iterable[SequenceResult], ds: VideoDataset, box_method: BoxMethod = "minarearect",
            loss_threshold: float = 0.0) -> EvaluationResults:
    """Score saved results against the dataset's annotation again, without running any tracker."""
    by_name = {t.name: t for t in ds.tracks()}
    gts: dict[str, GroundTruth] = {}
    out = EvaluationResults()
    for res in results:
        if res.sequence not in by_name:
            raise ValueError(f"result for {res.sequence!r} ({res.tracker}): no such track in {ds.root}")
        if res.sequence not in gts:
            gts[res.sequence] = track_ground_truth(ds, by_name[res.sequence], box_method)
        gt = gts[res.sequence]
        out.add(res, score_sequence(res, gt.rboxes, gt.aabbs, loss_threshold))
    return out


# ----------------------------------------------------------------------------- report


def _fmt(value: Any, fmt: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if fmt == "fps":
        return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"
    return fmt.format(value)


def _columns(per_sequence: bool) -> list[tuple[str, str, str]]:
    lead = [("tracker", "Tracker", "{}")]
    lead += [("sequence", "Sequence", "{}")] if per_sequence else [("sequences", "Seqs", "{:d}")]
    return lead + [("frames", "Frames", "{:d}")] + list(_METRIC_COLUMNS)


def markdown_table(rows: Sequence[Mapping[str, Any]], per_sequence: bool = False) -> str:
    """A Markdown table of overall (or per-sequence) rows; trackers that use the answer are marked †."""
    cols = _columns(per_sequence)
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |",
             "|" + "|".join(":---" if key in ("tracker", "sequence") else "---:" for key, _, _ in cols) + "|"]
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            cell = _fmt(r[key], fmt)
            if key == "tracker" and r.get("uses_gt"):
                cell += " †"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.get("uses_gt") for r in rows):
        lines.append("")
        lines.append("† uses the ground truth (upper bound, not a tracker).")
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[Mapping[str, Any]], per_sequence: bool = False) -> str:
    """CSV of the same rows, machine-readable keys as headers, full precision."""
    keys = [k for k, _, _ in _columns(per_sequence)] + ["uses_gt"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in keys})
    return buf.getvalue()


def plot_success(results: EvaluationResults, path: str | Path, title: str = "") -> None:
    """PNG success plots: axis-aligned IoU (headline) and rotated IoU, one curve per tracker, AUC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr = success_thresholds()
    overall = {r["tracker"]: r for r in results.overall()}
    # one colour per tracker in both panels (tab10, then tab20's lighter shades); legends beside the axes
    palette = [plt.get_cmap("tab10")(i) for i in range(10)] + [plt.get_cmap("tab20")(2 * i + 1) for i in range(10)]
    colour = {name: palette[i % len(palette)] for i, name in enumerate(results.trackers)}
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.4 + 0.12 * max(0, len(colour) - 12)))
    for ax, rotated, label, key in ((axes[0], False, "axis-aligned IoU (OTB)", "success_auc"),
                                    (axes[1], True, "rotated IoU", "success_auc_rot")):
        curves = results.success_curves(rotated)
        order = sorted(curves, key=lambda n: -np.nan_to_num(overall[n][key], nan=-1.0))
        for name in order:
            style = "--" if overall[name]["uses_gt"] else "-"
            ax.plot(thr, curves[name], style, color=colour[name],
                    label=f"{name}{' †' if overall[name]['uses_gt'] else ''} [{_fmt(overall[name][key], '{:.3f}')}]")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"overlap threshold ({label})")
        ax.set_ylabel("success rate")
        ax.set_title(f"Success plot — {label}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save(path, lambda buf: fig.savefig(buf, format="png", dpi=100))
    plt.close(fig)


def write_report(results: EvaluationResults, out_dir: str | Path, title: str = "",
                 save_sequences: bool = True) -> dict[str, Path]:
    """Write the report into ``out_dir`` (every file atomically) and return the paths by role.

    ``overall.md`` / ``overall.csv`` (one row per tracker), ``sequences.md`` / ``sequences.csv``
    (one row per tracker and track), ``success.png``, and with ``save_sequences`` the predicted
    boxes per frame under ``results/<tracker>/<track>.json`` (``load_results`` + ``rescore``
    recompute the report from them).
    """
    out = Path(out_dir)
    overall, per_seq = results.overall(), results.per_sequence()
    head = f"# {title}\n\n" if title else ""
    paths = {
        "overall_md": out / "overall.md", "overall_csv": out / "overall.csv",
        "sequences_md": out / "sequences.md", "sequences_csv": out / "sequences.csv",
        "success_png": out / "success.png",
    }
    atomic_write_text(paths["overall_md"], head + markdown_table(overall))
    atomic_write_text(paths["overall_csv"], csv_table(overall))
    atomic_write_text(paths["sequences_md"], head + markdown_table(per_seq, per_sequence=True))
    atomic_write_text(paths["sequences_csv"], csv_table(per_seq, per_sequence=True))
    plot_success(results, paths["success_png"], title)
    if save_sequences:
        save_results(results, out / "results")
        paths["results"] = out / "results"
    return paths


from bmvtrack.evaluate.command import main as main  # noqa: E402  (the command line over this library)
