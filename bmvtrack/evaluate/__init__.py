"""Running box trackers over tracks, scoring them, and writing the baseline report.

A *run* step drives one tracker over one track and records what it predicted
(``run_tracker`` → ``SequenceResult``, storable as JSON); a separate *score* step compares the
predictions with the annotation using the pure-numpy functions of ``bmvtrack.metrics``
(``score_sequence`` → ``SequenceScore``), so a report can be recomputed from saved results
without running anything again. Trackers come in as objects with ``init(frame, box)`` and
``update(frame) -> RBox`` (``bmvtrack.agents.baselines`` defines them); this module knows nothing of
who they are, only the optional attributes of ``bmvtrack.agents.baselines.Tracker``.

Protocol and conventions
------------------------
* Boxes are the motion module's ``RBox``; pixel ``(col, row)`` has its centre at ``(col, row)``
  and a box's extent runs between the centres of its outermost pixels (the convention of
  ``minAreaRect`` on mask pixels). The ground truth of a frame is (a) the canonical rotated box
  of its mask (``motion_stats.track_boxes``), (b) the mask's tight axis-aligned box in the same
  convention, ``[x0, y0, x1, y1]`` = extreme foreground pixel centres (``mask_aabb``), and (c)
  the mask itself (J&F).
* Headline (the OTB / got10k / pytracking protocol): success AUC (IoU thresholds 0, 0.05, …, 1;
  "Success AUC"), precision at 20 px ("Prec@20px") and mean IoU ("mIoU") of **the tracker's own
  axis-aligned box** against the mask's tight box. A tracker's axis-aligned box is

  - for a tracker that segments (it reports ``last_aabb`` / ``last_mask``: the βMVUnet
    segmentation trackers), the tight box of the mask its box was fitted to (SiamMask's
    convention), on every frame where its box came from that mask;
  - for a tracker that reports only a rotated box (agents, the oracle, zero motion), and on a
    segmenting tracker's frames whose box did not come from its mask (a proposal took over), the
    **corner bounds** of the rotated box: the plain geometric conversion;
  - for an axis-aligned tracker (OpenCV's CSRT, KCF, MIL) its box (angle 0: its corner bounds).

  Further columns: "AUC ellipse", the bounds of the ellipse inscribed in the rotated box
  (``motion.rbox_ellipse_xyxy``, this project's estimate of an object's bounds inside its
  minimum-area rectangle); "AUC corners", the corner bounds of
  the rotated box (equal to the headline for every tracker that does not segment); "AUC rot" /
  "mIoU rot", the rotated IoU of the predicted ``RBox`` against the canonical ground-truth
  ``RBox``. For an axis-aligned prediction all three box conversions coincide. Centre error:
  distance between the centre of the tracker's axis-aligned box and the centre of the mask's
  tight box.
* J&F (DAVIS region similarity J and contour accuracy F, ``metrics.j_and_f``) of the masks a
  segmenting tracker tracked, box-initialised (the protocol SiamMask reports on DAVIS 2016): the
  tracker gets frame 0's box, never its mask; as in the official DAVIS code every frame counts
  (an empty prediction where the object is absent scores 1), void pixels are ignored, and the
  first (given) and last frames are left out. Trackers without masks: blank.
* The tracker is initialised on frame 0 with the ground-truth rotated box — or, for a tracker
  that declares ``axis_aligned = True`` (OpenCV's), with the mask's tight axis-aligned bounds
  (the OTB protocol; ``axis_aligned_init="rbox"`` gives it the rotated box's looser bounds
  instead). Frame 0 is given, not scored (GOT-10k protocol), and is NaN in the per-frame arrays.
  Frames where the object is absent are NaN too: they count neither as success nor as failure.
* A prediction that is not a box (None, non-finite numbers, a side ≤ 0) scores IoU 0 and centre
  error +inf on a frame where the object is present: it is a failure, not a crash.
* Losses of track: runs of scored frames with headline IoU ≤ 0 (no overlap), a long loss
  counting once (``metrics.count_losses``).
* Recovery, on the headline IoU: a *loss event* is a frame with IoU < 0.1 (``LOST_IOU``) while the
  tracker was on target — from the start, or since its last frame with IoU ≥ 0.5
  (``RECOVERED_IOU``); ``metrics.loss_events``. An event is *recovered* at the first frame from it
  on with IoU ≥ 0.5, before the next event and before the next re-initialisation
  (``metrics.recovery_frames``; frames elapsed, absent frames included). Per sequence:
  "Recovered" (``recovered``, fraction of its loss events recovered; NaN: none), "Frames to
  recover" (``frames_to_recover``, median over recovered events) and "Loss events" (``events``);
  overall: pooled over all events of all sequences. Computed from the stored boxes, so results
  saved before rescore with them.
* Perturbation protocol (opt-in, ``Perturbation``; off by default): every ``every`` frames
  (frames ``every``, ``2·every``, … where the object is present in that frame and the one before),
  before the frame's ``update`` the tracker is re-initialised with ``init(previous frame, box)``,
  the box being the previous frame's ground-truth box (the box the protocol gives that tracker at
  frame 0: rotated, or the tight bounds for an axis-aligned one) with its centre moved by
  N(0, shift)·max(w, h) in x and in y and each side scaled by exp(N(0, scale)), drawn from
  ``np.random.default_rng([seed, track index])`` — the same draws for every tracker, so
  comparisons are paired. A tracker that uses the ground truth gets ``set_ground_truth`` of the
  track from the previous frame on before that ``init`` (it starts afresh there). Each such frame
  is an event of its own: "Perturbed recovered" (``perturbed_recovered``), "Frames to recover
  (perturbed)" (``perturbed_frames_to_recover``) and "Perturbations" (``perturbed_events``),
  defined as for loss events; loss events then exclude what a perturbation caused (the tracker
  is off target after a re-initialisation until IoU ≥ 0.5). A frame's time includes its
  re-initialisation. Every column is computed on perturbed runs as on any other (the headline
  AUC of a perturbed run is not the one-pass figure).
* Speed: "FPS" counts every per-track set-up: a track's frames over its whole wall time —
  tracker construction (with its proposal tracker), ``set_ground_truth``, ``init`` (with the
  first-frame adaptation, also when a shared adapted copy is reused) and every ``update``
  (with reading the tracker's mask and box); "FPS (per frame)" is the update calls only
  (frames after the first over the time in ``update``). Frame decoding is excluded from both.
* Overall numbers average the per-sequence numbers over sequences (OTB / got10k: the overall
  success curve is the mean of per-sequence curves; DAVIS: J&F is the mean of per-sequence
  J&F); losses are summed; both fps are all frames over all time (summed over tracks).

Saved results (``SequenceResult.to_dict``, format ``RESULT_FORMAT`` with a ``version``): version 2
adds the tracker's axis-aligned box per frame, its masks (run-length coded) and the per-track
set-up time; ``perturbed_frames`` and ``perturbed_boxes`` (the boxes given to those
re-initialisations) record the perturbation protocol (absent in results saved before: none).
Results of version 1 (saved before) rescore with the corner bounds as every tracker's
axis-aligned box, no J&F, and fps without tracker construction (``rescore`` says so).
Per-sequence files in the got10k and pytracking formats: ``write_toolkit_files``.
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
    j_and_f,
    loss_events,
    precision_at,
    recovery_frames,
    recovery_summary,
    success_auc,
    success_curve,
    success_thresholds,
)
from bmvtrack.motion import (
    BoxMethod, RBox, aabb_iou, aabb_to_rbox, mask_aabb, perturbed_box, rbox_ellipse_xyxy, rbox_to_xyxy, rotated_iou,
)
from bmvtrack.analyze_motion import track_boxes
from bmvtrack.run_folder import RunFolderError, writer_pid

RESULT_FORMAT = "bmvtrack.evaluate/sequence-result"
RESULT_VERSION = 2
LEGACY_RESULT_FORMAT = "bmvtrack.evaluate/sequence-result/v1"  # version 1: boxes and times only
MANIFEST_FORMAT = "bmvtrack.evaluate/manifest/v1"
MANIFEST_NAME = "manifest.json"
RESULTS_DIR = "results"
GOT10K_DIR, PYTRACKING_DIR = "got10k", "pytracking"
# What an evaluation writes into its --out: any of these present means the folder holds one.
EVALUATION_OUTPUTS = (MANIFEST_NAME, RESULTS_DIR, GOT10K_DIR, PYTRACKING_DIR, "overall.md", "overall.csv",
                      "sequences.md", "sequences.csv", "success.png", "command.txt", "metrics.jsonl")

# Columns of the tables, in order: (key, header, format). The standard ones first.
_METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("success_auc", "Success AUC", "{:.3f}"),
    ("precision_20", "Prec@20px", "{:.3f}"),
    ("mean_iou", "mIoU", "{:.3f}"),
    ("jf", "J&F", "{:.3f}"),
    ("success_auc_ellipse", "AUC ellipse", "{:.3f}"),
    ("success_auc_bounds", "AUC corners", "{:.3f}"),
    ("success_auc_rot", "AUC rot", "{:.3f}"),
    ("mean_iou_rot", "mIoU rot", "{:.3f}"),
    ("losses", "Losses", "{:d}"),
    ("fps", "FPS", "fps"),
    ("fps_per_frame", "FPS (per frame)", "fps"),
    ("box", "Box", "{}"),
)
# Recovery columns, after all the others (the CSV's extras included); the perturbed ones appear in the
# Markdown tables only where some row had perturbations.
_RECOVERY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("recovered", "Recovered", "{:.2f}"),
    ("frames_to_recover", "Frames to recover", "{:.1f}"),
    ("events", "Loss events", "{:d}"),
    ("perturbed_recovered", "Perturbed recovered", "{:.2f}"),
    ("perturbed_frames_to_recover", "Frames to recover (perturbed)", "{:.1f}"),
    ("perturbed_events", "Perturbations", "{:d}"),
)
_PERTURBED_KEYS = tuple(k for k, _, _ in _RECOVERY_COLUMNS if k.startswith("perturbed_"))
# Machine-readable extras of the CSV tables (after the table's columns).
_CSV_EXTRAS = ("j_mean", "f_mean", "uses_gt")
# Per-sequence numbers averaged over sequences in the overall rows (None = not applicable, skipped).
_MEAN_KEYS = ("success_auc", "precision_20", "mean_iou", "jf", "j_mean", "f_mean", "success_auc_ellipse",
              "success_auc_bounds", "success_auc_rot", "mean_iou_rot")
# What the "Box" column says: where each tracker's axis-aligned box comes from.
BOX_MASK, BOX_AXIS_ALIGNED, BOX_CORNERS, BOX_LEGACY = "mask", "axis-aligned", "corners", "corners (v1)"
# Recovery thresholds on the headline IoU: lost below LOST_IOU, on target again at RECOVERED_IOU.
LOST_IOU, RECOVERED_IOU = 0.1, 0.5


# ----------------------------------------------------------------------------- ground truth


@dataclass
class GroundTruth:
    """A track's annotation: canonical rotated boxes, tight axis-aligned bounds and (on demand) its masks."""

    rboxes: list[RBox | None]
    aabbs: np.ndarray  # (N, 4) [x0, y0, x1, y1], NaN rows where the object is absent
    source: tuple[VideoDataset, Track] | None = None  # where masks() reads the masks from
    _masks: tuple[list[np.ndarray], list[np.ndarray | None]] | None = field(default=None, repr=False)

    def masks(self) -> tuple[list[np.ndarray], list[np.ndarray | None]] | None:
        """The object's mask and the void pixels (or None) of every frame, read once when first asked
        for (only a tracker that segments needs them); None without a ``source``."""
        if self._masks is None and self.source is not None:
            ds, track = self.source
            self._masks = ([ds.mask(track, i) for i in range(len(track))],
                           [ds.void(track, i) for i in range(len(track))])
        return self._masks


