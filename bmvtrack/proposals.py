"""A classical tracker's box as a second opinion beside the βMVUnet mask (ours, not the paper's).

Why: on real video the mask tracker's losses come from crop placement — the mask latches onto a
look-alike or shrinks onto a piece of the object, and the next crop follows it. A
correlation-filter tracker (OpenCV's CSRT) fails differently: it keeps the object's place but not
its shape (axis-aligned, fixed aspect). ``fuse_boxes`` keeps the mask's tight rotated box while the
two agree and takes the proposal when they do not, which re-places the next crop.

``ProposalTracks`` runs the proposal tracker once over a whole track, from frame 0's box: its boxes
do not depend on what an agent does, so an environment replays them from memory (and, with a cache
folder, from disk across runs: CSRT costs ~3 s per DAVIS track while two trainings share the cores),
and a tracker running live gives the same boxes frame by frame.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from bmvtrack.appearance import SCORE_DIM, ColourModel
from bmvtrack.io import atomic_write_text, per_track_file
from bmvtrack.motion import RBox, aabb_iou, rbox_to_xyxy
from bmvtrack.opencv_trackers import OpenCVTracker

Proposal = Literal["none", "csrt", "kcf"]
PROPOSALS = ("none", "csrt", "kcf")
AGREE_IOU = 0.5  # the PASCAL overlap criterion, fixed beforehand (not tuned on any evaluation split)
MAX_HEIGHT = 240  # frames taller than this are shrunk for the proposal tracker (CSRT: 19 fps at 480p)


def agreement(mask_box: RBox | None, proposal: RBox) -> float:
    """Axis-aligned IoU of the mask's box with the proposal (0 when the mask is empty)."""
    if mask_box is None:
        return 0.0
    return float(aabb_iou(rbox_to_xyxy(mask_box), rbox_to_xyxy(proposal)))


def fuse_boxes(mask_box: RBox | None, proposal: RBox, min_iou: float = AGREE_IOU) -> RBox:
    """The mask's box where it overlaps the proposal by ≥ ``min_iou`` (axis-aligned IoU), else the proposal."""
    return mask_box if mask_box is not None and agreement(mask_box, proposal) >= min_iou else proposal


class Downscaled:
    """A tracker run on frames shrunk to at most ``max_height`` rows; boxes in and out at full size.

    Why: CSRT's cost grows with the frame, and at 480p it alone runs at 19 fps on 2 cores. Frames
    up to ``max_height`` pass unchanged (the 240p data the agents train and are scored on). Pixel
    centres map as x → (x + ½)·s − ½, the convention of boxes fitted to masks.
    """

    def __init__(self, inner: OpenCVTracker, max_height: int = MAX_HEIGHT) -> None:
        self.inner, self.max_height, self.scale = inner, int(max_height), 1.0

    def _shrink(self, frame: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return frame
        h, w = frame.shape[:2]
        size = (max(round(w * self.scale), 1), max(round(h * self.scale), 1))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    def _map(self, box: RBox, s: float) -> RBox:
        return RBox((box.cx + 0.5) * s - 0.5, (box.cy + 0.5) * s - 0.5, box.w * s, box.h * s, box.angle)

    def init(self, frame: np.ndarray, box: RBox) -> None:
        self.scale = min(1.0, self.max_height / frame.shape[0])
        self.inner.init(self._shrink(frame), self._map(box, self.scale))

    def update(self, frame: np.ndarray) -> RBox:
        return self._map(self.inner.update(self._shrink(frame)), 1.0 / self.scale)


def make_proposal_tracker(kind: Proposal) -> Downscaled:
    """A fresh OpenCV tracker of ``kind`` on frames of at most ``MAX_HEIGHT`` rows (``init`` / ``update``)."""
    if kind not in PROPOSALS or kind == "none":
        raise ValueError(f"proposal tracker must be one of {PROPOSALS[1:]}, got {kind!r}")
    return Downscaled(OpenCVTracker(kind))


def run_proposals(kind: Proposal, frames: Callable[[int], np.ndarray], n_frames: int, first: RBox) -> list[RBox]:
    """The proposal tracker's box on every frame of a track (frame 0: ``first``), started from ``first``."""
    tracker = make_proposal_tracker(kind)
    tracker.init(frames(0), first)
    return [first] + [tracker.update(frames(i)) for i in range(1, n_frames)]


class ProposalTracks:
    """Per-track proposal boxes, computed on first use and kept (``boxes(key, frames, n, first)``).

    With ``cache_dir`` they are also kept on disk, one JSON file per track, named by the track and a
    hash of its key, the tracker, the first box, the track length and the OpenCV version. A file that
    cannot be read is reported and remade, never trusted.
    """

    def __init__(self, kind: Proposal, cache_dir: str | Path | None = None) -> None:
        make_proposal_tracker(kind)  # fail now (no contrib build), not in the first episode
        self.kind = kind
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._boxes: dict[str, list[RBox]] = {}

    def _file(self, key: str, name: str, n_frames: int, first: RBox) -> Path | None:
        if self.cache_dir is None:
            return None
        ident = json.dumps([key, self.kind, n_frames, [round(float(v), 4) for v in first.as_array()], cv2.__version__])
        return per_track_file(self.cache_dir, name, ident, ".json")

    def boxes(self, key: str, name: str, frames: Callable[[int], np.ndarray], n_frames: int,
              first: RBox) -> list[RBox]:
        """The boxes of track ``key`` (``name`` names its cache file), run from ``first`` when not kept."""
        if key in self._boxes:
            return self._boxes[key]
        path = self._file(key, name, n_frames, first)
        out = None
        if path is not None and path.is_file():
            try:
                rows = json.loads(path.read_text())
                out = [RBox(*(float(v) for v in row)) for row in rows]
                if len(out) != n_frames:
                    raise ValueError(f"{len(out)} boxes for {n_frames} frames")
            except (OSError, ValueError, TypeError) as exc:
                print(f"{path}: unusable proposal boxes ({exc}); running {self.kind} again", file=sys.stderr)
                out = None
        if out is None:
            out = run_proposals(self.kind, frames, n_frames, first)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps([b.as_array().tolist() for b in out]))
        self._boxes[key] = out
        return out


