"""The motion model: rotated boxes, the 5-D motion G_t between them, rotated IoU, the MGD prior.

A rotated box is ``RBox(cx, cy, w, h, angle)`` in pixel coordinates of the image (x right,
y down), angle in degrees as OpenCV reports it. Between two boxes (the paper's equations with its
printed typo fixed — the paper has ``y`` where ``x`` belongs in the first term of ``t_x``)::

    Δs_x = w'/w   Δs_y = h'/h   θ = α' − α
    t_x = x' − (x·Δs_x·cosθ − y·Δs_y·sinθ)
    t_y = y' − (x·Δs_x·sinθ + y·Δs_y·cosθ)
    action = [Δs_x, Δs_y, sinθ, t_x / W_img, t_y / H_img]

Applying an action is parametric: the centre goes through G_t, the size is scaled by
(Δs_x, Δs_y) and the angle turned by θ. Note the translation depends on the absolute centre
(rotation about the image origin), exactly as the paper's prior is defined.

Angle convention: a box has equivalent forms ``(w, h, α) ≡ (w, h, α ± 180°) ≡ (h, w, α ± 90°)``
and OpenCV versions disagree on which one ``minAreaRect`` returns. The first box of a track is
expressed with α in [-45°, 45°); each later box takes the equivalent form closest to the previous
angle, so |θ| ≤ 45° per step and a smoothly rotating object never shows a false 90° flip.

This module imports nothing of the project.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import cv2
import numpy as np

BoxMethod = Literal["minarearect", "principal"]
ACTION_NAMES = ("ds_x", "ds_y", "sin_theta", "dx", "dy")
ACTION_DIM = 5
STAY_ACTION = np.array([1.0, 1.0, 0.0, 0.0, 0.0])  # the G_t that leaves a box where it is
MIN_SIDE = 1.0  # px; a box is never thinner than one pixel, so Δs = w'/w stays finite


@dataclass(frozen=True)
class RBox:
    """A rotated box: centre (cx, cy), size (w, h) in px, angle in degrees (OpenCV, y down)."""

    cx: float
    cy: float
    w: float
    h: float
    angle: float

    def as_array(self) -> np.ndarray:
        return np.array([self.cx, self.cy, self.w, self.h, self.angle], dtype=np.float64)

    @classmethod
    def from_array(cls, a: Sequence[float]) -> "RBox":
        return cls(*(float(v) for v in a[:5]))

    def to_cv(self) -> tuple[tuple[float, float], tuple[float, float], float]:
        return (self.cx, self.cy), (self.w, self.h), self.angle


# ----------------------------------------------------------------------------- boxes from masks


def _canonical_first(w: float, h: float, angle: float) -> tuple[float, float, float]:
    """Equivalent form with angle in [-45°, 45°)."""
    k = math.floor((angle + 45.0) / 90.0)
    a = angle - 90.0 * k
    if k % 2:
        w, h = h, w
    return w, h, a


def _closest_to(w: float, h: float, angle: float, ref: float) -> tuple[float, float, float]:
    """Equivalent form whose angle is closest to ``ref`` (so |α − ref| ≤ 45°)."""
    k = round((ref - angle) / 90.0)
    a = angle + 90.0 * k
    if k % 2:
        w, h = h, w
    return w, h, a


def canonicalize(box: RBox, reference_angle: float | None = None) -> RBox:
    """Apply the angle convention: [-45°, 45°) with no reference, else closest to the reference."""
    if reference_angle is None:
        w, h, a = _canonical_first(box.w, box.h, box.angle)
    else:
        w, h, a = _closest_to(box.w, box.h, box.angle, reference_angle)
    return RBox(box.cx, box.cy, w, h, a)


def _foreground_points(mask: np.ndarray) -> np.ndarray | None:
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    pts = cv2.findNonZero((mask > 0).astype(np.uint8))
    if pts is None:
        return None
    return pts.reshape(-1, 2).astype(np.float32)


def _principal_box(pts: np.ndarray) -> RBox:
    """Box on the mask's principal axes: orientation from second moments, extents from projections.

    The orientation is a continuous function of the mask, so it does not jump between the
    several equally small boxes that ``minAreaRect`` chooses among on deformable objects.
    """
    pts64 = pts.astype(np.float64)
    mean = pts64.mean(axis=0)
    d = pts64 - mean
    cxx = float((d[:, 0] ** 2).mean())
    cyy = float((d[:, 1] ** 2).mean())
    cxy = float((d[:, 0] * d[:, 1]).mean())
    phi = 0.5 * math.atan2(2.0 * cxy, cxx - cyy)
    u = np.array([math.cos(phi), math.sin(phi)])
    v = np.array([-math.sin(phi), math.cos(phi)])
    pu, pv = d @ u, d @ v
    (u0, u1), (v0, v1) = (pu.min(), pu.max()), (pv.min(), pv.max())
    centre = mean + u * (u0 + u1) / 2.0 + v * (v0 + v1) / 2.0
    return RBox(float(centre[0]), float(centre[1]), float(u1 - u0), float(v1 - v0), math.degrees(phi))


def rbox_from_points(pts: np.ndarray) -> RBox:
    """OpenCV's ``minAreaRect`` of (N, 2) points, as an RBox (angle not canonicalised)."""
    (cx, cy), (w, h), a = cv2.minAreaRect(np.asarray(pts, dtype=np.float32).reshape(-1, 2))
    return RBox(float(cx), float(cy), float(w), float(h), float(a))