def track_ground_truth(ds: VideoDataset, track: Track, method: BoxMethod = "minarearect") -> GroundTruth:
    """Rotated boxes (``motion_stats.track_boxes``) and tight bounds of every frame of a track."""
    rboxes = track_boxes(ds, track, method)
    aabbs = np.full((len(track), 4), np.nan)
    for i in range(len(track)):
        if track.present[i]:
            b = mask_aabb(ds.mask(track, i))
            if b is not None:
                aabbs[i] = b
    return GroundTruth(rboxes, aabbs, source=(ds, track))


# ----------------------------------------------------------------------------- masks as run lengths


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """A boolean H×W mask as ``{"size": [H, W], "counts": [...]}``: lengths of alternating runs of
    background and foreground pixels in row-major order, starting with background (0 if the first
    pixel is foreground). Inverse: ``decode_mask``."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    flat = m.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size])))
    counts = ([0] if flat.size and flat[0] else []) + [int(r) for r in runs]
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts}


def decode_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """The boolean mask of ``encode_mask``'s run lengths (``ValueError`` if they do not fill its size)."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != h * w or (counts < 0).any():
        raise ValueError(f"mask run lengths sum to {counts.sum()}, not {h}×{w}")
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape(h, w)


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


def _aabb_row(aabb: Any) -> np.ndarray:
    """A reported axis-aligned box as ``[x0, y0, x1, y1]``; NaN row if there is none (or it is not a box)."""
    if aabb is None:
        return np.full(4, np.nan)
    try:
        row = np.asarray(aabb, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return np.full(4, np.nan)
    if row.shape != (4,) or not np.all(np.isfinite(row)) or row[2] < row[0] or row[3] < row[1]:
        return np.full(4, np.nan)
    return row


@dataclass
class SequenceResult:
    """What one tracker predicted on one track: a box per frame, the axis-aligned box and mask it
    reported (trackers that segment), and the time it took.

    ``version`` 1 results (saved before axis-aligned boxes, masks and set-up times were recorded)
    have ``aabbs`` and ``masks`` None and ``setup_seconds`` 0. ``perturbed_frames``: frames before
    whose ``update`` the tracker was re-initialised on the previous frame with the matching row of
    ``perturbed_boxes`` (the perturbation protocol; none in results saved without it).
    """

    tracker: str
    sequence: str  # the track's name, "<sequence>/<object id>"
    boxes: np.ndarray  # (N, 5) [cx, cy, w, h, angle]; NaN rows where the prediction was not a box
    times: np.ndarray  # (N,) seconds in set_ground_truth + init (frame 0) / update (later frames)
    img_size: tuple[int, int]  # (H, W)
    uses_ground_truth: bool = False
    frame_names: tuple[str, ...] = ()
    # (N, 4) [x0, y0, x1, y1] the tracker reported; NaN rows: none (its rotated box's corner bounds count)
    aabbs: np.ndarray | None = None
    masks: list[dict[str, Any] | None] | None = None  # run-length masks per frame (trackers that segment)
    setup_seconds: float = 0.0  # constructing the tracker (with its proposal tracker)
    axis_aligned: bool = False  # the tracker declared axis_aligned = True
    version: int = RESULT_VERSION
    perturbed_frames: tuple[int, ...] = ()  # re-initialised before these frames' update (perturbation protocol)
    perturbed_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))  # (P, 5) the boxes given there

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def seconds(self) -> float:
        """The track's whole tracking time: construction, set-up, init (with adaptation) and updates."""
        return float(self.setup_seconds + np.sum(self.times))

    @property
    def update_seconds(self) -> float:
        return float(np.sum(self.times[1:]))

    @property
    def fps(self) -> float:
        """Frames over the whole tracking time (every per-track set-up counted)."""
        return _rate(len(self), self.seconds)

    @property
    def fps_per_frame(self) -> float:
        """Update calls only: frames after the first over the time spent in ``update``."""
        return _rate(len(self) - 1, self.update_seconds)

    @property
    def box_source(self) -> str:
        """Where its axis-aligned boxes come from: ``BOX_MASK``, ``BOX_AXIS_ALIGNED``, ``BOX_CORNERS``, ``BOX_LEGACY``."""
        if self.version < 2:
            return BOX_LEGACY
        if self.masks is not None and self.aabbs is not None and np.isfinite(self.aabbs[1:]).any():
            return BOX_MASK  # a tracker that segments and reports its mask's box
        return BOX_AXIS_ALIGNED if self.axis_aligned else BOX_CORNERS

    def box(self, i: int) -> RBox | None:
        row = self.boxes[i]
        return None if np.isnan(row).any() else RBox.from_array(row)

    def aabb(self, i: int) -> np.ndarray | None:
        """The tracker's axis-aligned box of frame ``i``: the one it reported, else its rotated box's
        corner bounds; None where its prediction was not a box."""
        pred = self.box(i)
        if pred is None:
            return None
        if self.aabbs is not None and not np.isnan(self.aabbs[i]).any():
            return self.aabbs[i]
        return rbox_to_xyxy(pred)

    def mask(self, i: int) -> np.ndarray | None:
        """The mask the tracker tracked in frame ``i`` (None: it does not segment, or frame 0)."""
        rle = None if self.masks is None else self.masks[i]
        return None if rle is None else decode_mask(rle)

    def to_dict(self) -> dict:
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "tracker": self.tracker,
            "sequence": self.sequence,
            "img_size": list(self.img_size),
            "uses_ground_truth": bool(self.uses_ground_truth),
            "axis_aligned": bool(self.axis_aligned),
            "frame_names": list(self.frame_names),
            "box_fields": ["cx", "cy", "w", "h", "angle"],
            "boxes": _rows(self.boxes),
            "aabb_fields": ["x0", "y0", "x1", "y1"],
            "aabbs": None if self.aabbs is None else _rows(self.aabbs),
            "masks": self.masks,
            "setup_seconds": float(self.setup_seconds),
            "times": [float(t) for t in self.times],
            "perturbed_frames": [int(f) for f in self.perturbed_frames],
            "perturbed_boxes": [[float(v) for v in row] for row in np.asarray(self.perturbed_boxes).reshape(-1, 5)],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SequenceResult:
        fmt = d.get("format")
        if fmt == LEGACY_RESULT_FORMAT:
            version = 1
        elif fmt == RESULT_FORMAT and d.get("version") == RESULT_VERSION:
            version = 2
        else:
            raise ValueError(f"not a sequence result (format {fmt!r} version {d.get('version')!r}, expected "
                             f"{RESULT_FORMAT!r} version {RESULT_VERSION} or {LEGACY_RESULT_FORMAT!r})")
        boxes = np.array([[np.nan] * 5 if b is None else b for b in d["boxes"]], dtype=np.float64).reshape(-1, 5)
        aabbs = d.get("aabbs") if version >= 2 else None
        if aabbs is not None:
            aabbs = np.array([[np.nan] * 4 if b is None else b for b in aabbs], dtype=np.float64).reshape(-1, 4)
        masks = d.get("masks") if version >= 2 else None
        for name, per_frame in (("aabbs", aabbs), ("masks", masks), ("times", d["times"])):
            if per_frame is not None and len(per_frame) != len(boxes):
                raise ValueError(f"{len(per_frame)} {name} for {len(boxes)} frames")
        # absent (results saved before the perturbation protocol): no perturbation
        perturbed = tuple(int(f) for f in d.get("perturbed_frames") or ())
        pboxes = np.array(d.get("perturbed_boxes") or [], dtype=np.float64).reshape(-1, 5)
        if len(pboxes) != len(perturbed) or any(not 0 < f < len(boxes) for f in perturbed) or any(
                b <= a for a, b in zip(perturbed, perturbed[1:])):
            raise ValueError(f"perturbed frames {list(perturbed)} with {len(pboxes)} boxes: not increasing frames "
                             f"of 1..{len(boxes) - 1}, one box each")
        return cls(
            tracker=str(d["tracker"]), sequence=str(d["sequence"]), boxes=boxes,
            times=np.asarray(d["times"], dtype=np.float64), img_size=tuple(int(v) for v in d["img_size"]),
            uses_ground_truth=bool(d.get("uses_ground_truth", False)),
            frame_names=tuple(d.get("frame_names", ())), aabbs=aabbs, masks=masks,
            setup_seconds=float(d.get("setup_seconds", 0.0)), axis_aligned=bool(d.get("axis_aligned", False)),
            version=version, perturbed_frames=perturbed, perturbed_boxes=pboxes,
        )

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SequenceResult:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: unreadable sequence result: {exc}") from None


