"""The βMVUnet segmentation tracker without RL: segment the search crop, fit the box to the mask.

Each ``update`` crops the new frame around the previous box (the paper's padding, ``context·(w+h)``
per side), runs the pretrained network deterministically (posterior mean), thresholds the pasted
probability map and fits a rotated box to the mask components that touch the previous box
(``keep="overlap"``): every piece of a split or half-hidden object inside the box stays (keeping
all pieces beats keeping the largest), while a look-alike or a large neighbour that only enters at
the crop's edge no longer drags the box onto itself. ``keep="all"`` fits the box to every piece
(on held-out synthetic video it scored AUC 0.409 against 0.541). When the
mask is empty the previous box is kept and the frame is counted as a miss. This is the baseline the RL agent has to
beat; the same code (``bmvtrack.segmentation.track_step``) is the "tracking" crop mode of
``python -m bmvtrack.evaluate_vae``.

With ``adapt`` (the ``segmentation-adapt`` tracker, ours) the network is first fine-tuned on frame 0
knowing only the annotated box (``bmvtrack.adaptation``; by default its own mask inside the box is
the label, background outside it): the same information the OpenCV trackers get, spent on
teaching the segmenter this object before tracking starts.

With ``proposal`` (the ``segmentation-csrt`` tracker, ours) a classical tracker runs beside it on the
full frames, and each new box is ``bmvtrack.proposals.fuse_boxes`` of the mask's box and the
proposal's: the mask's while they agree, the proposal's when they do not (or the mask is empty), so
a latched or shrunken mask no longer places the next crop. It is the start of the MV-SAC agent
whose environment has ``proposal: csrt``. With ``fuse="colour"`` (the ``segmentation-colour``
tracker, ours) the choice is made by colour instead of by overlap: the mask's box wherever its
colour contrast against the first frame's object (``bmvtrack.appearance.ColourModel``) is at least
the proposal's, so the two cues are weighed by a judge independent of both.

It segments, so the evaluation reads what it tracked after each ``update`` (``Tracker``'s optional
attributes): ``last_mask``, the mask pieces its box was fitted to, and ``last_aabb``, the tight
box of that mask (SiamMask's convention) when the box came from the mask, the previous frame's
when the mask was empty and the box was kept, and None (the rotated box's corner bounds) when
the proposal's box took over. Both are made on demand, so a caller that reads only boxes pays
nothing for them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from bmvtrack.adaptation import AdaptConfig, adapt_to_box
from bmvtrack.appearance import ColourModel, mask_box_wins
from bmvtrack.data.patches import CropWindow
from bmvtrack.motion import BoxMethod, RBox, mask_aabb
from bmvtrack.proposals import AGREE_IOU, Proposal, fuse_boxes, make_proposal_tracker
from bmvtrack.segmentation import Keep, StepResult, fill_rbox, load_segmenter, mask_from_prob, track_step

Fuse = Literal["agree", "colour"]
FUSES = get_args(Fuse)


class SegmentationTracker:
    """Box tracker from a pretrained βMVAE / βMVUnet checkpoint (or an already loaded model).

    Attributes after a run: ``misses`` (frames whose mask was empty, box kept), ``frames``
    (updates so far), ``last_step`` (the last ``StepResult``), ``last_prob`` (its map pasted into
    the frame, H×W float32, made on demand), ``last_window`` (its crop window), ``last_mask`` and
    ``last_aabb`` (what it tracked: see the module docstring).
    """

    uses_ground_truth = False

    def __init__(
        self,
        checkpoint: str | Path | Any,
        threshold: float = 0.5,
        context: float = 0.25,
        box_method: BoxMethod = "minarearect",
        keep: Keep = "overlap",
        device: str = "cpu",
        name: str = "segmentation",
        adapt: AdaptConfig | None = None,
        proposal: Proposal = "none",
        agree_iou: float = AGREE_IOU,
        fuse: Fuse = "agree",
    ) -> None:
        if isinstance(checkpoint, (str, Path)):
            self.model, self.model_config = load_segmenter(checkpoint, device)
        else:  # a loaded model (anything predict_patches accepts)
            self.model, self.model_config = checkpoint, getattr(checkpoint, "cfg", None)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        self.threshold = threshold
        self.context = context
        self.box_method = box_method
        self.keep = keep
        self.name = name
        self.adapt = adapt
        self.proposal = None if proposal == "none" else make_proposal_tracker(proposal)
        self.agree_iou = agree_iou
        if fuse not in FUSES:
            raise ValueError(f"fuse must be one of {FUSES}, got {fuse!r}")
        self.colours = ColourModel() if fuse == "colour" else None
        self.base_model = self.model
        self._box: RBox | None = None
        self.misses = 0
        self.frames = 0
        self.last_step: StepResult | None = None
        self._reset_outputs()

    def _reset_outputs(self) -> None:
        self._anchor_box: RBox | None = None  # the box the last step's crop was placed at
        self._box_source = "given"  # of the last box: "mask", "kept", "proposal" or "given" (init)
        self._mask: np.ndarray | None = None
        self._aabb: np.ndarray | None = None
        self._kept_aabb: np.ndarray | None = None

    @property
    def last_mask(self) -> np.ndarray | None:
        """The mask tracked in the last frame (H×W bool): the thresholded map's pieces that ``keep``
        selects, the ones the box was fitted to (empty when nothing was found); None before an update."""
        if self.last_step is None or self._anchor_box is None:
            return None
        if self._mask is None:
            step = self.last_step
            anchor = fill_rbox(self._anchor_box, step.frame_hw) if self.keep == "overlap" else None
            self._mask = mask_from_prob(step.prob, self.threshold, self.keep, anchor)
        return self._mask

    @property
    def last_aabb(self) -> np.ndarray | None:
        """The axis-aligned box ``[x0, y0, x1, y1]`` reported for the last frame: the tight box of
        ``last_mask`` when the box was fitted to it, the previous one when the box was kept, None
        (the rotated box's corner bounds count) when the proposal's box took over or before an update."""
        if self._box_source == "kept":
            return self._kept_aabb
        if self._box_source != "mask":
            return None
        if self._aabb is None:
            self._aabb = mask_aabb(self.last_mask)
        return self._aabb

    @property
    def last_prob(self) -> np.ndarray | None:
        return None if self.last_step is None else self.last_step.prob

    @property
    def last_window(self) -> CropWindow | None:
        return None if self.last_step is None else self.last_step.window

    def init(self, frame: np.ndarray, box: RBox) -> None:
        """Start a track at the annotated ``box`` of ``frame`` (with ``adapt``: fine-tune on it first)."""
        if self.adapt is not None:
            self.model = adapt_to_box(self.base_model, frame, box, self.adapt)
        if self.proposal is not None:
            self.proposal.init(frame, box)
        if self.colours is not None:
            self.colours.start(frame, box)
        self._box = box
        self.misses = 0
        self.frames = 0
        self.last_step = None
        self._reset_outputs()

    def update(self, frame: np.ndarray) -> RBox:
        """Segment ``frame`` around the previous box; the new box, or the previous one if the mask is empty."""
        if self._box is None:
            raise RuntimeError("SegmentationTracker.update called before init")
        step = track_step(
            self.model, frame, self._box, threshold=self.threshold, context=self.context,
            box_method=self.box_method, keep=self.keep,
        )
        self.frames += 1
        if step.box is None:
            self.misses += 1
        if self.proposal is not None:
            box = self._fuse(frame, step.box, self.proposal.update(frame))
            source = "mask" if step.box is not None and box is step.box else "proposal"
        else:
            box = step.box if step.box is not None else self._box
            source = "mask" if step.box is not None else "kept"
        kept = self.last_aabb if source == "kept" else None  # the previous frame's, before it is replaced
        self._anchor_box, self.last_step, self._box = self._box, step, box
        self._box_source, self._mask, self._aabb, self._kept_aabb = source, None, None, kept
        return self._box

    def _fuse(self, frame: np.ndarray, mask_box: RBox | None, proposal_box: RBox) -> RBox:
        """The mask's box or the proposal's (the proposal's where the mask is empty)."""
        if self.colours is None:
            return fuse_boxes(mask_box, proposal_box, self.agree_iou)
        if mask_box is None:
            return proposal_box
        wins = mask_box_wins(self.colours.score(frame, mask_box), self.colours.score(frame, proposal_box))
        return mask_box if wins else proposal_box