def perturbed_box(box: RBox, z: Sequence[float], shift: float, scale: float) -> RBox:
    """``box`` moved by four standard-normal draws ``z``: the centre by ``shift·z[0:2]·max(w, h)``,
    each side scaled by ``exp(scale·z[2:4])`` (sides ≥ MIN_SIDE, angle kept). One recipe for the
    evaluation's perturbation protocol and the environment's perturbed starts."""
    size = max(box.w, box.h)
    return RBox(box.cx + shift * float(z[0]) * size, box.cy + shift * float(z[1]) * size,
                max(box.w * math.exp(scale * float(z[2])), MIN_SIDE),
                max(box.h * math.exp(scale * float(z[3])), MIN_SIDE), box.angle)


def rbox_from_mask(mask: np.ndarray, method: BoxMethod = "minarearect") -> RBox | None:
    """Rotated box of all foreground pixels (None for an empty mask), sides ≥ MIN_SIDE px.

    ``minarearect`` is the paper's choice (OpenCV's ``minAreaRect``); ``principal`` uses the
    mask's principal axes. The angle is not canonicalised here: see ``boxes_from_masks``.
    """
    pts = _foreground_points(mask)
    if pts is None:
        return None
    if method == "minarearect":
        box = rbox_from_points(pts)
    elif method == "principal":
        box = _principal_box(pts)
    else:
        raise ValueError(f"unknown box method {method!r}; use 'minarearect' or 'principal'")
    return RBox(box.cx, box.cy, max(box.w, MIN_SIDE), max(box.h, MIN_SIDE), box.angle)


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


def boxes_from_masks(masks: Iterable[np.ndarray | None], method: BoxMethod = "minarearect") -> list[RBox | None]:
    """Boxes of a track with the canonical angle convention; None where the object is absent.

    After an absent frame the convention continues from the last present box.
    """
    out: list[RBox | None] = []
    ref: float | None = None
    for m in masks:
        box = None if m is None else rbox_from_mask(m, method)
        if box is not None:
            box = canonicalize(box, ref)
            ref = box.angle
        out.append(box)
    return out


# ------------------------------------------------------------------------------ motion G_t


def motion_between(b0: RBox, b1: RBox, img_w: float, img_h: float) -> np.ndarray:
    """The action ``[Δs_x, Δs_y, sinθ, Δx, Δy]`` that moves ``b0`` onto ``b1`` (corrected eq.)."""
    sx, sy = b1.w / b0.w, b1.h / b0.h
    th = math.radians(b1.angle - b0.angle)
    c, s = math.cos(th), math.sin(th)
    tx = b1.cx - (b0.cx * sx * c - b0.cy * sy * s)
    ty = b1.cy - (b0.cx * sx * s + b0.cy * sy * c)
    return np.array([sx, sy, s, tx / img_w, ty / img_h], dtype=np.float64)