def _rate(frames: int, seconds: float) -> float:
    if frames <= 0:
        return float("nan")
    return frames / seconds if seconds > 0 else float("inf")


def _rows(a: np.ndarray) -> list[list[float] | None]:
    return [None if np.isnan(r).any() else [float(v) for v in r] for r in a]


@dataclass(frozen=True)
class Perturbation:
    """The perturbation protocol (see the module docstring): re-initialise the tracker every ``every``
    frames on the previous frame with a perturbed ground-truth box.

    Why: a one-pass evaluation counts a tracker's failures but says little about whether it finds
    the object again, since each tracker fails at its own times; re-initialising every tracker on
    the same wrong boxes at the same frames makes events whose recovery can be compared tracker
    against tracker. ``shift``: standard deviation of the centre's move in x and y, in units of the
    box's longer side; ``scale``: of the log of each side's factor; ``seed``: with the track's index,
    the seed of the draws.
    """

    every: int
    shift: float = 0.5
    scale: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, (int, np.integer)) or self.every < 1:
            raise ValueError(f"perturbation every must be a whole number of frames >= 1, got {self.every!r}")
        for name in ("shift", "scale"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"perturbation {name} must be finite and >= 0, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"perturbation seed must be a whole number >= 0, got {self.seed!r}")

    def to_dict(self) -> dict[str, float | int]:
        """The settings, as recorded in the manifest."""
        return {"every": int(self.every), "shift": float(self.shift), "scale": float(self.scale), "seed": int(self.seed)}

    def boxes(self, base: Sequence[RBox | None], track_index: int) -> dict[int, RBox]:
        """Frame → the box the tracker is re-initialised with on the frame before it.

        ``base``: the unperturbed box of every frame of the track (None where the object is
        absent). Frames ``every``, ``2·every``, … get four draws each — x and y moves, width and
        height factors — whether or not the object is there (so a frame's perturbation does not
        depend on the others); a frame is perturbed only where the object is present in it and in
        the frame before. Sides stay ≥ ``MIN_SIDE``.
        """
        frames = range(self.every, len(base), self.every)
        draws = np.random.default_rng([int(self.seed), int(track_index)]).standard_normal((len(frames), 4))
        out: dict[int, RBox] = {}
        for f, (zx, zy, zw, zh) in zip(frames, draws):
            prev = base[f - 1]
            if prev is None or base[f] is None:
                continue
            out[f] = perturbed_box(prev, (zx, zy, zw, zh), self.shift, self.scale)
        return out


def run_tracker(tracker: Any, ds: VideoDataset, track: Track, gt_boxes: Sequence[RBox | None],
                name: str | None = None, init_box: RBox | None = None, setup_seconds: float = 0.0,
                first_aabb: Any = None, reinit: Mapping[int, RBox] | None = None) -> SequenceResult:
    """One pass: ``init`` on frame 0 with the ground-truth box, ``update`` on every later frame.

    ``init_box`` replaces ``gt_boxes[0]`` as the box given to ``init`` (e.g. the mask's tight
    bounds for an axis-aligned tracker); it is recorded as the frame-0 prediction, and
    ``first_aabb`` (the annotation's tight box, what got10k / pytracking record for frame 0) as
    its axis-aligned box. A tracker with ``uses_ground_truth = True`` first gets
    ``set_ground_truth(gt_boxes, W, H)``. After each ``update`` the tracker's ``last_aabb`` (its
    axis-aligned box, when it reports one) and ``last_mask`` (a tracker that segments) are read.
    ``reinit`` (frame → box; ``Perturbation.boxes``): before that frame's ``update`` the tracker is
    initialised again, with ``init(previous frame, box)`` — after ``set_ground_truth`` of the track
    from the previous frame on, for a tracker that uses the ground truth (it starts afresh there);
    that time counts in the frame's.

    Time measured: ``set_ground_truth`` + ``init`` (frame 0; plus ``reused_init_seconds``, a shared
    adaptation made for another tracker) and each ``update`` with the reading of its box and mask;
    ``setup_seconds`` (constructing the tracker, measured by the caller) is recorded beside them.
    Frame decoding is not timed. Exceptions raised by the tracker propagate (a bug is not a
    tracking failure); a returned non-box is recorded as a NaN row.
    """
    if len(gt_boxes) != len(track):
        raise ValueError(f"{track.name}: {len(gt_boxes)} ground-truth boxes for {len(track)} frames")
    if gt_boxes[0] is None and init_box is None:
        raise ValueError(f"{track.name}: the object is absent in frame 0, nothing to initialise on")
    h, w = track.size
    uses_gt = bool(getattr(tracker, "uses_ground_truth", False))
    segments = hasattr(tracker, "last_mask")
    n = len(track)
    boxes, aabbs = np.full((n, 5), np.nan), np.full((n, 4), np.nan)
    masks: list[dict[str, Any] | None] | None = [None] * n if segments else None
    times = np.zeros(n)
    reinit = dict(reinit or {})
    if any(not 0 < f < n for f in reinit):
        raise ValueError(f"{track.name}: re-initialisation frames {sorted(reinit)} outside 1..{n - 1}")
    frame = ds.frame(track, 0)
    first = init_box if init_box is not None else gt_boxes[0]
    t0 = time.perf_counter()
    if uses_gt:
        tracker.set_ground_truth(list(gt_boxes), w, h)
    tracker.init(frame, first)
    # a tracker that reused work made for another (a shared first-frame adaptation) is charged for it
    times[0] = time.perf_counter() - t0 + float(getattr(tracker, "reused_init_seconds", 0.0))
    boxes[0] = first.as_array()
    aabbs[0] = _aabb_row(first_aabb)
    for i in range(1, n):
        previous, frame = frame, ds.frame(track, i)
        t0 = time.perf_counter()
        if i in reinit:
            if uses_gt:
                tracker.set_ground_truth(list(gt_boxes[i - 1:]), w, h)
            tracker.init(previous, reinit[i])
        pred = tracker.update(frame)
        aabb = getattr(tracker, "last_aabb", None)
        mask = tracker.last_mask if segments else None
        times[i] = time.perf_counter() - t0
        boxes[i], aabbs[i] = _box_row(pred), _aabb_row(aabb)
        if masks is not None and mask is not None:
            masks[i] = encode_mask(mask)
    return SequenceResult(
        tracker=name or str(getattr(tracker, "name", type(tracker).__name__)), sequence=track.name,
        boxes=boxes, times=times, img_size=(int(h), int(w)), uses_ground_truth=uses_gt,
        frame_names=tuple(track.frame_names), aabbs=aabbs, masks=masks, setup_seconds=float(setup_seconds),
        axis_aligned=bool(getattr(tracker, "axis_aligned", False)), perturbed_frames=tuple(sorted(reinit)),
        perturbed_boxes=np.array([reinit[f].as_array() for f in sorted(reinit)]).reshape(-1, 5),
    )


# ----------------------------------------------------------------------------- scoring


@dataclass
class SequenceScore:
    """Per-frame scores of one result (NaN: frame 0 or object absent) and their summary."""

    tracker: str
    sequence: str
    iou: np.ndarray  # headline (OTB): the tracker's axis-aligned box against the mask's tight box
    iou_ellipse: np.ndarray  # the rotated box's inscribed ellipse's bounds against the tight box
    iou_bounds: np.ndarray  # the rotated box's corner bounds against the tight box
    iou_rot: np.ndarray  # rotated IoU against the canonical ground-truth RBox
    center_error: np.ndarray  # px, centre of the tracker's axis-aligned box; +inf where no box
    fps: float  # frames over the whole tracking time (every per-track set-up counted)
    fps_per_frame: float = float("nan")  # update calls only
    uses_ground_truth: bool = False
    loss_threshold: float = 0.0
    jf: Mapping[str, float] | None = None  # metrics.j_and_f of the tracked masks; None: no masks
    box_source: str = BOX_CORNERS
    perturbed_frames: tuple[int, ...] = ()  # the tracker was re-initialised on a perturbed box before these

    @property
    def n_frames(self) -> int:
        """Scored frames (object present, frame 0 excluded)."""
        return int(np.count_nonzero(~np.isnan(self.iou)))

    def loss_recovery(self) -> np.ndarray:
        """Frames to recover from each loss event (NaN: not recovered), on the headline IoU."""
        events = loss_events(self.iou, LOST_IOU, RECOVERED_IOU, resets=self.perturbed_frames)
        return recovery_frames(self.iou, events, RECOVERED_IOU, stops=self.perturbed_frames)

    def perturbation_recovery(self) -> np.ndarray:
        """Frames to recover from each perturbation (NaN: not recovered before the next one)."""
        return recovery_frames(self.iou, self.perturbed_frames, RECOVERED_IOU)

    def summary(self) -> dict[str, Any]:
        valid, valid_rot = self.iou[~np.isnan(self.iou)], self.iou_rot[~np.isnan(self.iou_rot)]
        jf = self.jf
        return {
            "tracker": self.tracker,
            "sequence": self.sequence,
            "uses_gt": self.uses_ground_truth,
            "frames": self.n_frames,
            "success_auc": success_auc(self.iou),
            "precision_20": precision_at(self.center_error, 20.0),
            "mean_iou": float(valid.mean()) if valid.size else float("nan"),
            "jf": None if jf is None else float(jf["J&F"]),
            "j_mean": None if jf is None else float(jf["J_mean"]),
            "f_mean": None if jf is None else float(jf["F_mean"]),
            "success_auc_ellipse": success_auc(self.iou_ellipse),
            "success_auc_bounds": success_auc(self.iou_bounds),
            "success_auc_rot": success_auc(self.iou_rot),
            "mean_iou_rot": float(valid_rot.mean()) if valid_rot.size else float("nan"),
            "losses": count_losses(self.iou, self.loss_threshold),
            "fps": self.fps,
            "fps_per_frame": self.fps_per_frame,
            "box": self.box_source,
            **_recovery_row([self.loss_recovery()], [self.perturbation_recovery()]),
        }


def _recovery_row(loss: Sequence[np.ndarray], perturbed: Sequence[np.ndarray]) -> dict[str, Any]:
    """The recovery columns of the events of one or several sequences (pooled over events)."""
    row = recovery_summary(np.concatenate([np.zeros(0), *loss]))
    row.update({f"perturbed_{k}": v for k, v in recovery_summary(np.concatenate([np.zeros(0), *perturbed])).items()})
    return row


def score_sequence(result: SequenceResult, gt_rboxes: Sequence[RBox | None], gt_aabbs: Any,
                   loss_threshold: float = 0.0, gt_masks: Sequence[Any] | None = None,
                   gt_voids: Sequence[Any] | None = None) -> SequenceScore:
    """Per-frame IoUs and centre error of a result against the annotation, and J&F of its masks.

    ``gt_rboxes``: canonical rotated boxes (None where absent); ``gt_aabbs``: (N, 4)
    ``[x0, y0, x1, y1]`` tight mask bounds (NaN rows or None entries where absent); ``gt_masks``
    (and ``gt_voids``, void pixels or None per frame): the object's masks, needed for J&F of a
    result with masks (J&F is None without them, or for a result without masks).
    """
    n = len(result)
    if len(gt_rboxes) != n:
        raise ValueError(f"{result.sequence}: {n} predictions for {len(gt_rboxes)} ground-truth boxes")
    aabbs = np.array([[np.nan] * 4 if b is None else b for b in gt_aabbs], dtype=np.float64).reshape(-1, 4)
    if len(aabbs) != n:
        raise ValueError(f"{result.sequence}: {n} predictions for {len(aabbs)} ground-truth bounds")
    iou, iou_ell, iou_bounds, iou_rot, err = (np.full(n, np.nan) for _ in range(5))
    for i in range(1, n):  # frame 0 is given, not scored
        gt_r, gt_a = gt_rboxes[i], aabbs[i]
        present = gt_r is not None and not np.isnan(gt_a).any()
        if not present:
            continue
        pred, box = result.box(i), result.aabb(i)
        if pred is None or box is None:
            iou[i], iou_ell[i], iou_bounds[i], iou_rot[i], err[i] = 0.0, 0.0, 0.0, 0.0, math.inf
            continue
        iou[i] = aabb_iou(box, gt_a)
        iou_ell[i] = aabb_iou(rbox_ellipse_xyxy(pred), gt_a)
        iou_bounds[i] = aabb_iou(rbox_to_xyxy(pred), gt_a)
        iou_rot[i] = rotated_iou(pred, gt_r)
        err[i] = float(center_errors([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]],
                                     [[(gt_a[0] + gt_a[2]) / 2, (gt_a[1] + gt_a[3]) / 2]])[0])
    jf = None
    if result.masks is not None and gt_masks is not None:
        if len(gt_masks) != n:
            raise ValueError(f"{result.sequence}: {n} predictions for {len(gt_masks)} ground-truth masks")
        h, w = result.img_size
        preds = [np.zeros((h, w), bool) if m is None else m for m in (result.mask(i) for i in range(n))]
        jf = j_and_f(preds, list(gt_masks), gt_voids, exclude_first_last=True)
    return SequenceScore(result.tracker, result.sequence, iou, iou_ell, iou_bounds, iou_rot, err, result.fps,
                         result.fps_per_frame, result.uses_ground_truth, loss_threshold, jf, result.box_source,
                         tuple(result.perturbed_frames))


