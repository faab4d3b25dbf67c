"""Is tracker A really ahead of tracker B? Per-sequence paired comparison with a BCa bootstrap interval.

    python scripts/compare_trackers.py runs/evaluate/NAME/sequences.csv --a mvsac --b csrt [--metric success_auc]

Reads ``bmvtrack.evaluate``'s sequences.csv. Runs named ``<variant>-s<seed>`` are pooled: each
sequence's score is the mean over the variant's seeds, so the interval is over sequences (the
benchmark's sample), not over seeds. Prints the mean gap, its 95 % bootstrap interval (bias-corrected
and accelerated, ``scipy.stats.bootstrap``: see ``bmvtrack.metrics.paired_bootstrap``) and the
sequences A wins.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict

import numpy as np

from bmvtrack.metrics import paired_by_name
from run_names import seed_variant  # scripts/ is on the path when run as a script


def per_sequence(path: str, variant: str, metric: str) -> dict[str, float]:
    """``sequence → metric`` for a tracker (or the seed mean of a ``<variant>-s<seed>`` family)."""
    scores: dict[str, list[float]] = defaultdict(list)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if metric not in row:
                raise SystemExit(f"{path}: no column {metric!r} (columns: {', '.join(row)})")
            if variant in (row["tracker"], seed_variant(row["tracker"])):
                scores[row["sequence"]].append(float(row[metric]))
    if not scores:
        raise SystemExit(f"{path}: no tracker named {variant!r} or {variant}-s<seed>")
    return {seq: float(np.mean(v)) for seq, v in scores.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sequences_csv")
    p.add_argument("--a", required=True, help="tracker or variant (seeds pooled)")
    p.add_argument("--b", required=True, help="the tracker it is compared with")
    p.add_argument("--metric", default="success_auc")
    p.add_argument("--boot", type=int, default=10_000)
    args = p.parse_args(argv)
    a, b = (per_sequence(args.sequences_csv, v, args.metric) for v in (args.a, args.b))
    r = paired_by_name(a, b, n_boot=args.boot)
    if r is None:
        raise SystemExit(f"{args.sequences_csv}: {args.a} and {args.b} share no sequence")
    print(f"{args.metric}: {args.a} − {args.b} = {r['mean_diff']:+.3f} (95% BCa bootstrap interval over "
          f"{r['n']} sequences: {r['low']:+.3f} … {r['high']:+.3f}); {args.a} ahead on {r['wins']} of {r['n']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
