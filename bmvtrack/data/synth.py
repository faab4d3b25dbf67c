"""Synthetic annotated video: the embedded default dataset of every command.

Writes the real on-disk formats, so every reader, filter and command runs on it unchanged:

- ``davis2017``: ``JPEGImages/<H>p/<seq>/00000.jpg``, ``Annotations/<H>p/<seq>/00000.png``
  (palette PNG, index = object id, 0 = background, PASCAL VOC / DAVIS colour map) and
  ``ImageSets/2017/{train,val}.txt``.
- ``youtube-vos``: ``<split>/JPEGImages/<video>/<frame>.jpg`` for every frame,
  ``<split>/Annotations/<video>/<frame>.png`` every ``annotation_step``-th frame and
  ``<split>/meta.json`` (per object: category = shape name, the annotated frames where it is
  visible); splits ``train`` and ``valid``.

Besides the formats, the generator writes ``synth_truth.json`` (the poses it drew, per object and
frame; readers ignore it) and, last of all, the completion marker ``.synth_complete.json``: a
generation that is interrupted has no marker and is redone by :func:`ensure_synthetic`.

How objects move. Each object has a pose (centre x, y; scales s_x, s_y along its own axes;
angle). Per frame the generator draws a pose *change* ``[Δs_x, Δs_y, sinθ, Δx, Δy]`` from the
configured multivariate Gaussian (MGD), smoothed in time by an AR(1) process whose stationary
law is exactly that MGD, and applies it as ``s_x ← s_x·Δs_x``, ``s_y ← s_y·Δs_y``,
``angle ← angle + asin(sinθ)``, ``centre ← centre + (Δx·W, Δy·H)``. This is deliberately
*not* the motion model's ``G_t``, whose rotation turns the centre about the image origin (a few
degrees would throw objects out of view). The true ``G_t`` between two frames is whatever the
motion model measures from the masks. The draws are also adjusted, and recorded as adjusted,
where an object would leave its allowed region (the translation is reflected back), grow or
shrink past the size bounds (the scale change is inverted), or while it performs a scripted
exit-and-return (``leave_prob``). Camera jitter shifts the whole scene per frame on top.

Determinism: one ``np.random.default_rng((seed, video_index))`` per video, no global RNG and no
time-dependent data, so the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from bmvtrack.config import ConfigError, load_config, to_dict
from bmvtrack.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

LAYOUTS = ("davis2017", "youtube-vos")
SHAPES = ("star", "blob", "polygon", "bumpy_ellipse", "two_part")
TEXTURES = ("noise", "stripes", "checker", "gradient")
MARKER_NAME = ".synth_complete.json"
TRUTH_NAME = "synth_truth.json"
DEFAULT_VIDEOS = 30
FORMAT_VERSION = 1
YTVOS_SPLITS = ("train", "valid")
DAVIS_SPLITS = ("train", "val")

_TEX_SIZE = 128  # texture side in texels
_TEX_EXTENT = 1.15  # textures cover object-local [-extent, extent]^2; shapes fit the unit disc
_SUBPIX_SHIFT = 4  # fillPoly fixed-point bits: vertices at 1/16 px, no anti-aliasing
_INNER = 0.1  # centres stay within [inner, 1 - inner] of the frame (outside a leave event)

_DEFAULT_STD = (0.03, 0.03, 0.06, 0.012, 0.012)
_DEFAULT_SCALE_CORR = 0.3


def _default_cov() -> list[list[float]]:
    std = np.asarray(_DEFAULT_STD)
    cov = np.diag(std**2)
    cov[0, 1] = cov[1, 0] = _DEFAULT_SCALE_CORR * std[0] * std[1]
    return [[round(float(v), 10) for v in row] for row in cov]


@dataclass
class SynthConfig:
    """Everything that shapes the synthetic videos (the seed and video count are arguments).

    The motion MGD is over the per-frame pose change [Δs_x, Δs_y, sinθ, Δx, Δy], with Δx, Δy
    fractions of the frame width and height (see the module docstring).
    """

    width: int = 320  # frame width in pixels
    height: int = 240  # frame height in pixels; the DAVIS resolution folder is f"{height}p"
    frames: int = 40  # frames per video
    objects: tuple[int, int] = (1, 3)  # min, max annotated objects per video (inclusive)
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))  # families, drawn uniformly
    object_size: tuple[float, float] = (0.15, 0.5)  # min, max diameter / min(width, height)
    aspect: tuple[float, float] = (0.35, 1.0)  # minor/major axis ratio at start; min kept always
    motion_mean: list[float] = field(default_factory=lambda: [1.0, 1.0, 0.0, 0.0, 0.0])  # MGD mean
    motion_cov: list[list[float]] = field(default_factory=_default_cov)  # MGD 5x5 covariance (PSD)
    motion_smoothing: float = 0.8  # AR(1) coefficient in [0, 1) of the draws; 0 = independent
    occlusion_prob: float = 0.3  # per video: an unannotated occluder bar crosses the scene
    leave_prob: float = 0.15  # per object: it drifts fully out of the frame for a while, returns
    camera_jitter_px: float = 1.0  # std (px) of the per-frame whole-scene camera shake
    noise_std: float = 2.0  # std of per-pixel sensor noise on the 0..255 scale
    max_distractors: int = 3  # most unannotated look-alike shapes in the static background
    jpeg_quality: int = 90  # JPEG quality of the frames (1..100)
    train_fraction: float = 0.8  # fraction of videos in train; the rest is val / valid
    annotation_step: int = 5  # YouTube-VOS layout: annotate frames 0, step, 2*step, ...

    def __post_init__(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"SynthConfig: key '{key}' {msg}")

        if self.width < 16 or self.height < 16:
            raise bad("width/height", f"must be >= 16, got {self.width}x{self.height}")
        if self.frames < 2:
            raise bad("frames", f"must be >= 2, got {self.frames}")
        lo, hi = self.objects
        if not 1 <= lo <= hi <= 254:
            raise bad("objects", f"must satisfy 1 <= min <= max <= 254, got {list(self.objects)}")
        if not self.shapes or any(s not in SHAPES for s in self.shapes):
            raise bad("shapes", f"must be a non-empty subset of {list(SHAPES)}, got {self.shapes}")
        lo_s, hi_s = self.object_size
        if not 0 < lo_s <= hi_s <= 1.5:
            raise bad(
                "object_size", f"must satisfy 0 < min <= max <= 1.5, got {list(self.object_size)}"
            )
        lo_a, hi_a = self.aspect
        if not 0.05 <= lo_a <= hi_a <= 1.0:
            raise bad("aspect", f"must satisfy 0.05 <= min <= max <= 1, got {list(self.aspect)}")
        if len(self.motion_mean) != 5:
            raise bad("motion_mean", f"must have 5 entries, got {len(self.motion_mean)}")
        cov = np.asarray(self.motion_cov, dtype=np.float64)
        if cov.shape != (5, 5):
            raise bad("motion_cov", f"must be 5x5, got shape {cov.shape}")
        if not np.allclose(cov, cov.T, atol=1e-12, rtol=1e-9):
            raise bad("motion_cov", "must be symmetric")
        if np.linalg.eigvalsh(cov).min() < -1e-12 * max(1.0, float(np.abs(cov).max())):
            raise bad("motion_cov", "must be positive semi-definite")
        if not 0.0 <= self.motion_smoothing < 1.0:
            raise bad("motion_smoothing", f"must be in [0, 1), got {self.motion_smoothing}")
        for key in ("occlusion_prob", "leave_prob", "train_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise bad(key, f"must be in [0, 1], got {getattr(self, key)}")
        if self.camera_jitter_px < 0 or self.noise_std < 0 or self.max_distractors < 0:
            raise bad("camera_jitter_px/noise_std/max_distractors", "must be >= 0")
        if not 1 <= self.jpeg_quality <= 100:
            raise bad("jpeg_quality", f"must be in 1..100, got {self.jpeg_quality}")
        if self.annotation_step < 1:
            raise bad("annotation_step", f"must be >= 1, got {self.annotation_step}")


# --------------------------------------------------------------------------- palette, names


def davis_palette() -> np.ndarray:
    """The 256-entry PASCAL VOC colour map DAVIS uses: 0 black, 1 (128,0,0), 2 (0,128,0), ..."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


