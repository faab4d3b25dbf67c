"""Compare segmentation networks over held-out sequences: J&F per network, paired intervals against one.

    python scripts/summarize_segmentation.py runs/seg_folds --ref unetref [--ref paper ...] [--crop gt] [--out FILE]

Every ``<name>-f<fold>[-s<seed>]/eval/vae_eval_<crop>.csv`` under the folder is one run (written by
``bmvtrack.evaluate_vae`` or ``scripts/unet_reference_probe.py``). A network is a ``<name>``; its
score on a sequence is the mean over the runs that held that sequence out (its seeds), so the folds
pool into one sample of sequences. Each network is compared with ``--ref`` on the sequences both
scored (paired BCa bootstrap over sequences), which is the question "does it segment as well as the
reference on video neither trained on"; each ``--ref`` gives one table.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from bmvtrack.metrics import paired_by_name

RUN = re.compile(r"^(?P<name>.+)-f(?P<fold>\d+)(?:-s(?P<seed>\d+))?$")
KEYS = ("J", "F", "JF")


def scores(exp: Path, crop: str) -> dict[str, dict[str, object]]:
    """name → {"seq": sequence → metric → mean over seeds, "folds": set, "seeds": set}."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    meta: dict[str, dict[str, set[str]]] = defaultdict(lambda: {"folds": set(), "seeds": set()})
    for path in sorted(exp.glob(f"*/eval/vae_eval_{crop}.csv")):
        m = RUN.match(path.parent.parent.name)
        if m is None:
            continue
        name = m["name"]
        meta[name]["folds"].add(m["fold"])
        meta[name]["seeds"].add(m["seed"] or "0")
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row["sequence"] != "overall":
                    runs[name][row["sequence"]].append({k: float(row[k]) for k in KEYS})
    return {name: {"seq": {s: {k: float(np.mean([r[k] for r in rs])) for k in KEYS} for s, rs in seqs.items()},
                   **meta[name]} for name, seqs in runs.items()}


def report(exp: Path, ref: str, crop: str) -> str:
    """Markdown: one row per network (J&F over its sequences, and against ``ref`` where it has one)."""
    res = scores(exp, crop)
    if not res:
        raise SystemExit(f"{exp}: no <name>-f<fold>[-s<seed>]/eval/vae_eval_{crop}.csv")
    lines = [f"Crop `{crop}`; J, F, J&F ×100, mean over held-out sequences (each the mean over its seeds); "
             f"the difference to `{ref}` is paired over the sequences both scored (95 % BCa bootstrap).", "",
             "| network | folds | seeds | sequences | J | F | J&F | J&F − " + ref + " | 95 % interval | sequences ahead |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = res.get(ref, {}).get("seq", {})
    for name in sorted(res, key=lambda n: -np.mean([v["JF"] for v in res[n]["seq"].values()])):
        seq = res[name]["seq"]
        mean = {k: 100 * np.mean([v[k] for v in seq.values()]) for k in KEYS}
        cells = ["", "", ""]
        d = None if name == ref else paired_by_name({s: 100 * v["JF"] for s, v in seq.items()},
                                                     {s: 100 * v["JF"] for s, v in base.items()})
        if d is not None:
            cells = [f"{d['mean_diff']:+.1f} (on {d['n']})", f"[{d['low']:+.1f}, {d['high']:+.1f}]", f"{d['wins']}/{d['n']}"]
        lines.append(f"| {name} | {','.join(sorted(res[name]['folds']))} | {len(res[name]['seeds'])} | {len(seq)} | "
                     f"{mean['J']:.1f} | {mean['F']:.1f} | {mean['JF']:.1f} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("exp_dir", type=Path)
    p.add_argument("--ref", action="append", default=None,
                   help="the network every other is compared with (a run name prefix; repeatable, default unetref)")
    p.add_argument("--crop", default="gt", choices=("gt", "tracking", "perturbed"))
    p.add_argument("--out", type=Path, default=None, help="also write the report here")
    p.add_argument("--title", default=None, help="a first line for the report")
    p.add_argument("--reproduce", action="append", default=[], metavar="COMMAND",
                   help="a command that reproduces the runs, listed under the title (repeatable)")
    args = p.parse_args(argv)
    head = [f"# {args.title}", ""] if args.title else []
    if args.reproduce:
        head += ["Reproduce:", "", "```", *args.reproduce, "```", ""]
    text = "\n".join(head) + "\n".join(report(args.exp_dir, ref, args.crop) for ref in args.ref or ["unetref"])
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