def score_against(result: SequenceResult, gt: GroundTruth, loss_threshold: float = 0.0) -> SequenceScore:
    """``score_sequence`` against a track's ``GroundTruth`` (its masks read only for a result with masks)."""
    masks = gt.masks() if result.masks is not None else None
    return score_sequence(result, gt.rboxes, gt.aabbs, loss_threshold,
                          None if masks is None else masks[0], None if masks is None else masks[1])


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
        """One row per tracker: per-sequence numbers averaged over sequences, losses summed, fps of
        all frames over all time (J&F and its parts: None when no sequence has masks), recovery
        pooled over the events of all sequences."""
        rows = []
        for name, runs in self.runs.items():
            sums = [s.summary() for _, s in runs]
            row: dict[str, Any] = {
                "tracker": name,
                "uses_gt": any(s.uses_ground_truth for _, s in runs),
                "sequences": len(runs),
                "frames": int(sum(r["frames"] for r in sums)),
            }
            for key in _MEAN_KEYS:
                vals = np.array([r[key] for r in sums if r[key] is not None], dtype=np.float64)
                if not vals.size and any(r[key] is None for r in sums):
                    row[key] = None  # J&F of a tracker without masks: not applicable
                else:
                    row[key] = float(np.nanmean(vals)) if np.any(~np.isnan(vals)) else float("nan")
            row["losses"] = int(sum(r["losses"] for r in sums))
            row["fps"] = _rate(sum(len(res) for res, _ in runs), sum(res.seconds for res, _ in runs))
            row["fps_per_frame"] = _rate(sum(len(res) - 1 for res, _ in runs),
                                         sum(res.update_seconds for res, _ in runs))
            row["box"] = " / ".join(dict.fromkeys(r["box"] for r in sums))
            row.update(_recovery_row([s.loss_recovery() for _, s in runs], [s.perturbation_recovery() for _, s in runs]))
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
    perturbation: Perturbation | None = None,
) -> EvaluationResults:
    """Run every tracker on every track (a fresh tracker from its factory per track) and score it.

    ``trackers`` maps the name shown in the report to a zero-argument factory; the time it takes
    to build the tracker counts in the track's fps. A tracker with
    ``axis_aligned = True`` is initialised with the mask's tight bounds (``"tight"``, OTB) or
    with the rotated ground-truth box like every other tracker (``"rbox"``). With
    ``results_dir`` each sequence result is saved as JSON as soon as it exists
    (``<results_dir>/<tracker>/<track>.json``). With ``perturbation`` every tracker is re-initialised on
    perturbed boxes (the perturbation protocol; a track's index in ``tracks`` seeds its draws), each
    from the box it was first given: the rotated ground truth, or the tight bounds (axis-aligned).
    """
    if axis_aligned_init not in ("tight", "rbox"):
        raise ValueError(f"axis_aligned_init must be 'tight' or 'rbox', got {axis_aligned_init!r}")
    tracks = list(tracks)
    out = EvaluationResults({name: [] for name in trackers})
    bar = tqdm(total=len(tracks) * len(trackers), desc="tracking", disable=not progress, leave=False)
    for index, track in enumerate(tracks):
        gt = track_ground_truth(ds, track, box_method)
        plans: dict[bool, dict[int, RBox]] = {}  # tight bounds as the base box → frame → box
        for name, factory in trackers.items():
            bar.set_postfix_str(f"{name} {track.name}")
            t0 = time.perf_counter()
            tracker = factory()  # constructing it is part of its per-track set-up (fps)
            setup = time.perf_counter() - t0
            init_box = None
            if axis_aligned_init == "tight" and getattr(tracker, "axis_aligned", False):
                init_box = aabb_to_rbox(gt.aabbs[0])
            reinit = None
            if perturbation is not None:
                tight = init_box is not None
                if tight not in plans:
                    base = ([None if np.isnan(a).any() else aabb_to_rbox(a) for a in gt.aabbs] if tight
                            else list(gt.rboxes))
                    plans[tight] = perturbation.boxes(base, index)
                reinit = plans[tight]
            result = run_tracker(tracker, ds, track, gt.rboxes, name=name, init_box=init_box, setup_seconds=setup,
                                 first_aabb=gt.aabbs[0], reinit=reinit)
            if results_dir is not None:
                result.save(result_file(results_dir, name, track.name))
            out.add(result, score_against(result, gt, loss_threshold))
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
            loss_threshold: float = 0.0, warn: Callable[[str], None] = _warn) -> EvaluationResults:
    """Score saved results against the dataset's annotation again, without running any tracker.

    Results of version 1 (no axis-aligned box, mask or construction time stored) score with their
    rotated box's corner bounds as the axis-aligned box and no J&F; ``warn`` says which they are.
    """
    results = list(results)
    by_name = {t.name: t for t in ds.tracks()}
    missing = [r for r in results if r.sequence not in by_name]
    if missing:
        raise ValueError(f"result for {missing[0].sequence!r} ({missing[0].tracker}): no such track in {ds.root}")
    legacy = sorted({r.tracker for r in results if r.version < 2})
    if legacy:
        warn(f"results of {', '.join(legacy)} were saved in format version 1, which stores no axis-aligned box "
             "or mask: they are rescored with the rotated box's corner bounds as the axis-aligned box (a tracker "
             "that segments scored with its mask's tight box when evaluated anew), no J&F, and fps without "
             "tracker construction; evaluate again for the current protocol")
    scores: dict[int, SequenceScore] = {}
    for sequence in dict.fromkeys(r.sequence for r in results):  # one track's annotation (and masks) at a time
        gt = track_ground_truth(ds, by_name[sequence], box_method)
        for i, res in enumerate(results):
            if res.sequence == sequence:
                scores[i] = score_against(res, gt, loss_threshold)
    out = EvaluationResults()
    for i, res in enumerate(results):
        out.add(res, scores[i])
    return out


