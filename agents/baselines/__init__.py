"""Trackers behind one got10k-style interface, and the one registry that names them all.

``make_tracker(name)`` builds a fresh tracker by name: "zero" (the box never moves), "mil",
"kcf", "csrt" (OpenCV, axis-aligned) and "oracle" (replays the ground-truth G_t; uses the
answer, the motion model's upper bound). The βMVUnet segmentation trackers ("segmentation",
"segmentation-all", ..., ``SEGMENTATION_TRACKERS``) are registered too, with their options; they
are built from one loaded network, ``make_tracker(name, model=..., adapt=...)``
(``bmvtrack.agents.loading.learned_tracker_factories`` loads it). ``describe_trackers()`` lists
every name with what it is (``python -m bmvtrack.evaluate --help`` shows it). Other modules add
theirs with ``register_tracker(name, factory)``.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bmvtrack.agents.baselines.base import (
    RegisteredTracker,
    Tracker,
    TrackerFactory,
    available_trackers,
    describe_trackers,
    make_tracker,
    motion_trackers,
    register_tracker,
    registered_tracker,
    segmentation_trackers,
)
from bmvtrack.opencv_trackers import KINDS as OPENCV_KINDS
from bmvtrack.opencv_trackers import OpenCVTracker, cv_rect_to_rbox, rbox_to_cv_rect, seed_opencv
from bmvtrack.agents.baselines.motion_posterior import MotionPosteriorTracker
from bmvtrack.agents.baselines.oracle import OracleTracker
from bmvtrack.agents.baselines.segmentation_tracker import SegmentationTracker
from bmvtrack.agents.baselines.zero import ZeroMotionTracker


def register_segmentation_tracker(name: str, summary: str, **options: Any) -> None:
    """Register a βMVUnet segmentation tracker: ``SegmentationTracker`` ``options`` (the mask pieces
    the box is fitted to, first-frame adaptation, a classical tracker whose box is fused with the
    mask's, the box fitted to the mask), built by ``make_tracker(name, model=..., adapt=...)`` on a
    loaded network; ``adapt`` (an AdaptConfig) serves the trackers whose options ask for it."""
    def build(model: Any, adapt: Any = None) -> SegmentationTracker:
        opts = dict(options)
        opts["adapt"] = adapt if opts.get("adapt") else None
        return SegmentationTracker(model, name=name, **opts)

    register_tracker(name, build, summary=summary, segmenter=True, options=options)


register_tracker("zero", ZeroMotionTracker, summary="the box never moves (the floor every tracker must clear)")
register_tracker("oracle", OracleTracker,
                 summary="replays the ground-truth motion G_t (uses the answer: the motion model's upper bound)")
for _kind, _cv_name in OPENCV_KINDS.items():
    register_tracker(_kind, lambda _k=_kind, **kw: OpenCVTracker(_k, **kw),
                     summary=f"OpenCV's {_cv_name} tracker (axis-aligned)")
register_segmentation_tracker(
    "segmentation", "βMVUnet (--segmenter): the box fitted to the mask pieces touching the previous box",
    keep="overlap")
register_segmentation_tracker("segmentation-all", "'segmentation' fitted to all mask pieces", keep="all")
register_segmentation_tracker("segmentation-largest", "'segmentation' fitted to the largest mask piece",
                              keep="largest")
register_segmentation_tracker(
    "segmentation-adapt", "'segmentation' fine-tuned first on frame 0's box (bmvtrack.adaptation, --adapt-*)",
    keep="overlap", adapt=True)
register_segmentation_tracker(
    "segmentation-csrt", "'segmentation-adapt' with CSRT's box taking over wherever the mask's box disagrees "
    "with it (bmvtrack.proposals)", keep="overlap", adapt=True, proposal="csrt")
register_segmentation_tracker(
    "segmentation-colour", "'segmentation-adapt' with CSRT beside it; each frame the box of the two whose colours "
    "stand out more from their surroundings, by the first frame's colour model (bmvtrack.appearance)",
    keep="overlap", adapt=True, proposal="csrt", fuse="colour")
register_segmentation_tracker(
    "segmentation-csrt-principal", "'segmentation-csrt' with the principal-axes box fitted to the mask",
    keep="overlap", adapt=True, proposal="csrt", box_method="principal")


def _register_motion_tracker(name: str, summary: str, adapt_summary: str | None = None, **options: Any) -> None:
    """Register ``name``, a ``MotionPosteriorTracker`` with ``options`` on the --motion-net network,
    and with ``adapt_summary`` its ``name-adapt`` twin on the network fine-tuned first (--adapt-*)."""
    register_tracker(name, lambda model, adapt=None: MotionPosteriorTracker(model, name=name, **options),
                     motion=True, summary=summary)
    if adapt_summary is not None:
        register_tracker(
            f"{name}-adapt",
            lambda model, adapt=None: MotionPosteriorTracker(model, name=f"{name}-adapt", adapt=adapt, **options),
            motion=True, summary=adapt_summary)


_register_motion_tracker(
    "motion-posterior", "the box moved by the motion posterior's mean μ′ every frame (--motion-net; no CSRT, no RL)",
    "'motion-posterior' fine-tuned first on frame 0's box and its own warps (bmvtrack.adaptation, --adapt-*)")
_register_motion_tracker(
    "motion-posterior-centre", "'motion-posterior' moving only the box's centre by μ′, its size and angle held "
    "(an ablation: what μ′'s scale and turn add)", hold_shape=True)
_register_motion_tracker(
    "motion-posterior-flip", "'motion-posterior' with the pair and its mirror image merged (test-time flip)", flip=True)
_register_motion_tracker(
    "motion-posterior-mask", "'motion-posterior' with μ′ fused with the decoded mask's box, the mask's noise "
    "measured on frame 0's own warps (bmvtrack.mask_measurement)",
    "'motion-posterior-mask' on the network fine-tuned as 'motion-posterior-adapt' (--adapt-*)", measure="mask")
_register_motion_tracker(
    "motion-mask-box", "the box fitted to the motion network's decoded mask, μ′ only where the mask is empty: "
    "'motion-posterior-mask' without the fusion",
    "'motion-mask-box' on the network fine-tuned as 'motion-posterior-adapt' (--adapt-*)", measure="mask-only")
register_tracker(
    "motion-segmentation-adapt",
    lambda model, adapt=None, segmenter=None: MotionPosteriorTracker(
        model, name="motion-segmentation-adapt", adapt=adapt, measure="mask", segmenter=segmenter),
    motion=True, options={"segmenter": True},
    summary="'motion-posterior-mask-adapt' measured by 'segmentation-adapt''s mask box (the single-crop "
    "--segmenter, adapted alike) instead of the motion network's decoder (--motion-net)")

# name → options of the segmentation trackers, as registered (a view of the registry)
SEGMENTATION_TRACKERS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {n: registered_tracker(n).options for n in segmentation_trackers()})

__all__ = [
    "MotionPosteriorTracker", "OPENCV_KINDS", "OpenCVTracker", "OracleTracker", "RegisteredTracker", "SEGMENTATION_TRACKERS",
    "SegmentationTracker", "Tracker", "TrackerFactory", "ZeroMotionTracker", "available_trackers",
    "cv_rect_to_rbox", "describe_trackers", "make_tracker", "motion_trackers", "rbox_to_cv_rect", "register_tracker",
    "register_segmentation_tracker", "registered_tracker", "segmentation_trackers", "seed_opencv",
]