def motion_within(b0: RBox, b1: RBox, low: Sequence[float], high: Sequence[float], img_w: float,
                  img_h: float) -> np.ndarray:
    """The motion from ``b0`` towards ``b1`` inside the action bounds, clipped as one motion.

    G_t turns and scales about the image origin, so its translation depends on the rotation and
    the scales: clipping one component alone moves the box's centre (on a 240 px frame a height
    scale of 2.5 clipped to 1.98 lands the box 72 px off; a 44° turn of a box 350 px from the
    origin needs a translation beyond the bounds). Here the centre comes first: the scales and
    sinθ are clipped, and if the translation that keeps the centre is still out of bounds, the
    scale and rotation changes are shortened (the largest fraction found by bisection) until it
    fits. An in-bounds motion is returned unchanged.
    """
    lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)

    def fits(m: np.ndarray) -> bool:
        return bool(np.all((m >= lo) & (m <= hi)))

    g = motion_between(b0, b1, img_w, img_h)
    if fits(g):
        return g
    sx, sy, s = np.clip(g[:3], lo[:3], hi[:3])
    theta = math.asin(s)

    def keeping_centre(frac: float) -> np.ndarray:
        fx, fy, th = 1.0 + frac * (sx - 1.0), 1.0 + frac * (sy - 1.0), frac * theta
        c, sn = math.cos(th), math.sin(th)
        tx = b1.cx - (b0.cx * fx * c - b0.cy * fy * sn)
        ty = b1.cy - (b0.cx * fx * sn + b0.cy * fy * c)
        return np.array([fx, fy, sn, tx / img_w, ty / img_h])

    out = keeping_centre(1.0)
    if not fits(out) and fits(keeping_centre(0.0)):
        ok, bad = 0.0, 1.0  # invariant: keeping_centre(ok) fits, keeping_centre(bad) does not
        for _ in range(30):
            mid = 0.5 * (ok + bad)
            ok, bad = (mid, bad) if fits(keeping_centre(mid)) else (ok, mid)
        out = keeping_centre(ok)
    return np.clip(out, lo, hi)


def motion_matrix(action: Sequence[float], img_w: float, img_h: float) -> np.ndarray:
    """The 3×3 G_t of an action (translation in px)."""
    sx, sy, s, dx, dy = (float(v) for v in action)
    s = min(max(s, -1.0), 1.0)
    c = math.sqrt(1.0 - s * s)
    return np.array(
        [[sx * c, -sy * s, dx * img_w], [sx * s, sy * c, dy * img_h], [0.0, 0.0, 1.0]], dtype=np.float64
    )


def apply_motion(box: RBox, action: Sequence[float], img_w: float, img_h: float) -> RBox:
    """Move ``box`` by ``action``: centre through G_t, size scaled, angle turned by θ.

    ``sinθ`` is clipped to [-1, 1] and the result's sides to ≥ MIN_SIDE, so any finite action
    gives a valid box. Non-finite actions raise ValueError.
    """
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape (5,), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action must be finite, got {a.tolist()}")
    g = motion_matrix(a, img_w, img_h)
    x, y = g[:2, :2] @ np.array([box.cx, box.cy]) + g[:2, 2]
    theta = math.degrees(math.asin(min(max(a[2], -1.0), 1.0)))
    return RBox(
        float(x), float(y), max(box.w * a[0], MIN_SIDE), max(box.h * a[1], MIN_SIDE), box.angle + theta
    )


def keep_in_reach(box: RBox, frame_hw: tuple[int, int], max_size: float = 4.0) -> RBox:
    """Clamp a moved box so it stays within reach of the frame.

    The centre stays within one frame size of the image and the sides at most ``max_size``
    frame sizes: compounding a bad policy's scales would otherwise grow the box without limit
    (measured: float32 overflow in the observation after a few hundred random steps).
    """
    h, w = frame_hw
    return RBox(
        min(max(box.cx, -w), 2.0 * w), min(max(box.cy, -h), 2.0 * h),
        min(max(box.w, MIN_SIDE), max_size * max(w, h)), min(max(box.h, MIN_SIDE), max_size * max(w, h)),
        float(math.remainder(box.angle, 360.0)),
    )


def step_box(box: RBox, action: Sequence[float], low: Sequence[float], high: Sequence[float],
             frame_hw: tuple[int, int]) -> RBox:
    """One step of an agent's box: the action clipped to the bounds ``[low, high]``, applied
    (``apply_motion``) and the result kept within reach of the frame (``keep_in_reach``).

    The step of the environment and of a policy run as a tracker. An action that is not 5 finite
    numbers raises ValueError.
    """
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
        raise ValueError(f"action must be 5 finite numbers [Δs_x, Δs_y, sinθ, Δx, Δy], got {np.asarray(action).tolist()}")
    h, w = frame_hw
    return keep_in_reach(apply_motion(box, np.clip(a, low, high), w, h), (h, w))


