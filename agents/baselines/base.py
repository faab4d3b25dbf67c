"""The tracker interface (got10k style) and the registry that names trackers.

Every tracker, learned or not, is driven the same way: ``init(frame, box)`` on the first frame
with the annotated box, then ``update(frame) -> box`` on every later frame. Frames are RGB
``uint8`` arrays of shape (H, W, 3); boxes are the motion module's ``RBox`` (centre, size,
angle in degrees; pixel ``(col, row)`` has its centre at ``(col, row)``, the convention of boxes
fitted to masks). A tracker that needs the answer (the oracle) says so with
``uses_ground_truth = True`` and receives it through ``set_ground_truth`` before ``init``; the
evaluation marks its rows as such. A tracker that can only hold axis-aligned boxes says so with
``axis_aligned = True``; the evaluation then initialises it with the mask's tight axis-aligned
bounds (the OTB protocol) instead of the rotated box.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from bmvtrack.motion import RBox


@runtime_checkable
class Tracker(Protocol):
    """A single-object tracker: ``init`` on frame 0 with the given box, ``update`` on each later frame.

    Optional attributes (False when absent): ``uses_ground_truth`` — the tracker gets
    ``set_ground_truth(boxes, img_w, img_h)`` before ``init``; ``axis_aligned`` — it only holds
    axis-aligned boxes and is initialised with the mask's tight bounds by the evaluation.
    """

    name: str

    def init(self, frame: np.ndarray, box: RBox) -> None: ...

    def update(self, frame: np.ndarray) -> RBox: ...


TrackerFactory = Callable[..., Tracker]

_REGISTRY: dict[str, TrackerFactory] = {}


def register_tracker(name: str, factory: TrackerFactory, *, overwrite: bool = False) -> None:
    """Make ``make_tracker(name, **kwargs)`` call ``factory(**kwargs)``.

    Names are case-insensitive. Registering a taken name raises ``ValueError`` unless
    ``overwrite=True`` (so two modules cannot silently shadow each other).
    """
    key = name.strip().lower()
    if not key:
        raise ValueError("tracker name must not be empty")
    if not callable(factory):
        raise TypeError(f"factory for tracker {name!r} is not callable: {factory!r}")
    if key in _REGISTRY and not overwrite and _REGISTRY[key] is not factory:
        raise ValueError(f"tracker {key!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[key] = factory


def available_trackers() -> list[str]:
    """Registered tracker names, sorted."""
    return sorted(_REGISTRY)


def make_tracker(name: str, **kwargs) -> Tracker:
    """A fresh tracker by registered name ("zero", "mil", "kcf", "csrt", "oracle", ...)."""
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise KeyError(f"unknown tracker {name!r}; registered: {', '.join(available_trackers())}")
    return _REGISTRY[key](**kwargs)
