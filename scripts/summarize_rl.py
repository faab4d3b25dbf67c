"""Markdown table of the RL runs in a folder: final held-out evaluation, mean ± std over seeds.

    python scripts/summarize_rl.py runs/exp
Runs named ``<variant>-s<seed>`` are grouped by variant.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from bmvtrack.logging_wandb import read_metrics


def main(folder: str) -> None:
    groups: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for run in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        evals = [r for r in read_metrics(run) if "eval/mean_iou" in r and "train/actor_loss" not in r]
        if not evals:
            continue
        last = evals[-1]
        variant = re.sub(r"-s\d+$", "", run.name)
        groups[variant].append((last["eval/mean_iou"], last["eval/success_auc"], int(last["step"])))
    print("| agent | seeds | env steps | held-out mean rotated IoU | held-out success AUC (rot) |")
    print("|---|---|---|---|---|")
    for variant, rows in groups.items():
        a = np.array(rows)
        fmt = (lambda c: f"{a[:, c].mean():.3f} ± {a[:, c].std():.3f}") if len(a) > 1 else (lambda c: f"{a[0, c]:.3f}")
        print(f"| {variant} | {len(a)} | {int(a[:, 2].mean())} | {fmt(0)} | {fmt(1)} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/exp")
