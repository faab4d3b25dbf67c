"""Markdown table of RL runs, mean ± std (population) over seeds; runs named ``<variant>-s<seed>``.

    python scripts/summarize_rl.py runs/exp                              # training runs' last held-out evaluation
    python scripts/summarize_rl.py runs/evaluate/NAME/overall.csv ...    # trackers of one-pass evaluations
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from bmvtrack.logging_wandb import read_metrics
from run_names import seed_variant  # scripts/ is on the path when run as a script

EVAL_COLUMNS = ["success_auc", "precision_20", "success_auc_bounds", "success_auc_rot", "mean_iou_rot"]


def mean_std(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std():.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def summarize_runs(folder: str) -> None:
    groups: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for run in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        evals = [r for r in read_metrics(run) if "eval/mean_iou" in r and "train/actor_loss" not in r]
        if not evals:
            continue
        last = evals[-1]
        variant = seed_variant(run.name)
        groups[variant].append((last["eval/mean_iou"], last["eval/success_auc"], int(last["step"])))
    print("| agent | seeds | env steps | held-out mean rotated IoU | held-out success AUC (rot) |")
    print("|---|---|---|---|---|")
    for variant, rows in groups.items():
        a = np.array(rows)
        print(f"| {variant} | {len(a)} | {int(a[:, 2].mean())} | {mean_std(a[:, 0])} | {mean_std(a[:, 1])} |")


def summarize_evaluations(paths: list[str]) -> None:
    """Trackers of ``bmvtrack.evaluate``'s overall.csv files, seeds of one variant pooled."""
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for path in paths:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                groups[seed_variant(row["tracker"])].append(row)
    print("| tracker | seeds | AUC | prec@20 | AUC bounds | AUC rot | mIoU rot | losses |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, rows in groups.items():
        cells = [mean_std(np.array([float(r[c]) for r in rows])) if c in rows[0] else "—" for c in EVAL_COLUMNS]
        losses = sorted(int(r["losses"]) for r in rows)
        span = f"{losses[0]}" if losses[0] == losses[-1] else f"{losses[0]}–{losses[-1]}"
        print(f"| {variant} | {len(rows)} | {' | '.join(cells)} | {span} |")


if __name__ == "__main__":
    args = sys.argv[1:] or ["runs/exp"]
    if all(a.endswith(".csv") for a in args):
        summarize_evaluations(args)
    else:
        summarize_runs(args[0])