# ----------------------------------------------------------------------------- report


def _fmt(value: Any, fmt: str) -> str:
    if value is None:  # not applicable (J&F of a tracker without masks): a blank cell
        return ""
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


def _perturbed(rows: Sequence[Mapping[str, Any]]) -> bool:
    return any(r.get("perturbed_events") for r in rows)


TABLE_NOTE = (
    "Success AUC (IoU thresholds 0..1), Prec@20px and mIoU: the tracker's axis-aligned box against the "
    "mask's tight box (OTB); Box says what that box is: mask = the tight box of the tracker's mask (SiamMask), "
    "corners = the corner bounds of its rotated box, axis-aligned = its own box. J&F: DAVIS, of the tracked "
    "masks (box-initialised; blank: the tracker has no masks). AUC ellipse / AUC corners: the rotated box's "
    "inscribed-ellipse bounds / corner bounds; AUC rot, mIoU rot: rotated IoU. FPS: frames over the whole "
    "time per track (construction, init, first-frame adaptation, proposal trackers, updates); FPS (per frame): "
    "update calls only. Recovered: fraction of loss events (IoU < 0.1 after being on target, IoU ≥ 0.5) after "
    "which the IoU was back ≥ 0.5; Frames to recover: median frames that took (overall: pooled over all events)."
)
PERTURBED_NOTE = (
    "Perturbed run: the tracker was re-initialised on a perturbed ground-truth box every few frames (see the "
    "manifest); Perturbed recovered / Frames to recover (perturbed): as for loss events, from each perturbation."
)


