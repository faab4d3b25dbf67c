"""Measuring real motion on a dataset: G_t samples, the MGD prior, and the oracle replay.

The oracle replay is the motion model's own check: start from the first annotated box and apply
the ground-truth G_t of every step; every later box must be reproduced (rotated IoU ≈ 1). The
printed typo in the paper's equation fails it; a wrong angle convention does not (it has its own
test), which is why the per-step |θ| is reported too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bmvtrack.data.readers import Track, VideoDataset
from bmvtrack.motion import (
    ACTION_NAMES, BoxMethod, MotionPrior, RBox, apply_motion, boxes_from_masks, relative_between, rotated_iou,
    track_motions,
)


@dataclass
class TrackMotion:
    """Boxes and G_t of one track."""

    track: Track
    boxes: list[RBox | None]
    motions: list[np.ndarray | None]


def track_boxes(ds: VideoDataset, track: Track, method: BoxMethod = "minarearect") -> list[RBox | None]:
    """Canonical rotated boxes of every frame of a track (None where the object is absent)."""
    masks = (ds.mask(track, i) if track.present[i] else None for i in range(len(track)))
    return boxes_from_masks(masks, method)


def measure_dataset(ds: VideoDataset, method: BoxMethod = "minarearect", progress: bool = True) -> list[TrackMotion]:
    """Boxes and motions of every track of ``ds``."""
    out = []
    for tr in tqdm(ds.tracks(), desc=f"motion ({method})", disable=not progress, leave=False):
        boxes = track_boxes(ds, tr, method)
        h, w = tr.size
        out.append(TrackMotion(tr, boxes, track_motions(boxes, w, h)))
    return out


def motion_samples(measured: list[TrackMotion]) -> np.ndarray:
    """All G_t of all tracks as an (N, 5) array."""
    rows = [m for tm in measured for m in tm.motions if m is not None]
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def relative_samples(measured: list[TrackMotion], context: float = 0.25) -> np.ndarray:
    """All box-relative motions (``bmvtrack.motion.relative_between``) of all tracks, (N, 5)."""
    rows = [relative_between(a, b, context) for tm in measured for a, b in zip(tm.boxes[:-1], tm.boxes[1:])
            if a is not None and b is not None]
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def fit_prior(measured: list[TrackMotion], source: str, method: str, fit: str = "gaussian",
              units: str = "action", context: float = 0.25) -> MotionPrior:
    """The MGD of the measured motion, over G_t (``units="action"``) or box-relative motion."""
    x = relative_samples(measured, context) if units == "relative" else motion_samples(measured)
    return MotionPrior.from_samples(x, source=source, box_method=method, fit=fit, units=units)


def oracle_replay(tm: TrackMotion) -> list[float]:
    """Rotated IoU of replayed vs annotated boxes for every frame after the first.

    The replay restarts from the annotation after a frame where the object is absent (no G_t
    exists across the gap); absent frames themselves are not scored.
    """
    h, w = tm.track.size
    ious: list[float] = []
    cur = tm.boxes[0]
    for g, gt in zip(tm.motions, tm.boxes[1:]):
        if g is None:
            cur = gt
            continue
        cur = apply_motion(cur, g, w, h)
        ious.append(rotated_iou(cur, gt))
    return ious


def describe(prior: MotionPrior) -> str:
    """A short human-readable summary of a prior."""
    lines = [f"source: {prior.source}  (box method {prior.box_method}, {prior.fit} fit, {prior.count} samples)"]
    lines.append("        " + "  ".join(f"{n:>9s}" for n in ACTION_NAMES))
    lines.append("mean    " + "  ".join(f"{v:9.4f}" for v in prior.mean))
    lines.append("std     " + "  ".join(f"{v:9.4f}" for v in prior.std))
    for i, n in enumerate(ACTION_NAMES):
        lines.append(f"Σ {n:>5s} " + "  ".join(f"{v:9.5f}" for v in prior.cov[i]))
    return "\n".join(lines)


def plot_prior(prior: MotionPrior, samples: np.ndarray, path: str | Path, reference: MotionPrior | None = None) -> None:
    """PNG: the five marginals (histogram + fitted normal) and the correlation matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bmvtrack.io import atomic_save

    fig, axes = plt.subplots(1, 6, figsize=(22, 3.6))
    for i, name in enumerate(ACTION_NAMES):
        ax = axes[i]
        x = samples[:, i]
        lo, hi = np.quantile(x, [0.005, 0.995]) if len(x) else (0, 1)
        span = max(hi - lo, 1e-6)
        ax.hist(x, bins=60, range=(lo - 0.1 * span, hi + 0.1 * span), density=True, alpha=0.6)
        grid = np.linspace(lo - 0.1 * span, hi + 0.1 * span, 200)
        for p, style, label in ((prior, "-", "fit"), (reference, "--", "paper")):
            if p is None:
                continue
            mu, sd = p.mean[i], p.std[i]
            ax.plot(grid, np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), style, label=label)
        ax.set_title(f"{name}: μ={prior.mean[i]:.3f} σ={prior.std[i]:.3f}", fontsize=9)
        ax.legend(fontsize=7)
    corr = prior.cov / np.outer(prior.std, prior.std)
    im = axes[5].imshow(corr, vmin=-1, vmax=1, cmap="coolwarm")
    axes[5].set_xticks(range(5), ACTION_NAMES, rotation=45, fontsize=7)
    axes[5].set_yticks(range(5), ACTION_NAMES, fontsize=7)
    for (r, c), v in np.ndenumerate(corr):
        axes[5].text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6)
    axes[5].set_title("correlation", fontsize=9)
    fig.colorbar(im, ax=axes[5], fraction=0.046)
    fig.suptitle(f"Motion prior — {prior.source} ({prior.count} frame pairs, {prior.box_method})", fontsize=10)
    fig.tight_layout()
    atomic_save(path, lambda buf: fig.savefig(buf, format="png", dpi=90))
    plt.close(fig)


from bmvtrack.analyze_motion.command import main as main  # noqa: E402  (the command line over this library)