_PALETTE_BYTES = davis_palette().tobytes()


def sequence_name(index: int) -> str:
    return f"synth-{index:04d}"


def frame_name(index: int) -> str:
    return f"{index:05d}"


def davis_resolution(height: int) -> str:
    return "480p" if height == 480 else f"{height}p"


def split_counts(videos: int, train_fraction: float) -> int:
    """Number of training videos: the first ``n_train`` sequences are train, the rest val.

    With 0 < fraction < 1 and at least two videos, both splits get at least one video.
    """
    n_train = int(round(videos * train_fraction))
    if 0.0 < train_fraction < 1.0 and videos >= 2:
        n_train = min(max(n_train, 1), videos - 1)
    return n_train


# --------------------------------------------------------------------------- motion process


class MotionProcess:
    """AR(1) draws of the 5-D pose change whose stationary law is N(mean, cov).

    ``e_1 ~ N(0, Σ)``, ``e_t = ρ·e_{t-1} + sqrt(1-ρ²)·L·z_t``, draw = mean + e_t; so every single
    draw is distributed exactly as the configured MGD while consecutive draws are correlated
    (smooth, video-like motion). ``set`` lets the simulator overwrite a component (reflections)
    so that the AR state follows what was actually applied.
    """

    def __init__(self, rng: np.random.Generator, mean: Any, cov: Any, rho: float) -> None:
        self.rng = rng
        self.mean = np.asarray(mean, dtype=np.float64)
        self.sqrt_cov = _cov_sqrt(np.asarray(cov, dtype=np.float64))
        self.rho = float(rho)
        self.e: np.ndarray | None = None

    def step(self) -> np.ndarray:
        z = self.sqrt_cov @ self.rng.standard_normal(5)
        if self.e is None:
            self.e = z
        else:
            self.e = self.rho * self.e + math.sqrt(1.0 - self.rho**2) * z
        return self.mean + self.e

    def set(self, index: int, value: float) -> None:
        assert self.e is not None
        self.e[index] = value - self.mean[index]


