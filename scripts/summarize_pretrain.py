"""Markdown table of the pretraining runs in a folder (scripts/run_pretrain_experiments.sh):
deterministic DAVIS dev/val J&F of each run's final checkpoint, and mean ± std per variant.

    python scripts/summarize_pretrain.py runs/pexp
Runs named ``<variant>-s<seed>`` are grouped by variant.
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from run_names import seed_variant  # scripts/ is on the path when run as a script


def overall(path: Path) -> dict[str, float] | None:
    """The ``overall`` row of an evaluate_vae CSV (J, F, J&F ×100), or None when absent."""
    if not path.exists():
        return None
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["sequence"] == "overall":
                return {k: 100.0 * float(row[k]) for k in ("J", "F", "JF")}
    return None


def main(folder: str) -> None:
    groups: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    print("| run | J (gt crop) | F | J&F (gt crop) | J&F (perturbed crop) |")
    print("|---|---|---|---|---|")
    for run in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        gt = overall(run / "eval" / "vae_eval_gt.csv")
        pert = overall(run / "eval" / "vae_eval_perturbed.csv")
        if gt is None or pert is None:
            print(f"| {run.name} | (no evaluation) | | | |")
            continue
        print(f"| {run.name} | {gt['J']:.1f} | {gt['F']:.1f} | {gt['JF']:.1f} | {pert['JF']:.1f} |")
        groups[seed_variant(run.name)].append((gt["J"], gt["JF"], pert["JF"]))
    print()
    print("| variant | seeds | J (gt crop) | J&F (gt crop) | J&F (perturbed crop) |")
    print("|---|---|---|---|---|")
    for variant, rows in groups.items():
        a = np.array(rows)
        cells = [f"{a[:, c].mean():.1f} ± {a[:, c].std():.1f}" if len(a) > 1 else f"{a[0, c]:.1f}" for c in range(3)]
        print(f"| {variant} | {len(a)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/pexp")