def markdown_table(rows: Sequence[Mapping[str, Any]], per_sequence: bool = False) -> str:
    """A Markdown table of overall (or per-sequence) rows and what its columns mean; trackers that use
    the answer are marked †."""
    cols = _columns(per_sequence) + [c for c in _RECOVERY_COLUMNS if _perturbed(rows) or c[0] not in _PERTURBED_KEYS]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |",
             "|" + "|".join(":---" if key in ("tracker", "sequence", "box") else "---:" for key, _, _ in cols) + "|"]
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            cell = _fmt(r[key], fmt)
            if key == "tracker" and r.get("uses_gt"):
                cell += " †"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", TABLE_NOTE] + (["", PERTURBED_NOTE] if _perturbed(rows) else [])
    if any(r.get("uses_gt") for r in rows):
        lines += ["", "† uses the ground truth (upper bound, not a tracker)."]
    if any(BOX_LEGACY in str(r.get("box", "")) for r in rows):
        lines += ["", f"{BOX_LEGACY}: rescored from results saved in format version 1 (no axis-aligned box or mask "
                      "stored): corner bounds, no J&F, fps without tracker construction."]
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[Mapping[str, Any]], per_sequence: bool = False) -> str:
    """CSV of the same rows, machine-readable keys as headers, full precision (blank: not applicable)."""
    keys = [k for k, _, _ in _columns(per_sequence)] + list(_CSV_EXTRAS) + [k for k, _, _ in _RECOVERY_COLUMNS]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in keys})
    return buf.getvalue()


