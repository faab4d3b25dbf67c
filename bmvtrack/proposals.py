"""A classical tracker's box as a second opinion beside the βMVUnet mask (ours, not the paper's).

Why: on real video the mask tracker's losses come from crop placement — the mask latches onto a
look-alike or shrinks onto a piece of the object, and the next crop follows it (DESIGN.md, "What is
achievable"). A correlation-filter tracker (OpenCV's CSRT) fails differently: it keeps the object's
place but not its shape (axis-aligned, fixed aspect). ``fuse_boxes`` keeps the mask's tight rotated
box while the two agree and takes the proposal when they do not, which re-places the next crop.

``ProposalTracks`` runs the proposal tracker once over a whole track, from frame 0's box: its boxes
do not depend on what an agent does, so an environment replays them from memory, and a tracker
running live gives the same boxes frame by frame.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from bmvtrack.motion import RBox, aabb_iou, rbox_to_xyxy
from bmvtrack.opencv_trackers import OpenCVTracker

Proposal = Literal["none", "csrt", "kcf"]
PROPOSALS = ("none", "csrt", "kcf")
AGREE_IOU = 0.5  # the PASCAL overlap criterion, fixed beforehand (not tuned on any evaluation split)


def agreement(mask_box: RBox | None, proposal: RBox) -> float:
    """Axis-aligned IoU of the mask's box with the proposal (0 when the mask is empty)."""
    if mask_box is None:
        return 0.0
    return float(aabb_iou(rbox_to_xyxy(mask_box), rbox_to_xyxy(proposal)))


def fuse_boxes(mask_box: RBox | None, proposal: RBox, min_iou: float = AGREE_IOU) -> RBox:
    """The mask's box where it overlaps the proposal by ≥ ``min_iou`` (axis-aligned IoU), else the proposal."""
    return mask_box if mask_box is not None and agreement(mask_box, proposal) >= min_iou else proposal


def make_proposal_tracker(kind: Proposal):
    """A fresh OpenCV tracker of ``kind`` (``init(frame, box)`` / ``update(frame) -> RBox``)."""
    if kind not in PROPOSALS or kind == "none":
        raise ValueError(f"proposal tracker must be one of {PROPOSALS[1:]}, got {kind!r}")
    return OpenCVTracker(kind)


def run_proposals(kind: Proposal, frames: Callable[[int], np.ndarray], n_frames: int, first: RBox) -> list[RBox]:
    """The proposal tracker's box on every frame of a track (frame 0: ``first``), started from ``first``."""
    tracker = make_proposal_tracker(kind)
    tracker.init(frames(0), first)
    return [first] + [tracker.update(frames(i)) for i in range(1, n_frames)]


class ProposalTracks:
    """Per-track proposal boxes, computed on first use and kept (``boxes(key, frames, n, first)``)."""

    def __init__(self, kind: Proposal) -> None:
        make_proposal_tracker(kind)  # fail now (no contrib build), not in the first episode
        self.kind = kind
        self._boxes: dict[str, list[RBox]] = {}

    def boxes(self, key: str, frames: Callable[[int], np.ndarray], n_frames: int, first: RBox) -> list[RBox]:
        if key not in self._boxes:
            self._boxes[key] = run_proposals(self.kind, frames, n_frames, first)
        return self._boxes[key]