def track_motions(boxes: Sequence[RBox | None], img_w: float, img_h: float) -> list[np.ndarray | None]:
    """G_t of every consecutive pair of a track (None where either frame is absent)."""
    return [
        None if (a is None or b is None) else motion_between(a, b, img_w, img_h)
        for a, b in zip(boxes[:-1], boxes[1:])
    ]


# ------------------------------------------------------------------------------ box-relative motion


RELATIVE_NAMES = ("log_s_x", "log_s_y", "sin_theta", "dx_win", "dy_win")
# a left-right mirror of both crops turns the box the other way and moves it the other way in x
RELATIVE_MIRROR = np.array([1.0, 1.0, -1.0, -1.0, 1.0])


def motion_window(box: RBox, context: float = 0.25) -> tuple[float, float]:
    """Width and height of the crop window around ``box``: its axis-aligned bounds padded by
    ``context·(w + h)`` per side, not clipped to the frame (``crop_window(..., clip=False)``)."""
    x0, y0, x1, y1 = rbox_to_xyxy(box)
    pad = 2.0 * context * ((x1 - x0) + (y1 - y0))
    return float(x1 - x0 + pad), float(y1 - y0 + pad)


def relative_between(b0: RBox, b1: RBox, context: float = 0.25) -> np.ndarray:
    """The box-relative motion ``r`` from ``b0`` to ``b1`` (ours; ``RELATIVE_NAMES``).

    ``r = [ln(w'/w), ln(h'/h), sinθ, Δcx / W_win, Δcy / H_win]`` with the window of
    ``motion_window(b0)``: what a network sees in a crop placed at ``b0``, the same numbers wherever
    the box is in the frame. ``relative_to_action`` converts it to ``G_t`` exactly.
    """
    ww, wh = motion_window(b0, context)
    return np.array([math.log(b1.w / b0.w), math.log(b1.h / b0.h), math.sin(math.radians(b1.angle - b0.angle)),
                     (b1.cx - b0.cx) / ww, (b1.cy - b0.cy) / wh], dtype=np.float64)


def apply_relative(box: RBox, r: Sequence[float], context: float = 0.25) -> RBox:
    """Move ``box`` by the box-relative motion ``r`` (inverse of ``relative_between``).

    Log-scales are clipped to ±3 and sinθ to [-1, 1], so any finite ``r`` gives a valid box.
    """
    a = np.asarray(r, dtype=np.float64).reshape(-1)
    if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
        raise ValueError(f"relative motion must be 5 finite numbers, got {np.asarray(r).tolist()}")
    ww, wh = motion_window(box, context)
    theta = math.degrees(math.asin(min(max(a[2], -1.0), 1.0)))
    return RBox(float(box.cx + a[3] * ww), float(box.cy + a[4] * wh),
                max(float(box.w * math.exp(min(max(a[0], -3.0), 3.0))), MIN_SIDE),
                max(float(box.h * math.exp(min(max(a[1], -3.0), 3.0))), MIN_SIDE), float(box.angle + theta))


def relative_to_action(box: RBox, r: Sequence[float], img_w: float, img_h: float,
                       context: float = 0.25) -> np.ndarray:
    """The environment's ``G_t`` that moves ``box`` exactly where the relative motion ``r`` does."""
    return motion_between(box, apply_relative(box, r, context), img_w, img_h)


def box_warp(b0: RBox, b1: RBox) -> np.ndarray:
    """The 2×3 affine map of the image that carries box ``b0`` onto box ``b1`` (corner to corner)."""
    src = np.c_[rbox_corners(b0)[:3], np.ones(3)]
    return np.linalg.solve(src, rbox_corners(b1)[:3]).T


# ------------------------------------------------------------------------------ IoU


def rbox_corners(box: RBox) -> np.ndarray:
    """The 4 corners (counter-clockwise in a y-up frame), shape (4, 2)."""
    t = math.radians(box.angle)
    c, s = math.cos(t), math.sin(t)
    hw, hh = box.w / 2.0, box.h / 2.0
    local = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
    rot = np.array([[c, -s], [s, c]])
    return local @ rot.T + np.array([box.cx, box.cy])