HISTORY_DIM = 3  # CueHistory's numbers
HISTORY_RATE = 0.2  # CueHistory's running agreement: the weight of the newest frame (about five frames' memory)
HISTORY_CAP = 30  # frames apart are counted up to this


class CueHistory:
    """A track's running record of how the decoded mask and the proposal have agreed: the numbers a
    one-frame state cannot show.

    Why: the mask and the proposal tracker fail on different sequences, and one frame's
    disagreement does not say which of the two went wrong. How long they have disagreed, and how far
    the box held has grown or shrunk since the first frame, hint at it (a mask that latched onto a
    neighbour or a piece of the object disagrees for many frames, and the box follows its size).
    ``update`` gives (kept to the scale of one):

    - the running IoU of the mask's box with the proposal's (weight ``HISTORY_RATE`` on the newest
      frame; 1 at the start);
    - frames since they last overlapped by ≥ ``AGREE_IOU``, / 10, counted up to ``HISTORY_CAP``;
    - ln(area of the box held / area of the track's first box), clipped to ±3.
    """

    def __init__(self) -> None:
        self.first_area = self.agree = 1.0
        self.apart = 0

    def start(self, box: RBox) -> None:
        """A new track (or a re-initialisation) from ``box``."""
        self.first_area, self.agree, self.apart = max(box.w * box.h, 1e-6), 1.0, 0

    def update(self, box: RBox, mask_box: RBox | None, proposal: RBox) -> np.ndarray:
        """The record after this frame's cues (``box``: the box held; ``mask_box``: None when the mask is empty)."""
        iou = agreement(mask_box, proposal)
        self.agree = (1.0 - HISTORY_RATE) * self.agree + HISTORY_RATE * iou
        self.apart = 0 if iou >= AGREE_IOU else min(self.apart + 1, HISTORY_CAP)
        size = float(np.clip(np.log(max(box.w * box.h, 1e-6) / self.first_area), -3.0, 3.0))
        return np.array([self.agree, self.apart / 10.0, size], dtype=np.float32)


Reinit = Literal["never", "disagree", "vote"]
REINIT_RULES = ("never", "disagree", "vote")
_WORKER: ThreadPoolExecutor | None = None  # one thread for every FollowingProposal.propose_async (made on first use)


