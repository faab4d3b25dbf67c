"""Non-learned baseline trackers behind one got10k-style interface, and the tracker registry.

``make_tracker(name)`` builds a fresh tracker by name: "zero" (the box never moves), "mil",
"kcf", "csrt" (OpenCV, axis-aligned) and "oracle" (replays the ground-truth G_t; uses the
answer, the motion model's upper bound). Other modules add theirs with
``register_tracker(name, factory)``.
"""
from bmvtrack.agents.baselines.base import (
    Tracker,
    TrackerFactory,
    available_trackers,
    make_tracker,
    register_tracker,
)
from bmvtrack.opencv_trackers import KINDS as OPENCV_KINDS
from bmvtrack.opencv_trackers import OpenCVTracker, cv_rect_to_rbox, rbox_to_cv_rect, seed_opencv
from bmvtrack.agents.baselines.oracle import OracleTracker
from bmvtrack.agents.baselines.zero import ZeroMotionTracker

register_tracker("zero", ZeroMotionTracker)
register_tracker("oracle", OracleTracker)
for _kind in OPENCV_KINDS:
    register_tracker(_kind, lambda _k=_kind, **kw: OpenCVTracker(_k, **kw))

__all__ = [
    "OPENCV_KINDS", "OpenCVTracker", "OracleTracker", "Tracker", "TrackerFactory", "ZeroMotionTracker",
    "available_trackers", "cv_rect_to_rbox", "make_tracker", "rbox_to_cv_rect", "register_tracker",
    "seed_opencv",
]