def plot_success(results: EvaluationResults, path: str | Path, title: str = "") -> None:
    """PNG success plots, one curve per tracker with its success AUC in the legend: the headline (the
    tracker's axis-aligned box against the mask's tight box, OTB) and the rotated IoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr = success_thresholds()
    overall = {r["tracker"]: r for r in results.overall()}
    # one colour per tracker in both panels (tab10, then tab20's lighter shades); legends beside the axes
    palette = [plt.get_cmap("tab10")(i) for i in range(10)] + [plt.get_cmap("tab20")(2 * i + 1) for i in range(10)]
    colour = {name: palette[i % len(palette)] for i, name in enumerate(results.trackers)}
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.4 + 0.12 * max(0, len(colour) - 12)))
    for ax, rotated, label, key in ((axes[0], False, "IoU of the tracker's axis-aligned box (OTB)", "success_auc"),
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
        ax.set_title(f"Success plot — {label}; [success AUC]", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save(path, lambda buf: fig.savefig(buf, format="png", dpi=100))
    plt.close(fig)


def toolkit_boxes(result: SequenceResult) -> np.ndarray:
    """The tracker's axis-aligned box per frame as ``[x, y, w, h]`` in the got10k / pytracking convention.

    Their boxes count pixels: ``x, y`` is the 0-based column and row of the top-left pixel, ``w, h``
    the width and height in pixels (pytracking takes the centre as ``x + (w − 1)/2``; in the
    pixel-edge reading pixel ``i`` spans ``[i, i + 1)`` and the box ``[x, x + w)``). A box of this
    project runs between the centres of its outermost pixels, so ``[x0, y0, x1, y1]`` becomes
    ``[x0, y0, x1 − x0 + 1, y1 − y0 + 1]``: the mask's tight box becomes exactly the pixel-count box
    of the mask, and the centres agree. Frame 0 is the given box (the annotation's tight box when
    recorded); a frame without a box is ``0, 0, 0, 0`` (got10k scores it IoU 0, pytracking keeps the
    previous box: their own conventions for a missing prediction).
    """
    out = np.zeros((len(result), 4))
    for i in range(len(result)):
        box = result.aabb(i)
        if box is not None:
            out[i] = [box[0], box[1], box[2] - box[0] + 1.0, box[3] - box[1] + 1.0]
    return out


def toolkit_times(result: SequenceResult) -> np.ndarray:
    """Seconds per frame as got10k / pytracking record them: frame 0 holds the track's set-up
    (construction, init, adaptation), later frames their ``update``; they sum to the track's time."""
    times = np.asarray(result.times, dtype=np.float64).copy()
    if times.size:
        times[0] += result.setup_seconds
    return times