class FollowingProposal:
    """A proposal tracker run beside a box-moving tracker (an agent), restarted on that tracker's box.

    Why: a proposal tracker that has drifted off the object never comes back by itself; restarted
    on the box the agent holds, it follows the agent's corrections. ``propose(frame)`` moves it to
    the next frame before the agent acts (the agent reads where it went); ``settle`` applies the
    restart rule ``reinit`` after the agent moved, with the PASCAL overlap ``min_iou``:

    - ``never``: run from the first box only (independent of the agent);
    - ``disagree``: restart whenever the agent's box and the proposal overlap by less;
    - ``vote``: restart when they overlap by less *and* the agent's box overlaps the decoded mask's
      box by at least that (two cues against one), so that a box thrown off the object does not
      drag the proposal off with it.
    """

    def __init__(self, kind: Proposal = "csrt", reinit: Reinit = "vote", min_iou: float = AGREE_IOU,
                 history: bool = False, colour: bool = False) -> None:
        if reinit not in REINIT_RULES:
            raise ValueError(f"reinit must be one of {REINIT_RULES}, got {reinit!r}")
        self.kind, self.reinit, self.min_iou = kind, reinit, float(min_iou)
        self._tracker = make_proposal_tracker(kind)
        self.box: RBox | None = None
        self.restarts = 0
        self.history = CueHistory() if history else None  # the track's record of mask–proposal agreement
        self.colours = ColourModel() if colour else None  # the object's colours, from the start's frame and box

    def start(self, frame: np.ndarray, box: RBox) -> None:
        """Start on ``box`` in ``frame`` (a track's first frame, or a re-initialisation); the history and
        the colour model restart too."""
        self._restart(frame, box)
        if self.history is not None:
            self.history.start(box)
        if self.colours is not None:
            self.colours.start(frame, box)

    def extra_layout(self, offset: int) -> dict[str, slice]:
        """The slices the state gains after its ``proposal`` slice, from ``offset``: ``history``
        (``HISTORY_DIM``) when on; with ``colour`` on, ``colour`` (the mask's box's ``ColourModel``
        scores, then the proposal's) and ``colour/move`` (5: the move onto the box of higher colour
        contrast, ``MotionState.with_proposal``)."""
        out = {}
        for name, n, on in (("history", HISTORY_DIM, self.history), ("colour", 2 * SCORE_DIM, self.colours),
                            ("colour/move", 5, self.colours)):
            if on is not None:
                out[name] = slice(offset, offset + n)
                offset += n
        return out

    def extras(self, frame: np.ndarray, box: RBox, mask_box: RBox | None) -> list[np.ndarray]:
        """This frame's ``history`` and ``colour`` numbers (``box``: the box held; ``mask_box``: the decoded
        mask's box in ``frame``, None when empty); call once per frame, after ``propose``."""
        out = []
        if self.history is not None:
            out.append(self.history.update(box, mask_box, self.box))
        if self.colours is not None:
            out.append(np.concatenate([self.colours.score(frame, mask_box), self.colours.score(frame, self.box)]))
        return out

    def _restart(self, frame: np.ndarray, box: RBox) -> None:
        self._tracker.init(frame, box)
        self.box = box

    def propose(self, frame: np.ndarray) -> RBox:
        """The proposal's box in the next frame."""
        if self.box is None:
            raise RuntimeError("FollowingProposal.propose called before start")
        self.box = self._tracker.update(frame)
        return self.box

    def propose_async(self, frame: np.ndarray) -> Callable[[], RBox]:
        """Start ``propose(frame)`` on a worker thread; the returned call waits for the box.

        Why: the proposal's move and the network's state of the same frame do not depend on each
        other, and both release the GIL (OpenCV, torch), so on two cores they overlap. Same boxes
        as ``propose``; call the result before the next ``propose``, ``start`` or ``settle``.
        """
        global _WORKER
        if self.box is None:
            raise RuntimeError("FollowingProposal.propose_async called before start")
        if _WORKER is None:
            _WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proposal")
        return _WORKER.submit(self.propose, frame).result

    def settle(self, frame: np.ndarray, box: RBox, mask_box: RBox | None) -> bool:
        """Apply the restart rule to the agent's new ``box`` in ``frame``; True if restarted."""
        if self.box is None or self.reinit == "never" or agreement(box, self.box) >= self.min_iou:
            return False
        if self.reinit == "vote" and agreement(mask_box, box) < self.min_iou:
            return False
        self._restart(frame, box)
        self.restarts += 1
        return True