def fill_rbox(box: RBox | None, frame_hw: tuple[int, int]) -> np.ndarray:
    """Boolean H×W mask of the filled rotated box (sub-pixel polygon fill); empty for None."""
    h, w = frame_hw
    out = np.zeros((h, w), np.uint8)
    if box is not None:
        shift = 4
        pts = np.round(rbox_corners(box) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=shift)
    return out.astype(bool)


def _polygon_area(p: np.ndarray) -> float:
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip(subject: list[np.ndarray], a: np.ndarray, b: np.ndarray, sign: float) -> list[np.ndarray]:
    """Sutherland–Hodgman: keep the part of ``subject`` on the inner side of edge a→b."""

    def side(p: np.ndarray) -> float:
        return sign * ((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]))

    out: list[np.ndarray] = []
    n = len(subject)
    for i in range(n):
        cur, nxt = subject[i], subject[(i + 1) % n]
        sc, sn = side(cur), side(nxt)
        if sc >= 0:
            out.append(cur)
        if (sc >= 0) != (sn >= 0):
            t = sc / (sc - sn)
            out.append(cur + t * (nxt - cur))
    return out


def polygon_intersection_area(p: np.ndarray, q: np.ndarray) -> float:
    """Exact area of the intersection of two convex polygons (any orientation)."""
    e0, e1 = q[1] - q[0], q[2] - q[1]
    sign = 1.0 if e0[0] * e1[1] - e0[1] * e1[0] >= 0 else -1.0
    poly = [v for v in p]
    for i in range(len(q)):
        if not poly:
            return 0.0
        poly = _clip(poly, q[i], q[(i + 1) % len(q)], sign)
    return _polygon_area(np.array(poly)) if len(poly) >= 3 else 0.0


def rotated_iou(a: RBox | None, b: RBox | None) -> float:
    """IoU of two rotated boxes by exact polygon intersection; 0 if either is missing."""
    if a is None or b is None:
        return 0.0
    inter = polygon_intersection_area(rbox_corners(a), rbox_corners(b))
    union = a.w * a.h + b.w * b.h - inter
    return float(inter / union) if union > 0 else 0.0


def rbox_to_xyxy(box: RBox) -> np.ndarray:
    """Axis-aligned bounds ``[x0, y0, x1, y1]`` of a rotated box."""
    c = rbox_corners(box)
    return np.array([c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()])


def rbox_ellipse_xyxy(box: RBox) -> np.ndarray:
    """Axis-aligned bounds ``[x0, y0, x1, y1]`` of the ellipse inscribed in a rotated box.

    Why: a rotated box is the minimum-area rectangle of an object that touches its four sides,
    so the object's own axis-aligned bounds are usually tighter than the box's corners. The
    inscribed ellipse is the parameter-free estimate of them used by the tracking evaluation;
    at angles 0° and 90° it equals ``rbox_to_xyxy`` (so axis-aligned trackers are unaffected).
    """
    t = math.radians(box.angle)
    c, s = abs(math.cos(t)), abs(math.sin(t))
    hw = 0.5 * math.hypot(box.w * c, box.h * s)
    hh = 0.5 * math.hypot(box.w * s, box.h * c)
    return np.array([box.cx - hw, box.cy - hh, box.cx + hw, box.cy + hh])


def aabb_to_rbox(aabb: Sequence[float]) -> RBox:
    """Axis-aligned ``[x0, y0, x1, y1]`` bounds as an RBox (angle 0), sides ≥ ``MIN_SIDE``."""
    x0, y0, x1, y1 = (float(v) for v in aabb)
    return RBox((x0 + x1) / 2.0, (y0 + y1) / 2.0, max(x1 - x0, MIN_SIDE), max(y1 - y0, MIN_SIDE), 0.0)


