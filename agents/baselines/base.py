"""The tracker interface (got10k style) and the one registry that names every tracker.

Every tracker, learned or not, is driven the same way: ``init(frame, box)`` on the first frame
with the annotated box, then ``update(frame) -> box`` on every later frame. Frames are RGB
``uint8`` arrays of shape (H, W, 3); boxes are the motion module's ``RBox`` (centre, size,
angle in degrees; pixel ``(col, row)`` has its centre at ``(col, row)``, the convention of boxes
fitted to masks). A tracker that needs the answer (the oracle) says so with
``uses_ground_truth = True`` and receives it through ``set_ground_truth`` before ``init``; the
evaluation marks its rows as such. A tracker that can only hold axis-aligned boxes says so with
``axis_aligned = True``; the evaluation then initialises it with the mask's tight axis-aligned
bounds (the OTB protocol) instead of the rotated box. A tracker that segments says what it
tracked through ``last_mask`` and ``last_aabb`` (its axis-aligned box: the tight box of its mask,
SiamMask's convention); the evaluation scores that box, and J&F of the masks.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bmvtrack.motion import RBox


@runtime_checkable
class Tracker(Protocol):
    """A single-object tracker: ``init`` on frame 0 with the given box, ``update`` on each later frame.

    Optional attributes (False when absent): ``uses_ground_truth`` — the tracker gets
    ``set_ground_truth(boxes, img_w, img_h)`` before ``init``; ``axis_aligned`` — it only holds
    axis-aligned boxes and is initialised with the mask's tight bounds by the evaluation.

    Optional outputs, read by the evaluation after each ``update`` (absent: None):
    ``last_aabb`` — the axis-aligned box ``[x0, y0, x1, y1]`` it reports for that frame (pixel
    centres, like the mask's tight box), or None for the corner bounds of the returned rotated
    box; ``last_mask`` — a tracker that segments has it: the H×W boolean mask it tracked in that
    frame (scored with J&F).
    """

    name: str

    def init(self, frame: np.ndarray, box: RBox) -> None: ...

    def update(self, frame: np.ndarray) -> RBox: ...


TrackerFactory = Callable[..., Tracker]


@dataclass(frozen=True)
class RegisteredTracker:
    """A registry entry: how to build the tracker, what it is (``summary``, shown by ``evaluate
    --help``) and, for the βMVUnet segmentation trackers, their options; ``segmenter`` entries are
    built from one loaded segmentation network, ``factory(model, adapt=AdaptConfig)``."""

    factory: TrackerFactory
    summary: str = ""
    segmenter: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    motion: bool = False  # built from one loaded motion posterior, ``factory(model)``


_REGISTRY: dict[str, RegisteredTracker] = {}


def _key(name: str) -> str:
    return name.strip().lower()


def register_tracker(name: str, factory: TrackerFactory, *, overwrite: bool = False, summary: str = "",
                     segmenter: bool = False, options: Mapping[str, Any] | None = None,
                     motion: bool = False) -> None:
    """Make ``make_tracker(name, **kwargs)`` call ``factory(**kwargs)``.

    Names are case-insensitive. Registering a taken name raises ``ValueError`` unless
    ``overwrite=True`` (so two modules cannot silently shadow each other). ``summary`` says what
    the tracker is; ``segmenter`` and ``options``: see ``RegisteredTracker``.
    """
    key = _key(name)
    if not key:
        raise ValueError("tracker name must not be empty")
    if not callable(factory):
        raise TypeError(f"factory for tracker {name!r} is not callable: {factory!r}")
    if key in _REGISTRY and not overwrite and _REGISTRY[key].factory is not factory:
        raise ValueError(f"tracker {key!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[key] = RegisteredTracker(factory, summary, segmenter, dict(options or {}), motion)


def available_trackers() -> list[str]:
    """Registered tracker names, sorted."""
    return sorted(_REGISTRY)


def registered_tracker(name: str) -> RegisteredTracker:
    """The registry entry of ``name`` (case-insensitive); ``KeyError`` naming the registered ones."""
    key = _key(name)
    if key not in _REGISTRY:
        raise KeyError(f"unknown tracker {name!r}; registered: {', '.join(available_trackers())}")
    return _REGISTRY[key]


def segmentation_trackers() -> list[str]:
    """The registered trackers built from a loaded βMVUnet segmenter, sorted."""
    return [n for n in available_trackers() if _REGISTRY[n].segmenter]


def motion_trackers() -> list[str]:
    """The registered trackers built from a loaded motion posterior (``model.input: pair``), sorted."""
    return [n for n in available_trackers() if _REGISTRY[n].motion]


def make_tracker(name: str, **kwargs) -> Tracker:
    """A fresh tracker by registered name ("zero", "mil", "kcf", "csrt", "oracle", ...)."""
    return registered_tracker(name).factory(**kwargs)


def describe_trackers() -> str:
    """One line per registered tracker, ``name: summary`` (what ``evaluate --help`` lists)."""
    return "\n".join(f"  {n}: {_REGISTRY[n].summary}" if _REGISTRY[n].summary else f"  {n}"
                     for n in available_trackers())