def _cov_sqrt(cov: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:  # PSD but singular: symmetric square root
        w, v = np.linalg.eigh(cov)
        return v * np.sqrt(np.clip(w, 0.0, None))


# --------------------------------------------------------------------------- shapes, textures


def _bumpy_closed_curve(radius_fn: Any, n: int = 72) -> np.ndarray:
    phi = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = radius_fn(phi)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def _periodic_interp(values: np.ndarray, n_out: int) -> np.ndarray:
    """Smooth periodic interpolation (Catmull-Rom) of control values on a circle."""
    k = len(values)
    t = np.arange(n_out) * k / n_out
    i = np.floor(t).astype(int)
    f = t - i
    p0, p1, p2, p3 = (values[(i + d) % k] for d in (-1, 0, 1, 2))
    return 0.5 * (
        2 * p1
        + (-p0 + p2) * f
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f**2
        + (-p0 + 3 * p1 - 3 * p2 + p3) * f**3
    )


def make_shape(kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Polygon parts (each N×2, object-local coordinates) of a random shape within the unit disc."""
    if kind == "star":
        n = int(rng.integers(5, 13))
        r_out, r_in = rng.uniform(0.85, 1.0), rng.uniform(0.35, 0.65)
        ang = (np.arange(2 * n) + rng.uniform(-0.15, 0.15, 2 * n)) * np.pi / n
        rad = np.where(np.arange(2 * n) % 2 == 0, r_out, r_in) * rng.uniform(0.88, 1.0, 2 * n)
        parts = [np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)]
    elif kind == "polygon":
        n = int(rng.integers(5, 13))
        ang = np.sort((np.arange(n) + rng.uniform(-0.35, 0.35, n)) * 2 * np.pi / n)
        rad = rng.uniform(0.45, 1.0, n)
        parts = [np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)]
    elif kind == "blob":
        n = int(rng.integers(5, 13))
        ctrl = rng.uniform(0.5, 1.0, n)
        rad = np.clip(_periodic_interp(ctrl, 64), 0.3, None)
        phi = np.arange(64) * 2 * np.pi / 64
        parts = [np.stack([rad * np.cos(phi), rad * np.sin(phi)], axis=1)]
    elif kind == "bumpy_ellipse":
        k, amp, ph = int(rng.integers(3, 9)), rng.uniform(0.04, 0.12), rng.uniform(0, 2 * np.pi)
        parts = [_bumpy_closed_curve(lambda p: 1.0 + amp * np.sin(k * p + ph))]
    elif kind == "two_part":
        d = rng.uniform(0.45, 0.6)
        parts = []
        for sign in (-1.0, 1.0):
            r, asp = rng.uniform(0.32, 0.48), rng.uniform(0.6, 1.0)
            k, amp, ph = int(rng.integers(3, 7)), rng.uniform(0.0, 0.1), rng.uniform(0, 2 * np.pi)
            lobe = _bumpy_closed_curve(
                lambda p, r=r, k=k, amp=amp, ph=ph: r * (1.0 + amp * np.sin(k * p + ph)), 48
            )
            lobe[:, 1] *= asp
            lobe[:, 0] += sign * d
            parts.append(lobe)
        if rng.random() < 0.5:  # a thin neck joins the two lobes
            hw = rng.uniform(0.05, 0.1)
            parts.append(np.array([[-d, -hw], [d, -hw], [d, hw], [-d, hw]]))
    else:
        raise ValueError(f"unknown shape {kind!r}; known: {SHAPES}")
    radius = max(float(np.linalg.norm(p, axis=1).max()) for p in parts)
    return [p / radius for p in parts]


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    c1 = rng.uniform(0, 255, 3)
    for _ in range(20):
        c2 = rng.uniform(0, 255, 3)
        if np.linalg.norm(c2 - c1) > 90:
            break
    return c1, c2


def _pattern(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """Float (h, w, 3) image in 0..255 of the given texture kind."""
    c1, c2 = _two_colours(rng)
    s = max(h, w)
    v, u = np.mgrid[0:h, 0:w].astype(np.float32) / s
    phi = rng.uniform(0, np.pi)
    along = u * math.cos(phi) + v * math.sin(phi)
    if kind == "noise":
        g = int(rng.integers(3, 7))
        low = rng.random((g, g)).astype(np.float32)
        t = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == "stripes":
        f = rng.uniform(3.0, 10.0)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * f * along + rng.uniform(0, 2 * np.pi))
    elif kind == "checker":
        k = rng.uniform(3.0, 8.0)
        across = -u * math.sin(phi) + v * math.cos(phi)
        t = ((np.floor(along * k) + np.floor(across * k)) % 2).astype(np.float32)
    elif kind == "gradient":
        cx, cy = rng.uniform(0, 1, 2)
        radial = np.sqrt((u - cx) ** 2 + (v - cy) ** 2)
        t = np.clip(0.6 * along + 0.6 * radial, 0, 1)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    return img.astype(np.float32)


def make_texture(rng: np.random.Generator, kind: str, size: int = _TEX_SIZE) -> np.ndarray:
    """uint8 (size, size, 3) object texture: a pattern plus a colour wash and fine static grain."""
    img = _pattern(rng, kind, size, size)
    wash = cv2.resize(
        rng.uniform(-35, 35, (3, 3, 3)).astype(np.float32),
        (size, size),
        interpolation=cv2.INTER_CUBIC,
    )
    grain = rng.normal(0.0, 6.0, (size, size, 3)).astype(np.float32)
    return np.clip(img + wash + grain, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """uint8 (h, w, 3): low-frequency colour noise plus a low-contrast texture layer."""
    gh, gw = int(rng.integers(3, 7)), int(rng.integers(3, 7))
    low = cv2.resize(
        rng.uniform(20, 235, (gh, gw, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    layer = _pattern(rng, str(rng.choice(TEXTURES)), h, w)
    alpha = rng.uniform(0.2, 0.5)
    grain = rng.normal(0.0, 5.0, (h, w, 3)).astype(np.float32)
    return np.clip((1 - alpha) * low + alpha * layer + grain, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- rendering


def _pose_matrix(pose: np.ndarray) -> np.ndarray:
    _, _, sx, sy, a = pose
    ca, sa = math.cos(a), math.sin(a)
    return np.array([[ca * sx, -sa * sy], [sa * sx, ca * sy]])


def _render(
    img: np.ndarray,
    labels: np.ndarray | None,
    parts: list[np.ndarray],
    pose: np.ndarray,
    offset: tuple[float, float],
    texture: np.ndarray,
    value: int,
) -> None:
    """Paint a textured shape at ``pose`` (+ camera offset) into ``img``, ``value`` into ``labels``.

    The mask is the polygon rasterised without anti-aliasing; the RGB is the texture warped with
    the same affine map, copied exactly on the mask's pixels.
    """
    h, w = img.shape[:2]
    a = _pose_matrix(pose)
    c = np.array([pose[0] + offset[0], pose[1] + offset[1]])
    pts = [p @ a.T + c for p in parts]
    allp = np.concatenate(pts)
    x0, y0 = (max(int(math.floor(v)) - 1, 0) for v in allp.min(axis=0))
    x1 = min(int(math.ceil(allp[:, 0].max())) + 2, w)
    y1 = min(int(math.ceil(allp[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    origin = np.array([x0, y0], dtype=np.float64)
    for p in pts:
        fixed = np.round((p - origin) * (1 << _SUBPIX_SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIX_SHIFT)
    sel = mask.astype(bool)
    if not sel.any():
        return
    t = texture.shape[0]
    ak = a * (2.0 * _TEX_EXTENT / t)
    trans = c - origin - ak @ np.array([(t - 1) / 2.0, (t - 1) / 2.0])
    m = np.hstack([ak, trans[:, None]])
    warped = cv2.warpAffine(
        texture, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    img[y0:y1, x0:x1][sel] = warped[sel]
    if labels is not None:
        labels[y0:y1, x0:x1][sel] = value


def _half_extent(pose: np.ndarray) -> tuple[float, float]:
    """Half width and height of the axis-aligned box around the pose's ellipse (bounds the shape)"""
    _, _, sx, sy, a = pose
    ca, sa = math.cos(a), math.sin(a)
    return math.hypot(sx * ca, sy * sa), math.hypot(sx * sa, sy * ca)


# --------------------------------------------------------------------------- simulation


@dataclass
class _Object:
    oid: int
    shape: str
    texture_kind: str
    parts: list[np.ndarray]
    texture: np.ndarray
    poses: np.ndarray  # (F, 5): cx, cy, sx, sy, angle (radians)
    motion: np.ndarray  # (F-1, 5): applied pose change [Δs_x, Δs_y, sinθ, Δx, Δy]
    leaves: bool


def _simulate(
    rng: np.random.Generator, cfg: SynthConfig, pose0: np.ndarray, leaves: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Poses of one object over ``cfg.frames`` frames, and the pose changes actually applied."""
    w, h, n = cfg.width, cfg.height, cfg.frames
    dims = (w, h)
    short = min(w, h)
    size_lo = cfg.object_size[0] * short / 2  # half-diameter bounds of the major axis, px
    size_hi = cfg.object_size[1] * short / 2
    min_axis = 2.0  # px: the minor half-axis never falls below this
    margin = 4.0 * cfg.camera_jitter_px + 2.0  # px beyond the border for "fully out of the frame"
    proc = MotionProcess(rng, cfg.motion_mean, cfg.motion_cov, cfg.motion_smoothing)
    # leave plan, drawn for every object so that the RNG stream does not depend on the coin
    leave_start = int(rng.integers(1, max(2, n // 2)))
    leave_speed = float(rng.uniform(0.03, 0.06))
    leave_hold = int(rng.integers(2, max(3, n // 5 + 1)))
    phase = "normal"
    axis, sign, ramp, hold = 0, 1.0, 0, 0

    poses = np.empty((n, 5))
    poses[0] = pose0
    motion = np.empty((max(n - 1, 0), 5))
    for t in range(1, n):
        prev = poses[t - 1]
        d = proc.step()
        # scale: keep positive, within the size bounds and a sane aspect ratio
        for i in (0, 1):
            if d[i] < 0.2:
                d[i] = 0.2
                proc.set(i, d[i])
        sx, sy = prev[2] * d[0], prev[3] * d[1]
        if max(sx, sy) > size_hi:  # too big: no axis may grow
            flip = [i for i in (0, 1) if d[i] > 1.0]
        elif max(sx, sy) < size_lo or min(sx, sy) < min_axis:  # too small: no axis may shrink
            flip = [i for i in (0, 1) if d[i] < 1.0]
        elif min(sx, sy) < cfg.aspect[0] * max(sx, sy):  # too thin
            # the minor axis may not shrink, the major may not grow
            minor = 0 if sx < sy else 1
            flip = [i for i in (0, 1) if (d[i] < 1.0) == (i == minor)]
        else:
            flip = []
        for i in flip:
            d[i] = 1.0 / d[i]
            proc.set(i, d[i])
        # translation: reflect back into the inner region, or run the leave script
        if leaves and phase == "normal" and t == leave_start:
            cx, cy = prev[0], prev[1]
            dist = [cx, w - cx, cy, h - cy]
            k = int(np.argmin(dist))
            axis, sign, ramp, phase = k // 2, (-1.0 if k % 2 == 0 else 1.0), 0, "exit"
        for ax in (0, 1):
            idx = 3 + ax
            if phase in ("exit", "away", "return") and ax == axis:
                continue
            c_new = prev[ax] + d[idx] * dims[ax]
            if (c_new < _INNER * dims[ax] and d[idx] < 0) or (
                c_new > (1 - _INNER) * dims[ax] and d[idx] > 0
            ):
                d[idx] = -d[idx]
                proc.set(idx, d[idx])
        if phase in ("exit", "return"):
            ramp += 1
            push = leave_speed * min(1.0, ramp / 3.0) * (sign if phase == "exit" else -sign)
            d[3 + axis] += push
        elif phase == "away":
            # stay out of view: the object's own drift may not carry it back in
            if d[3 + axis] * sign < 0:
                d[3 + axis] = -d[3 + axis]
                proc.set(3 + axis, d[3 + axis])
        d[2] = float(np.clip(d[2], -1.0, 1.0))
        cur = np.array(
            [
                prev[0] + d[3] * w,
                prev[1] + d[4] * h,
                prev[2] * d[0],
                prev[3] * d[1],
                prev[4] + math.asin(d[2]),
            ]
        )
        poses[t] = cur
        motion[t - 1] = d
        if phase == "exit":
            ext = _half_extent(cur)[axis]
            c = cur[axis]
            if (sign < 0 and c + ext < -margin) or (sign > 0 and c - ext > dims[axis] + margin):
                phase, hold = "away", leave_hold
        elif phase == "away":
            hold -= 1
            if hold <= 0:
                phase, ramp = "return", 0
        elif phase == "return":
            if _INNER * dims[axis] <= cur[axis] <= (1 - _INNER) * dims[axis]:
                phase = "done"
    return poses, motion


def _place_objects(rng: np.random.Generator, cfg: SynthConfig, count: int) -> list[np.ndarray]:
    """Initial poses, spread out so that no object starts hidden behind another."""
    w, h = cfg.width, cfg.height
    short = min(w, h)
    poses: list[np.ndarray] = []
    for _ in range(count):
        best, best_gap = None, -np.inf
        for _try in range(20):
            major = rng.uniform(*cfg.object_size) * short / 2
            asp = rng.uniform(*cfg.aspect)
            sx, sy = (major, major * asp) if rng.random() < 0.5 else (major * asp, major)
            cx = rng.uniform(_INNER + 0.05, 0.95 - _INNER) * w
            cy = rng.uniform(_INNER + 0.05, 0.95 - _INNER) * h
            pose = np.array([cx, cy, sx, sy, rng.uniform(-np.pi, np.pi)])
            gap = min(
                (
                    math.hypot(cx - p[0], cy - p[1]) - 0.6 * (max(sx, sy) + max(p[2], p[3]))
                    for p in poses
                ),
                default=np.inf,
            )
            if gap > best_gap:
                best, best_gap = pose, gap
            if gap >= 0:
                break
        assert best is not None
        poses.append(best)
    return poses


@dataclass
class VideoData:
    """One rendered video: RGB frames, label maps (object ids) and what was drawn."""

    frames: list[np.ndarray]
    labels: list[np.ndarray]
    objects: list[_Object]
    camera: np.ndarray  # (F, 2) camera offsets in px
    occluder: bool

    def truth(self) -> dict[str, Any]:
        def r(a: np.ndarray) -> list:
            return np.round(a, 6).tolist()

        objs = {}
        for o in self.objects:
            poses = o.poses.copy()
            poses[:, 4] = np.degrees(poses[:, 4])
            objs[str(o.oid)] = {
                "shape": o.shape,
                "texture": o.texture_kind,
                "leaves": o.leaves,
                "pose_fields": ["cx", "cy", "sx", "sy", "angle_deg"],
                "poses": r(poses),
                "motion_fields": ["ds_x", "ds_y", "sin_theta", "dx", "dy"],
                "motion": r(o.motion),
                "pixels": [int((lab == o.oid).sum()) for lab in self.labels],
            }
        return {"objects": objs, "camera": r(self.camera), "occluder": self.occluder}


def generate_video(rng: np.random.Generator, cfg: SynthConfig) -> VideoData:
    """Draw and render one video from ``rng`` (all randomness comes from it)."""
    w, h, n = cfg.width, cfg.height, cfg.frames
    short = min(w, h)
    pad = int(math.ceil(4 * cfg.camera_jitter_px)) + 2
    canvas = _background(rng, h + 2 * pad, w + 2 * pad)
    for _ in range(int(rng.integers(0, cfg.max_distractors + 1))):
        parts = make_shape(str(rng.choice(cfg.shapes)), rng)
        tex = make_texture(rng, str(rng.choice(TEXTURES)))
        major = (
            rng.uniform(0.5, 1.0) * cfg.object_size[0] * short / 2
            + rng.uniform(0, 0.5) * cfg.object_size[1] * short / 2
        )
        pose = np.array(
            [
                rng.uniform(0, w + 2 * pad),
                rng.uniform(0, h + 2 * pad),
                major,
                major * rng.uniform(*cfg.aspect),
                rng.uniform(-np.pi, np.pi),
            ]
        )
        _render(canvas, None, parts, pose, (0.0, 0.0), tex, 0)

    count = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    objects: list[_Object] = []
    for oid, pose0 in enumerate(_place_objects(rng, cfg, count), start=1):
        shape = str(rng.choice(cfg.shapes))
        tkind = str(rng.choice(TEXTURES))
        parts = make_shape(shape, rng)
        tex = make_texture(rng, tkind)
        leaves = bool(rng.random() < cfg.leave_prob) and n >= 8
        poses, motion = _simulate(rng, cfg, pose0, leaves)
        objects.append(_Object(oid, shape, tkind, parts, tex, poses, motion, leaves))
    z_order = [objects[i] for i in rng.permutation(count)]  # later ones are painted on top

    occluder = bool(rng.random() < cfg.occlusion_prob)
    if occluder:
        bar_parts = [
            np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) / math.sqrt(2.0)
        ]
        bar_tex = make_texture(rng, str(rng.choice(TEXTURES)))
        vertical = rng.random() < 0.5
        bar_angle = (np.pi / 2 if vertical else 0.0) + rng.uniform(-0.4, 0.4)
        length = 2.0 * math.hypot(w, h) * math.sqrt(2.0)
        thick = rng.uniform(0.05, 0.1) * short * math.sqrt(2.0) / 2
        normal = np.array([-math.sin(bar_angle), math.cos(bar_angle)])
        centre = np.array([rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h])
        speed = rng.uniform(0.015, 0.04) * short * (1 if rng.random() < 0.5 else -1)
        t_cross = rng.uniform(0.2, 0.8) * (n - 1)

    camera = (
        rng.normal(0.0, cfg.camera_jitter_px, (n, 2)).clip(-(pad - 1), pad - 1)
        if cfg.camera_jitter_px > 0
        else np.zeros((n, 2))
    )
    frames, labels = [], []
    for t in range(n):
        ox, oy = float(camera[t, 0]), float(camera[t, 1])
        shift = np.array([[1.0, 0.0, ox - pad], [0.0, 1.0, oy - pad]])
        img = cv2.warpAffine(
            canvas, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        lab = np.zeros((h, w), dtype=np.uint8)
        for o in z_order:
            _render(img, lab, o.parts, o.poses[t], (ox, oy), o.texture, o.oid)
        if occluder:
            c = centre + normal * speed * (t - t_cross)
            pose = np.array([c[0], c[1], length / 2, thick, bar_angle])
            _render(img, lab, bar_parts, pose, (ox, oy), bar_tex, 0)
        if cfg.noise_std > 0:
            noisy = (
                img.astype(np.float32)
                + rng.standard_normal((h, w, 3), dtype=np.float32) * cfg.noise_std
            )
            img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        frames.append(img)
        labels.append(lab)
    return VideoData(frames, labels, objects, np.asarray(camera, dtype=np.float64), occluder)


# --------------------------------------------------------------------------- encoding, writing


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def encode_palette_png(labels: np.ndarray) -> bytes:
    """Palette ("P") PNG whose pixel index is the object id, with the DAVIS colour map."""
    h, w = labels.shape
    im = Image.frombytes("P", (w, h), np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    im.putpalette(_PALETTE_BYTES)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _stale_paths(out: Path) -> list[Path]:
    """Everything a previous generation may have left (only paths this module creates)."""
    found: list[Path] = []
    for kind in ("JPEGImages", "Annotations"):
        found += sorted((out / kind).glob("*/synth-*"))
        for split in YTVOS_SPLITS:
            found += sorted((out / split / kind).glob("synth-*"))
    found += [out / "ImageSets" / "2017" / f"{s}.txt" for s in DAVIS_SPLITS]
    found += [out / s / "meta.json" for s in YTVOS_SPLITS]
    found.append(out / TRUTH_NAME)
    return [p for p in found if p.exists()]


def _marker_payload(layout: str, videos: int, seed: int, cfg: SynthConfig) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "layout": layout,
        "videos": videos,
        "seed": seed,
        "config": to_dict(cfg),
    }


def generate_dataset(
    out_dir: str | Path,
    layout: str,
    videos: int,
    seed: int,
    cfg: SynthConfig | None = None,
    progress: bool = True,
) -> Path:
    """Generate ``videos`` synthetic videos into ``out_dir`` in ``layout``; return ``out_dir``.

    Any previous synthetic output in ``out_dir`` (and its completion marker) is removed first;
    the marker is written last.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    cfg = cfg if cfg is not None else SynthConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_NAME).unlink(missing_ok=True)
    for p in _stale_paths(out):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()

    n_train = split_counts(videos, cfg.train_fraction)
    names = [sequence_name(i) for i in range(videos)]
    res = davis_resolution(cfg.height)
    step = cfg.annotation_step
    meta: dict[str, dict[str, Any]] = {s: {} for s in YTVOS_SPLITS}
    truth: dict[str, Any] = {}
    for i in tqdm(range(videos), desc=f"synth {layout}", unit="video", disable=not progress):
        rng = np.random.default_rng((int(seed), i))
        video = generate_video(rng, cfg)
        name = names[i]
        is_train = i < n_train
        if layout == "davis2017":
            img_dir, ann_dir = out / "JPEGImages" / res / name, out / "Annotations" / res / name
            annotated = range(cfg.frames)
        else:
            split = YTVOS_SPLITS[0] if is_train else YTVOS_SPLITS[1]
            img_dir, ann_dir = out / split / "JPEGImages" / name, out / split / "Annotations" / name
            annotated = range(0, cfg.frames, step)
        for t, frame in enumerate(video.frames):
            atomic_write_bytes(
                img_dir / f"{frame_name(t)}.jpg", encode_jpeg(frame, cfg.jpeg_quality)
            )
        for t in annotated:
            atomic_write_bytes(
                ann_dir / f"{frame_name(t)}.png", encode_palette_png(video.labels[t])
            )
        if layout == "youtube-vos":
            objs = {}
            for o in video.objects:
                present = [
                    frame_name(t) for t in annotated if bool((video.labels[t] == o.oid).any())
                ]
                if present:
                    objs[str(o.oid)] = {"category": o.shape, "frames": present}
            meta[split][name] = {"objects": objs}
        record = video.truth()
        record["split"] = (DAVIS_SPLITS if layout == "davis2017" else YTVOS_SPLITS)[
            0 if is_train else 1
        ]
        truth[name] = record

    if layout == "davis2017":
        sets = out / "ImageSets" / "2017"
        atomic_write_text(sets / "train.txt", "".join(f"{s}\n" for s in names[:n_train]))
        atomic_write_text(sets / "val.txt", "".join(f"{s}\n" for s in names[n_train:]))
    else:
        for split in YTVOS_SPLITS:
            atomic_write_text(
                out / split / "meta.json", json.dumps({"videos": meta[split]}, indent=1)
            )
    atomic_write_text(
        out / TRUTH_NAME, json.dumps({"layout": layout, "seed": seed, "videos": truth})
    )
    payload = _marker_payload(layout, videos, seed, cfg)
    payload["splits"] = {"train": names[:n_train], "val": names[n_train:]}
    atomic_write_text(out / MARKER_NAME, json.dumps(payload, indent=1, sort_keys=True))
    return out


def default_synthetic(progress: bool = True) -> Path:
    """The embedded synthetic default (``bmvtrack.paths.SYNTH_DIR``, DAVIS 2017 layout), generated
    on first use: the one place every command and the environment get it from."""
    from bmvtrack import paths

    return ensure_synthetic(paths.SYNTH_DIR, layout="davis2017", progress=progress)


def ensure_synthetic(
    out_dir: str | Path,
    layout: str = "davis2017",
    videos: int = DEFAULT_VIDEOS,
    seed: int = 0,
    cfg: SynthConfig | None = None,
    progress: bool = True,
) -> Path:
    """Return ``out_dir`` holding this synthetic dataset, generating it only when needed.

    Generation happens when the completion marker is absent (never generated, or interrupted),
    or when it records different arguments (layout, videos, seed or config): then the old
    synthetic files are replaced, with a log message.
    """
    cfg = cfg if cfg is not None else SynthConfig()
    out = Path(out_dir)
    # two commands started together (e.g. two pretraining runs on the default) must not write the
    # same dataset at once: the second waits here and then finds it complete
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.generate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(out, layout, videos, seed, cfg, progress)


def _ensure_locked(out: Path, layout: str, videos: int, seed: int, cfg: SynthConfig, progress: bool) -> Path:
    marker = out / MARKER_NAME
    if marker.is_file():
        try:
            found = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            found = None
        want = _marker_payload(layout, videos, seed, cfg)
        if isinstance(found, dict) and all(found.get(k) == v for k, v in want.items()):
            return out
        log.warning("%s holds a different synthetic dataset; regenerating it", out)
    return generate_dataset(out, layout, videos, seed, cfg, progress=progress)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bmvtrack.data.synth",
        description="Generate the synthetic annotated-video dataset (DAVIS 2017 / YouTube-VOS).",
    )
    ap.add_argument("--out", required=True, type=Path, help="output folder (the dataset root)")
    ap.add_argument("--layout", choices=LAYOUTS, default="davis2017", help="on-disk format")
    ap.add_argument("--videos", type=int, default=DEFAULT_VIDEOS, help="number of videos")
    ap.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same bytes")
    ap.add_argument(
        "--config",
        type=Path,
        default=None,
        help="SynthConfig YAML (e.g. configs/synth_default.yaml)",
    )
    ap.add_argument(
        "--frames", type=int, default=None, help="frames per video (overrides the config)"
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, repeatable",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    overrides = list(args.overrides) + (
        [f"frames={args.frames}"] if args.frames is not None else []
    )
    try:
        cfg = load_config(SynthConfig, args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    out = generate_dataset(
        args.out, args.layout, args.videos, args.seed, cfg, progress=not args.quiet
    )
    secs = time.perf_counter() - start
    n_frames = args.videos * cfg.frames
    print(
        f"wrote {args.videos} videos ({n_frames} frames, {cfg.width}x{cfg.height}, "
        f"layout {args.layout}) "
        f"to {out} in {secs:.1f} s ({n_frames / max(secs, 1e-9):.1f} frames/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
