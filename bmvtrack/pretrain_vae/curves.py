"""The loss curves of a pretraining run (the paper's Figs 11–12), drawn from its ``metrics.jsonl``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bmvtrack.io import atomic_save
from bmvtrack.logging_wandb import read_metrics


def _dedup(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key``; a step logged twice (a resumed run) keeps its last value."""
    seen: dict[int, float] = {}
    for r in rows:
        if key in r and r.get("step") is not None and r[key] is not None:
            seen[int(r["step"])] = float(r[key])
    steps = np.array(sorted(seen), dtype=float)
    return steps, np.array([seen[int(s)] for s in steps], dtype=float)


def plot_loss_curves(run_dir: str | Path) -> Path | None:
    """``loss_curves.png``: total, construction and KL loss over steps, train and val (Figs 11–12)."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not any("train/loss" in r for r in rows):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (title, tk, vk) in zip(axes, (("total loss", "train/loss", "val/loss"),
                                          ("construction loss", "train/cons", "val/cons"),
                                          ("KL divergence", "train/kl", "val/kl"))):
        s, v = _dedup(rows, tk)
        ax.plot(s, v, lw=0.8, alpha=0.5, color="C0", label="train")
        if len(v) >= 5:
            k = max(len(v) // 20, 1)
            smooth = np.convolve(np.pad(v, (k, k), mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
            ax.plot(s, smooth, lw=1.6, color="C0", label="train (smoothed)")
        s2, v2 = _dedup(rows, vk)
        if len(v2):
            ax.plot(s2, v2, "o-", ms=3, color="C1", label="val")
        allv = np.concatenate([v, v2])
        if len(allv) and (allv > 0).all() and allv.max() / max(allv.min(), 1e-12) > 20:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{run_dir.name}: loss curves", fontsize=10)
    fig.tight_layout()
    out = run_dir / "loss_curves.png"
    atomic_save(out, lambda buf: fig.savefig(buf, format="png", dpi=90))
    plt.close(fig)
    return out
