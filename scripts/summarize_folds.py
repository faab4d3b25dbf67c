"""Pool the folds (or seeds) of ``scripts/run_motion_folds.sh`` / ``run_motion_synthetic.sh`` into one report.

    python scripts/summarize_folds.py runs/folds [--out runs/folds/summary.md]

Every sequence is held out by exactly one fold, so the folds' per-sequence results are pooled into
one sample of 30 sequences (``eval-*/sequences.csv``; a sequence scored by several runs, e.g. the
seeds of the synthetic script, gets the mean of its scores): tracking (success AUC, precision, J&F, fps of ``bmvtrack.evaluate``),
paired BCa bootstrap intervals of ``motion-posterior`` (and its ``-flip`` variant) against every other tracker, the networks'
J&F (``evaluate_vae``, mean over tracks) with the annotation's crop and in tracking mode, and the
motion posterior's calibration pooled over all pairs (each track's coverage weighted by its pairs; the
90 % coverage with a 95 % percentile bootstrap interval over tracks) and, per motion component, the skill of
its mean μ′ against the prior's mean (squared errors pooled over pairs).

``--same-box`` adds the success AUC of every tracker's rotated box converted alike (its corner
bounds; the rotated IoU), and the focus trackers' paired differences in both: the headline gives a
tracker that segments its mask's tight box, so a tracker whose box is not fitted to a mask is
compared with it only here on the same footing.

``--focus TRACKER`` (repeatable) names the trackers compared with every other instead of the
motion posterior's. ``--with NAME=DIR`` pools another experiment folder the same way (e.g. the same protocol with another
β) and adds its focus trackers as ``<tracker> (NAME)`` and its networks as ``(NAME)`` rows, so that the
trackers of both are compared paired over the same sequences, and the networks both scored too (J&F).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from bmvtrack.metrics import paired_bootstrap
from bmvtrack.motion import RELATIVE_NAMES

FOCUS = ("motion-posterior", "motion-posterior-flip", "motion-posterior-adapt")  # each is compared with every other tracker
NETWORKS = (("motion", "motion posterior (pair)"), ("mvunet", "single-crop βMVUnet"))  # run-folder prefix, label


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


KEYS = ("success_auc", "precision_20", "jf", "fps", "frames", "success_auc_bounds", "success_auc_rot")
# the same box conversion for every tracker (--same-box): the headline gives a segmenting tracker its mask's
# tight box and every other its rotated box's corner bounds; these two columns convert every rotated box alike
SAME_BOX = (("success_auc_bounds", "AUC corners"), ("success_auc_rot", "AUC rot"))


def tracking(exp: Path) -> tuple[dict[str, dict[str, dict[str, float]]], list[str]]:
    """tracker → sequence → metrics, pooled over ``eval-*/sequences.csv`` (means where a sequence
    appears more than once); the runs found."""
    runs = sorted(p.parent.name for p in exp.glob("eval-*/sequences.csv"))
    lists: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for f in runs:
        for r in _rows(exp / f / "sequences.csv"):
            lists[r["tracker"]][r["sequence"]].append(
                {k: float(r[k]) if r.get(k) not in ("", None) else float("nan") for k in KEYS})
    out = {t: {s: {k: float(np.mean([v[k] for v in vs])) for k in KEYS} for s, vs in seqs.items()}
           for t, seqs in lists.items()}
    return out, runs


def network(exp: Path, prefix: str, crop: str) -> dict[str, float] | None:
    """Track-mean J&F and pooled calibration of ``<prefix>-*/eval/vae_eval_<crop>.csv``."""
    rows = [r for p in sorted(exp.glob(f"{prefix}-*/eval/vae_eval_{crop}.csv")) for r in _rows(p)
            if r["sequence"] != "overall"]
    if not rows:
        return None
    out = {k: float(np.nanmean([float(r[k]) for r in rows])) for k in ("J", "F", "JF", "box_JF", "maha_patch")}
    out["tracks"] = len(rows)
    if "cover90" in rows[0]:
        n = np.array([float(r["n_pairs"]) for r in rows])
        for k in ("cover50", "cover90", "prior_cover50", "prior_cover90", "motion_nll", "prior_nll", "kl"):
            v = np.array([float(r[k]) for r in rows])
            ok = np.isfinite(v) & (n > 0)
            out[k] = float(np.sum(v[ok] * n[ok]) / np.sum(n[ok]))
            if k == "cover90":
                out["cover90_low"], out["cover90_high"] = pooled_interval(v[ok], n[ok])
        out["pairs"] = int(n.sum())
        if f"mse_{RELATIVE_NAMES[0]}" in rows[0]:  # μ′ against the prior mean: squared errors pool over pairs
            for name in RELATIVE_NAMES:
                post = np.array([float(r[f"mse_{name}"]) for r in rows])
                prior = np.array([float(r[f"prior_mse_{name}"]) for r in rows])
                ok = np.isfinite(post) & np.isfinite(prior) & (n > 0)
                out[f"skill_{name}"] = float(1.0 - np.sum(post[ok] * n[ok]) / np.sum(prior[ok] * n[ok]))
    return out


def network_by_sequence(exp: Path, prefix: str, crop: str) -> dict[str, float]:
    """Sequence → J&F of ``<prefix>-*/eval/vae_eval_<crop>.csv``, the mean over the runs that scored it."""
    lists: dict[str, list[float]] = defaultdict(list)
    for p in sorted(exp.glob(f"{prefix}-*/eval/vae_eval_{crop}.csv")):
        for r in _rows(p):
            if r["sequence"] != "overall":
                lists[r["sequence"]].append(float(r["JF"]))
    return {s: float(np.mean(v)) for s, v in lists.items()}


def network_row(label: str, crop: str, o: dict[str, float]) -> str:
    """One row of the networks table."""
    cal = (f"{100 * o['cover50']:.1f} / {100 * o['cover90']:.1f} [{100 * o['cover90_low']:.1f}, "
           f"{100 * o['cover90_high']:.1f}] | {100 * o['prior_cover50']:.1f} / {100 * o['prior_cover90']:.1f} | "
           f"{o['motion_nll']:.2f} / {o['prior_nll']:.2f} | {o['kl']:.2f}" if "cover90" in o else " | | | ")
    return (f"| {label} | {crop} | {o['tracks']} | {100 * o['JF']:.1f} ({100 * o['J']:.1f} / {100 * o['F']:.1f}) | "
            f"{100 * o['box_JF']:.1f} | {o['maha_patch']:.3g} | {cal} |")


def skill_row(label: str, crop: str, o: dict[str, float]) -> str | None:
    """One row of the per-component table (μ′ against the prior mean), if the network was scored so."""
    if f"skill_{RELATIVE_NAMES[0]}" not in o:
        return None
    return f"| {label} | {crop} | " + " | ".join(f"{o[f'skill_{n}']:+.2f}" for n in RELATIVE_NAMES) + " |"


def pooled_interval(values: np.ndarray, weights: np.ndarray, draws: int = 2000) -> tuple[float, float]:
    """95 % percentile bootstrap interval of a weighted mean, resampling tracks (seed 0)."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(values), size=(draws, len(values)))
    means = np.sum(values[idx] * weights[idx], axis=1) / np.sum(weights[idx], axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def textbook_unet(exp: Path, crop: str) -> dict[str, float] | None:
    """Track-mean J&F of ``scripts/unet_reference_probe.py``'s ``unet-*/result.json``, if any."""
    per_track = {}
    for p in sorted(exp.glob("unet-*/result.json")):
        per_track.update(json.loads(p.read_text()).get(f"per_track_JF_{crop}", {}))
    if not per_track:
        return None
    return {"JF": float(np.mean(list(per_track.values()))) / 100.0, "tracks": len(per_track)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("exp_dir", type=Path)
    p.add_argument("--out", type=Path, default=None, help="markdown report (default EXP_DIR/summary.md)")
    p.add_argument("--title", default=None, help="the report's first line (default: what was pooled)")
    p.add_argument("--reproduce", action="append", default=[], metavar="COMMAND",
                   help="a command that reproduces the runs, listed under the title (repeatable)")
    p.add_argument("--focus", action="append", default=None, metavar="TRACKER",
                   help=f"a tracker compared paired with every other (repeatable; default {', '.join(FOCUS)})")
    p.add_argument("--same-box", action="store_true",
                   help="also compare every tracker's rotated box converted alike (corner bounds, rotated IoU)")
    p.add_argument("--with", dest="others", action="append", default=[], metavar="NAME=DIR",
                   help="another experiment folder, pooled alike and compared paired (repeatable)")
    args = p.parse_args(argv)
    focus_on = tuple(args.focus or FOCUS)
    res, folds = tracking(args.exp_dir)
    if not res:
        raise SystemExit(f"{args.exp_dir}: no eval-f*/sequences.csv")
    others = []
    for item in args.others:
        name, sep, folder = item.rpartition("=")  # the name may hold "=" (β = 1)
        if not sep or not name or not Path(folder).is_dir():
            raise SystemExit(f"--with {item}: expected NAME=DIR with an experiment folder")
        other, _ = tracking(Path(folder))
        if not other:
            raise SystemExit(f"{folder}: no eval-f*/sequences.csv")
        res.update({f"{t} ({name})": v for t, v in other.items() if t in focus_on})
        others.append((name, Path(folder)))
    seqs = sorted(set.intersection(*(set(v) for v in res.values())))
    head = [f"# {args.title}", "", f"{len(seqs)} held-out sequences, pooled over {', '.join(folds)}.", ""] \
        if args.title else [f"# {len(seqs)} held-out sequences, pooled over {', '.join(folds)}", ""]
    if args.reproduce:
        head += ["Reproduce:", "", "```", *args.reproduce, "```", ""]
    same_box = SAME_BOX if args.same_box else ()
    lines = [*head,
             "| tracker | success AUC | Prec@20px | J&F | FPS (median) |" + "".join(f" {t} |" for _, t in same_box),
             "|---|---|---|---|---|" + "---|" * len(same_box)]
    for name in sorted(res, key=lambda n: -np.mean([res[n][s]["success_auc"] for s in seqs])):
        d = res[name]
        jf = np.nanmean([d[s]["jf"] for s in seqs]) if any(np.isfinite(d[s]["jf"]) for s in seqs) else float("nan")
        lines.append(f"| {name} | {np.mean([d[s]['success_auc'] for s in seqs]):.3f} | "
                     f"{np.mean([d[s]['precision_20'] for s in seqs]):.3f} | "
                     f"{'' if not np.isfinite(jf) else f'{100 * jf:.1f}'} | {np.median([d[s]['fps'] for s in seqs]):.1f} |"
                     + "".join(f" {np.mean([d[s][k] for s in seqs]):.3f} |" for k, _ in same_box))
    for focus in (f for f in focus_on if f in res):
        lines += ["", f"Paired over sequences, {focus} minus each (success AUC, 95 % BCa bootstrap interval):", "",
                  "| other | mean difference | 95 % interval | sequences ahead |", "|---|---|---|---|"]
        for name in sorted(n for n in res if n != focus):
            r = paired_bootstrap([res[focus][s]["success_auc"] for s in seqs], [res[name][s]["success_auc"] for s in seqs])
            lines.append(f"| {name} | {r['mean_diff']:+.3f} | [{r['low']:+.3f}, {r['high']:+.3f}] | {r['wins']}/{r['n']} |")
        if same_box:
            lines += ["", f"The same, every tracker's rotated box converted alike ({focus} minus each; 95 % BCa intervals):", "",
                      "| other | " + " | ".join(f"{t}: difference [95 % interval], ahead" for _, t in same_box) + " |",
                      "|---|" + "---|" * len(same_box)]
            for name in sorted(n for n in res if n != focus):
                cells = []
                for key, _ in same_box:
                    r = paired_bootstrap([res[focus][s][key] for s in seqs], [res[name][s][key] for s in seqs])
                    cells.append(f"{r['mean_diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}], {r['wins']}/{r['n']}")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    net_lines, skill_lines = [], []
    for exp, suffix in [(args.exp_dir, "")] + [(d, f" ({n})") for n, d in others]:
        for prefix, label in NETWORKS:
            for crop in ("gt", "tracking"):
                o = network(exp, prefix, crop)
                if o is not None:
                    net_lines.append(network_row(label + suffix, crop, o))
                    if (row := skill_row(label + suffix, crop, o)) is not None:
                        skill_lines.append(row)
    for crop in ("gt", "tracking"):
        o = textbook_unet(args.exp_dir, crop)
        if o is not None:
            net_lines.append(f"| textbook U-Net (scripts/unet_reference_probe.py) | {crop} | {o['tracks']} | "
                             f"{100 * o['JF']:.1f} | | | | | | |")
    if net_lines:
        lines += ["", "Networks (evaluate_vae, mean over tracks; calibration pooled over pairs):", "",
                  "| network | crop | tracks | J&F (J / F) | box J&F | Mahalanobis | inside 50 / 90 % [95 % interval] | prior inside "
                  "50 / 90 % | NLL posterior / prior | KL |", "|---|---|---|---|---|---|---|---|---|---|", *net_lines]
    if skill_lines:
        lines += ["", "Posterior mean μ′ against the prior's one mean, per component (skill 1 − MSE(μ′) / MSE(prior mean), "
                  "squared errors pooled over pairs: 1 exact, 0 no better than the prior, negative worse):", "",
                  "| network | crop | " + " | ".join(RELATIVE_NAMES) + " |", "|---|---|" + "---|" * len(RELATIVE_NAMES),
                  *skill_lines]
    paired = []
    for name, folder in others:
        for prefix, label in NETWORKS:
            for crop in ("gt", "tracking"):
                mine, theirs = network_by_sequence(args.exp_dir, prefix, crop), network_by_sequence(folder, prefix, crop)
                both = sorted(set(mine) & set(theirs))
                if both:
                    r = paired_bootstrap([100 * mine[s] for s in both], [100 * theirs[s] for s in both])
                    paired.append(f"| {label} | {crop} | {name} | {r['mean_diff']:+.1f} | [{r['low']:+.1f}, {r['high']:+.1f}] | "
                                  f"{r['wins']}/{r['n']} |")
    if paired:
        lines += ["", "Networks, paired over sequences: J&F ×100 of this folder's minus the other's (95 % BCa bootstrap interval):", "",
                  "| network | crop | other | mean difference | 95 % interval | sequences ahead |", "|---|---|---|---|---|---|", *paired]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out or args.exp_dir / "summary.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