def aabb_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two axis-aligned ``[x0, y0, x1, y1]`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# ------------------------------------------------------------------------------ the prior

PAPER_MEAN = np.array([1.0651, 1.0679, 0.00, 0.0718, 0.083])
PAPER_COV = np.array(
    [
        [0.265, -0.094, -0.014, -0.023, 0.124],
        [-0.094, 0.332, 0.011, 0.056, -0.054],
        [-0.014, 0.011, 0.183, 0.073, -0.21],
        [-0.023, 0.056, 0.073, 0.107, -0.029],
        [0.124, -0.054, -0.21, -0.029, 0.564],
    ]
)
# Table 1: the independent normals the paper draws ε from (mean, std).
PAPER_TABLE1_MEAN = np.array([1.06, 1.06, 0.0, 0.07, 0.08])
PAPER_TABLE1_STD = np.array([0.52, 0.54, 0.43, 0.34, 0.74])
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


class PriorError(ValueError):
    """A prior file or a measured covariance is unusable; the message says why."""


def check_spd(cov: np.ndarray, name: str = "covariance") -> None:
    """Raise PriorError unless ``cov`` is a finite symmetric positive-definite 5×5 matrix."""
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (ACTION_DIM, ACTION_DIM):
        raise PriorError(f"{name} must be 5×5, got shape {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise PriorError(f"{name} has non-finite entries")
    asym = float(np.abs(cov - cov.T).max())
    if asym > 1e-8 * max(1.0, float(np.abs(cov).max())):
        raise PriorError(f"{name} is not symmetric (max |Σ − Σᵀ| = {asym:.3g})")
    eig = np.linalg.eigvalsh(cov)
    if eig.min() <= 1e-12 * max(float(eig.max()), 1e-300):
        raise PriorError(
            f"{name} is not positive definite (smallest eigenvalue {eig.min():.3g}): "
            "too few or degenerate motion samples (e.g. an object that never rotates or scales)"
        )


def robust_gaussian(x: np.ndarray, coverage: float = 0.99, iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the bulk of ``x``: iterative Mahalanobis trimming.

    Repeatedly keep the samples whose squared Mahalanobis distance is below the χ² quantile
    ``coverage`` and refit; the trimmed covariance is then rescaled by
    ``P(χ²_d < c) / P(χ²_{d+2} < c)``, which makes it unbiased for data that are Gaussian.
    """
    from scipy.stats import chi2

    d = x.shape[1]
    cut = chi2.ppf(coverage, d)
    mean, cov = np.median(x, axis=0), np.cov(x, rowvar=False)
    keep = np.ones(len(x), bool)
    for _ in range(iterations):
        diff = x - mean
        m2 = np.einsum("ij,ij->i", diff, np.linalg.solve(cov + 1e-12 * np.eye(d), diff.T).T)
        new = m2 < cut
        if new.sum() <= d or np.array_equal(new, keep):
            keep = new if new.sum() > d else keep
            break
        keep = new
        mean, cov = x[keep].mean(axis=0), np.cov(x[keep], rowvar=False)
    mean, cov = x[keep].mean(axis=0), np.cov(x[keep], rowvar=False)
    return mean, cov * chi2.cdf(cut, d) / chi2.cdf(cut, d + 2)


@dataclass
class MotionPrior:
    """The multivariate Gaussian of real motion ``N(mean, cov)`` over ``[Δs_x, Δs_y, sinθ, Δx, Δy]``."""

    mean: np.ndarray
    cov: np.ndarray
    count: int = 0
    quantiles: dict[str, list[float]] = field(default_factory=dict)
    source: str = ""
    box_method: str = "minarearect"
    eps_std: np.ndarray | None = None  # std of the ε draws (Table 1 in the paper); default √diag(cov)
    fit: str = "gaussian"  # gaussian (plain sample moments, the paper) | robust (the bulk of the data)
    units: str = "action"  # action: G_t (ACTION_NAMES) | relative: box-relative motion (RELATIVE_NAMES)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(ACTION_DIM)
        self.cov = np.asarray(self.cov, dtype=np.float64).reshape(ACTION_DIM, ACTION_DIM)
        check_spd(self.cov, f"prior covariance ({self.source or 'in memory'})")
        if self.units not in ("action", "relative"):
            raise PriorError(f"prior units must be 'action' or 'relative', got {self.units!r} ({self.source})")
        if self.eps_std is not None:
            self.eps_std = np.asarray(self.eps_std, dtype=np.float64).reshape(ACTION_DIM)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    @property
    def sample_std(self) -> np.ndarray:
        return self.std if self.eps_std is None else self.eps_std

    @classmethod
    def paper(cls) -> "MotionPrior":
        """The paper's prior (appendix 2.2), used only where no analysis of our own data exists."""
        return cls(PAPER_MEAN, PAPER_COV, source="paper appendix 2.2", eps_std=PAPER_TABLE1_STD)

    @classmethod
    def from_samples(cls, samples: np.ndarray, source: str = "", box_method: str = "minarearect",
                     fit: str = "gaussian", units: str = "action") -> "MotionPrior":
        """Fit μ, Σ (and quantiles) to an (N, 5) array of motions.

        ``fit="gaussian"`` is the paper's plain sample mean and covariance. ``fit="robust"`` fits
        the Gaussian to the bulk of the data (``robust_gaussian``): box-fitting jumps and objects
        leaving the frame are rare but huge, and otherwise set σ several times wider than the
        motion of almost every frame.
        """
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != ACTION_DIM:
            raise PriorError(f"motion samples must have shape (N, 5), got {x.shape}")
        x = x[np.all(np.isfinite(x), axis=1)]
        if len(x) < ACTION_DIM + 1:
            raise PriorError(f"need at least {ACTION_DIM + 1} finite motion samples, got {len(x)} ({source})")
        if fit not in ("gaussian", "robust"):
            raise PriorError(f"unknown fit {fit!r}; use 'gaussian' or 'robust'")
        q = np.quantile(x, QUANTILES, axis=0)
        mean, cov = robust_gaussian(x) if fit == "robust" else (x.mean(axis=0), np.cov(x, rowvar=False))
        return cls(
            mean=mean,
            cov=cov,
            count=len(x),
            quantiles={f"q{int(round(p * 100)):02d}": q[i].tolist() for i, p in enumerate(QUANTILES)},
            source=source,
            box_method=box_method,
            fit=fit,
            units=units,
        )

    def to_dict(self) -> dict:
        d = {
            "variables": list(RELATIVE_NAMES if self.units == "relative" else ACTION_NAMES),
            "units": self.units,
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "std": self.std.tolist(),
            "count": int(self.count),
            "quantiles": self.quantiles,
            "source": self.source,
            "box_method": self.box_method,
            "fit": self.fit,
        }
        if self.eps_std is not None:
            d["eps_std"] = self.eps_std.tolist()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "") -> "MotionPrior":
        """A prior from its ``to_dict()`` form (a prior file, a checkpoint's ``prior``).

        Keys the form lacks take their defaults, so forms written before a field existed (``fit``,
        ``eps_std``) still load; ``source`` names it when the form does not.
        """
        return cls(
            mean=d["mean"],
            cov=d["cov"],
            count=int(d.get("count", 0)),
            quantiles=d.get("quantiles", {}),
            source=d.get("source", source),
            box_method=d.get("box_method", "minarearect"),
            eps_std=d.get("eps_std"),
            fit=d.get("fit", "gaussian"),
            units=d.get("units", "action"),
        )

    def save(self, path: str | Path) -> None:
        from bmvtrack.io import atomic_write_text  # local: keeps this module free of project imports at load

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "MotionPrior":
        """Read a prior file written by ``analyze_motion``; errors name the file and the problem."""
        path = Path(path)
        if not path.is_file():
            raise PriorError(f"{path}: prior file not found (run `python -m bmvtrack.analyze_motion`)")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PriorError(f"{path}: not a valid JSON prior file: {exc}") from None
        missing = [k for k in ("mean", "cov") if k not in d]
        if missing:
            raise PriorError(f"{path}: prior file lacks {missing}")
        try:
            return cls.from_dict(d, source=str(path))
        except PriorError as exc:
            raise PriorError(f"{path}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise PriorError(f"{path}: malformed mean/cov: {exc}") from None

    def action_bounds(self, n_std: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
        """Box bounds μ ± n·σ, symmetric about μ, with scales kept ≥ 0.05 and sinθ inside [-1, 1].

        Symmetric, so the middle of the Box (where an agent acting in [-1, 1] starts) is the prior
        mean: clipping only the lower scale bound would move it to a large growth per frame.
        """
        half = n_std * self.std
        half[:2] = np.minimum(half[:2], np.maximum(self.mean[:2] - 0.05, 1e-3))
        half[2] = min(half[2], max(1.0 - abs(self.mean[2]), 1e-3))
        return (self.mean - half).astype(np.float32), (self.mean + half).astype(np.float32)