def write_toolkit_files(results: EvaluationResults, out_dir: str | Path) -> dict[str, Path]:
    """Per-sequence result files that the got10k and pytracking toolkits read; returns their two folders.

    * got10k (``ExperimentGOT10k`` / ``ExperimentOTB`` record format):
      ``<out>/got10k/<tracker>/<sequence>/<sequence>_001.txt``, one ``x,y,w,h`` line per frame
      (comma-separated, ``%.3f``; repetition 1 of a deterministic run), and
      ``<sequence>_time.txt``, one line of seconds per frame (``%.8f``), e.g. ``10.000,18.000,12.000,12.000``
      and ``0.00123400``.
    * pytracking (``pytracking/evaluation/running.py``):
      ``<out>/pytracking/<tracker>/<sequence>.txt``, one ``x<TAB>y<TAB>w<TAB>h`` line per frame, and
      ``<sequence>_time.txt``, one line of seconds per frame (``%f``). pytracking writes its own boxes
      as integers but reads any number (``load_text(..., dtype=np.float64)``), so these keep three
      decimals: ``10.000\t18.000\t12.000\t12.000``. Its ``Tracker(name, parameter_name)`` reads
      ``<results_path>/<name>/<parameter_name>/<sequence>.txt``: set ``results_path`` to ``<out>`` with
      name ``pytracking`` and ``parameter_name`` the tracker's folder.

    Boxes: ``toolkit_boxes`` (pixel-count convention, frame 0 = the given box); times:
    ``toolkit_times``. Tracker and sequence names are made file-safe (a track ``bear/1`` → ``bear_1``).
    The toolkits score against their own annotation files, in the same pixel-count convention.
    """
    out = Path(out_dir)
    got, pyt = out / GOT10K_DIR, out / PYTRACKING_DIR
    for name, runs in results.runs.items():
        for res, _ in runs:
            seq = _slug(res.sequence)
            boxes, times = toolkit_boxes(res), toolkit_times(res)
            folder = got / _slug(name) / seq
            atomic_write_text(folder / f"{seq}_001.txt", _lines(boxes, "%.3f", ","))
            atomic_write_text(folder / f"{seq}_time.txt", _lines(times[:, None], "%.8f", ","))
            atomic_write_text(pyt / _slug(name) / f"{seq}.txt", _lines(boxes, "%.3f", "\t"))
            atomic_write_text(pyt / _slug(name) / f"{seq}_time.txt", _lines(times[:, None], "%f", "\t"))
    return {"got10k": got, "pytracking": pyt}


def _lines(rows: np.ndarray, fmt: str, sep: str) -> str:
    return "".join(sep.join(fmt % v for v in row) + "\n" for row in rows)


def write_report(results: EvaluationResults, out_dir: str | Path, title: str = "",
                 save_sequences: bool = True, toolkit_files: bool = True) -> dict[str, Path]:
    """Write the report into ``out_dir`` (every file atomically) and return the paths by role.

    ``overall.md`` / ``overall.csv`` (one row per tracker), ``sequences.md`` / ``sequences.csv``
    (one row per tracker and track), ``success.png``; with ``save_sequences`` the predictions per
    frame under ``results/<tracker>/<track>.json`` (``load_results`` + ``rescore`` recompute the
    report from them); with ``toolkit_files`` the got10k and pytracking files
    (``write_toolkit_files``).
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
    if toolkit_files:
        paths.update(write_toolkit_files(results, out))
    return paths


from bmvtrack.evaluate.command import main as main  # noqa: E402  (the command line over this library)
