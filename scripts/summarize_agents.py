"""Pool the motion-agent runs of ``scripts/run_agent_folds.sh`` into one report with paired intervals.

    python scripts/summarize_agents.py runs/agent_folds [--baselines runs/folds] [--eval eval] [--out FILE.md]

Each run folder ``f<K>-<variant>-s<seed>`` scored fold K's sequences (``eval/sequences.csv``, and the
perturbation protocol in ``eval-perturbed/``). Every sequence is held out by one fold, so the runs pool
into one sample of sequences; a sequence's score for a variant is the mean over its seeds. Defined
before any run, per variant:

- RL value: trained minus the same agent untrained (its start: the posterior-mean rule, or
  ``rule-proposal`` for an agent run with ``center=proposal``), per sequence;
- the per-sequence better of ``rule-mask`` and ``rule-proposal``, picked with the answer: how far an
  agent that chose between the two cues could go;
- trained minus the best hand rule on the same state (``rule-mu``, ``rule-mask``, and with a proposal
  tracker ``rule-proposal``, ``rule-fuse``, with colour scores ``rule-colour``: the best over all
  sequences, picked on these very sequences, which favours the rule);
- trained minus the supervised-only agent (variant ``supervised``);
- with ``--baselines`` (the motion folds' ``eval-*/sequences.csv``): trained minus CSRT and
  segmentation-adapt, and each hand rule minus CSRT;
- with ``--against LABEL=DIR`` (another experiment of this script, e.g. without a proposal tracker):
  trained minus the same variant there, in AUC and in recovery.

Intervals: paired BCa bootstrap over sequences (``bmvtrack.metrics.paired_bootstrap``). Recovery: the
perturbation protocol's fraction of perturbations recovered (IoU back ≥ 0.5) per sequence.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from bmvtrack.metrics import paired_by_name

RUN = re.compile(r"^f(\d+)-(.+)-s(\d+)$")
# the last three: runs with a proposal tracker (rule-colour: with its colour scores on)
RULES = ("rule-mu", "rule-mask", "rule-proposal", "rule-fuse", "rule-colour")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _num(v: str | None) -> float:
    return float(v) if v not in (None, "", "nan") else float("nan")


def collect(exp: Path, sub: str, key: str, only_seeds: set[int] | None = None
            ) -> tuple[dict[str, dict[str, dict[int, float]]], dict[str, set[int]]]:
    """name → sequence → seed → ``key``, where name is ``<variant>``, ``<variant>-untrained`` or a rule
    (rules and untrained agents are scored in every run; they are kept per run's seed as well);
    ``only_seeds``: the runs of these seeds alone."""
    out: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    seeds: dict[str, set[int]] = defaultdict(set)
    for run in sorted(p for p in exp.iterdir() if p.is_dir() and RUN.match(p.name)):
        fold, variant, seed = RUN.match(run.name).groups()  # type: ignore[union-attr]
        f = run / sub.format(fold=fold) / "sequences.csv"
        if not f.is_file() or (only_seeds is not None and int(seed) not in only_seeds):
            continue
        seeds[variant].add(int(seed))
        for r in _rows(f):
            t = r["tracker"]
            name = t.removeprefix("motion-agent-") if t.startswith("motion-agent-") else t
            out[name][r["sequence"]][int(seed)] = _num(r[key])
    return out, seeds


def per_sequence(table: dict[str, dict[int, float]]) -> dict[str, float]:
    return {s: float(np.nanmean(list(v.values()))) for s, v in table.items() if np.any(np.isfinite(list(v.values())))}


def compare(a: dict[str, float], b: dict[str, float]) -> tuple[str, int]:
    r = paired_by_name(a, b, min_items=2)
    if r is None:
        return "–", len(set(a) & set(b))
    return f"{r['mean_diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]", r["n"]


def baselines(path: Path | None, metric: str = "success_auc") -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    if path is None:
        return out
    for f in sorted(path.glob("eval-*/sequences.csv")):
        for r in _rows(f):
            if r["tracker"] in ("csrt", "segmentation-adapt"):
                out[r["tracker"]][r["sequence"]] = _num(r[metric])
    return out


def report(exp: Path, base: Path | None, sub: str = "eval", against: list[tuple[str, Path]] | None = None,
           metric: str = "success_auc", only_seeds: set[int] | None = None) -> str:
    auc, seeds = collect(exp, sub, metric, only_seeds)
    rec, _ = collect(exp, f"{sub}-perturbed", "perturbed_recovered", only_seeds)
    variants = [v for v in ("rl", "rl-expert", "supervised") if v in seeds]
    if not variants:
        raise SystemExit(f"{exp}: no finished runs (f<K>-<variant>-s<seed>/eval/sequences.csv)")
    lines = [f"# Motion agents on {exp.name}" + ("" if metric == "success_auc" else f" ({metric})"), ""]
    rules = {r: per_sequence(auc[r]) for r in RULES if r in auc}
    best_rule = max(rules, key=lambda r: np.mean(list(rules[r].values())))
    others = baselines(base, metric)
    mean = {v: per_sequence(auc[v]) for v in variants}
    untrained = {v: per_sequence(auc[f"{v}-untrained"]) for v in variants}
    lines += ["| agent | seeds | sequences | AUC trained | AUC untrained | per-seed AUC |", "|---|---|---|---|---|---|"]
    for v in variants:
        per_seed = [np.nanmean([auc[v][s][k] for s in auc[v] if k in auc[v][s]]) for k in sorted(seeds[v])]
        lines.append(f"| {v} | {len(seeds[v])} | {len(mean[v])} | {np.mean(list(mean[v].values())):.3f} | "
                     f"{np.mean(list(untrained[v].values())):.3f} | {', '.join(f'{x:.3f}' for x in per_seed)} |")
    for r, vals in rules.items():
        lines.append(f"| {r} (hand rule) | | {len(vals)} | {np.mean(list(vals.values())):.3f} | | |")
    for name, vals in others.items():
        lines.append(f"| {name} | | {len(vals)} | {np.mean(list(vals.values())):.3f} | | |")
    if "rule-mask" in rules and "rule-proposal" in rules:  # how far choosing between the two cues could go
        common = sorted(set(rules["rule-mask"]) & set(rules["rule-proposal"]))
        m, q = (np.array([rules[r][k] for k in common]) for r in ("rule-mask", "rule-proposal"))
        lines += ["", f"Per sequence, the better of rule-mask and rule-proposal (picked with the answer: an upper "
                  f"bound of choosing one cue per track): {np.maximum(m, q).mean():.3f}; the two rules' correlation "
                  f"over sequences {np.corrcoef(m, q)[0, 1]:+.2f}."]
    lines += ["", f"Paired over sequences (95 % BCa interval); best hand rule on this state: {best_rule}.", "",
              "| agent | RL value (trained − untrained) | − " + best_rule + " | − supervised | − csrt | − segmentation-adapt |",
              "|---|---|---|---|---|---|"]
    for v in variants:
        cells = [compare(mean[v], untrained[v])[0], compare(mean[v], rules[best_rule])[0],
                 compare(mean[v], mean["supervised"])[0] if "supervised" in mean and v != "supervised" else "",
                 compare(mean[v], others["csrt"])[0] if "csrt" in others else "",
                 compare(mean[v], others["segmentation-adapt"])[0] if "segmentation-adapt" in others else ""]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if "csrt" in others:
        lines += ["", "Hand rules minus CSRT, paired over sequences:", "", "| rule | − csrt | sequences |", "|---|---|---|"]
        for r, vals in rules.items():
            cell, k = compare(vals, others["csrt"])
            lines.append(f"| {r} | {cell} | {k} |")
    scaled = sorted(n for n in auc if any(n.startswith(f"{v}-step") for v in variants))
    if scaled:  # train_motion_agent --score --step-scales: the agent's move shrunk towards its start's
        lines += ["", "The agent's move shrunk towards its start's (`--step-scales`, a diagnostic), paired over sequences:", "",
                  "| tracker | AUC | − untrained | sequences |", "|---|---|---|---|"]
        for n in scaled:
            vals = per_sequence(auc[n])
            cell, k = compare(vals, untrained[n.split("-step")[0]])
            lines.append(f"| {n} | {np.mean(list(vals.values())):.3f} | {cell} | {k} |")
    for label, folder in against or []:
        other, _ = collect(folder, sub, metric, only_seeds)
        other_rec, _ = collect(folder, f"{sub}-perturbed", "perturbed_recovered", only_seeds)
        rows = []
        for v in [v for v in variants if v in other]:
            cell, n = compare(mean[v], per_sequence(other[v]))
            rec_cell = compare(per_sequence(rec[v]), per_sequence(other_rec[v]))[0] if v in rec and v in other_rec else "–"
            rows.append(f"| {v} | {cell} | {rec_cell} | {n} |")
        if rows:
            lines += ["", f"Against the same variant in {label} (`{folder}`), paired over sequences:", "",
                      "| agent | AUC: trained − the same variant there | recovered: the same difference | sequences |",
                      "|---|---|---|---|", *rows]
    if rec:
        lines += ["", "Recovery under the perturbation protocol: fraction of perturbations after which IoU was back "
                  "≥ 0.5, mean over sequences (trained − untrained paired).", "",
                  "| agent | trained | untrained | difference |", "|---|---|---|---|"]
        for v in variants:
            a, b = per_sequence(rec[v]), per_sequence(rec[f"{v}-untrained"])
            lines.append(f"| {v} | {np.mean(list(a.values())):.3f} | {np.mean(list(b.values())):.3f} | "
                         f"{compare(a, b)[0]} |")
        for r in RULES:
            if r in rec:
                vals = per_sequence(rec[r])
                lines.append(f"| {r} | {np.mean(list(vals.values())):.3f} | | |")
    speed = defaultdict(list)
    for f in exp.glob("f*-*-s*/record.json"):
        m = RUN.match(f.parent.name)
        if m:
            speed[m.group(2)].append(json.loads(f.read_text())["steps_per_s"])
    if speed:
        lines += ["", "Training speed (environment steps with one gradient update each, one thread, two runs sharing two "
                  "cores; `record.json`): " + ", ".join(f"{v} {np.median(speed[v]):.1f} steps/s (median of {len(speed[v])})"
                                                     for v in variants if v in speed) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("exp", type=Path)
    p.add_argument("--baselines", type=Path, default=None, help="the motion folds' folder (eval-*/sequences.csv)")
    p.add_argument("--eval", default="eval", help="the runs' evaluation folder (eval-<data>-<split> for --score runs; "
                                                  "{fold} stands for the run's fold)")
    p.add_argument("--against", action="append", default=[], metavar="LABEL=DIR",
                   help="another agent experiment: each variant minus the same variant there, paired (repeatable)")
    p.add_argument("--metric", default="success_auc",
                   help="the sequences.csv column the tables compare (e.g. success_auc_rot, the reward's rotated IoU)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="only the runs of these seeds, here and in --against (a lever run with fewer seeds)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    against = []
    for item in args.against:
        label, sep, folder = item.rpartition("=")
        if not sep or not label or not Path(folder).is_dir():
            raise SystemExit(f"--against {item}: expected LABEL=DIR with an agent experiment folder")
        against.append((label, Path(folder)))
    text = report(args.exp, args.baselines, args.eval, against, args.metric,
                  None if args.seeds is None else set(args.seeds))
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
