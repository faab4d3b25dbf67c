"""`python -m bmvtrack.results`: the result pages under docs/results, written from finished runs.

README's result tables are copied from these pages, never typed: each page is made from an
``evaluate`` run folder (its ``overall.csv``, ``manifest.json``, ``command.txt`` and
``success.png``) and says when, from which commit and by which command its figures were made.

    python -m bmvtrack.results NAME=RUN_DIR [NAME=RUN_DIR ...] [--out docs/results] [--title TEXT]

writes ``<out>/<NAME>.md`` and ``<out>/<NAME>_success.png`` for each evaluation, plus
``<out>/index.md`` listing every page in ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bmvtrack.io import atomic_write_text

# The columns a result page shows, in order: the standard ones first (OTB success AUC, precision
# at 20 px, mean IoU of the axis-aligned box; DAVIS J&F of tracked masks), then our further columns.
COLUMNS = [("success_auc", "Success AUC"), ("precision_20", "Prec@20px"), ("mean_iou", "mIoU"), ("jf", "J&F"),
           ("success_auc_rot", "AUC rot"), ("fps", "FPS"), ("fps_per_frame", "FPS (per frame)")]


class ResultsError(ValueError):
    """A run folder is not a finished evaluation."""


def read_evaluation(run: Path) -> dict:
    """The finished evaluation in ``run``: its manifest, command and overall rows."""
    manifest = run / "manifest.json"
    try:
        meta = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{run}: not an evaluate run folder (no manifest.json)") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{manifest}: not valid JSON ({exc.msg})") from None
    if meta.get("status") != "finished":
        raise ResultsError(f"{run}: the evaluation is not finished (status {meta.get('status')!r})")
    try:
        with open(run / "overall.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise ResultsError(f"{run}: overall.csv is missing") from None
    command = (run / "command.txt").read_text().strip() if (run / "command.txt").is_file() else ""
    return {"meta": meta, "rows": rows, "command": command}


def _cell(value: str | None) -> str:
    if value in (None, "", "nan"):
        return ""
    try:
        v = float(value)
    except ValueError:
        return value
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def table(rows: list[dict]) -> str:
    """The markdown table of an evaluation's overall rows (the columns of :data:`COLUMNS` it has)."""
    cols = [(k, h) for k, h in COLUMNS if any(k in r for r in rows)]
    lines = ["| Tracker | " + " | ".join(h for _, h in cols) + " |", "|:---|" + "---:|" * len(cols)]
    for r in rows:
        lines.append(f"| {r.get('tracker', '?')} | " + " | ".join(_cell(r.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines)


def portable(command: str) -> str:
    """The command with a machine-local dataset root (an absolute ``--data``) shown as ``PATH/<name>``."""
    words = command.split(" ")
    for i, word in enumerate(words[:-1]):
        if word == "--data" and words[i + 1].startswith("/"):
            words[i + 1] = "PATH/" + Path(words[i + 1]).name
    return " ".join(words)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def page(name: str, run: Path, title: str | None = None, today: dt.date | None = None) -> str:
    """One result page: title, date, commit, what was evaluated, the command, the table, the plot."""
    ev = read_evaluation(run)
    meta, today = ev["meta"], today or dt.date.today()
    tracks = meta.get("tracks", [])
    return "\n".join([
        f"# {title or name}",
        "",
        f"Written {today.isoformat()} by `python -m bmvtrack.results` (code at commit {_commit()}) from the run "
        f"folder `{run}`.",
        f"{len(tracks)} tracks; trackers: {', '.join(meta.get('trackers', []))}.",
        "",
        "Reproduce:",
        "",
        "```",
        portable(ev["command"]) or "(the run folder holds no command.txt)",
        "```",
        "",
        table(ev["rows"]),
        "",
        "Success AUC, Prec@20px and mIoU compare each tracker's axis-aligned box with the mask's tight box "
        "(OTB); J&F scores tracked masks (DAVIS); AUC rot is the rotated IoU's; FPS count every per-track set-up."
        + (" The oracle replays the ground-truth motion: the motion model's upper bound, not a tracker."
           if "oracle" in meta.get("trackers", []) else ""),
        "",
        f"![success plot]({name}_success.png)",
        "",
    ])


def write_pages(items: list[tuple[str, Path]], out: Path, title: str | None = None) -> list[Path]:
    """Write each page and its plot into ``out`` and refresh ``out/index.md``; returns the pages."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, run in items:
        text = page(name, run, title)
        if (run / "success.png").is_file():
            shutil.copyfile(run / "success.png", out / f"{name}_success.png")
        atomic_write_text(out / f"{name}.md", text)
        written.append(out / f"{name}.md")
    pages = sorted(p for p in out.glob("*.md") if p.name != "index.md")
    index = ["# Results", "", *(f"- [{p.stem}]({p.name}): {p.read_text().splitlines()[0].lstrip('# ')}" for p in pages), ""]
    atomic_write_text(out / "index.md", "\n".join(index))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bmvtrack.results", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR", help="a page name and a finished evaluate run folder")
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="folder of the result pages")
    p.add_argument("--title", default=None, help="page title (default: the name)")
    args = p.parse_args(argv)
    items = []
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            p.error(f"expected NAME=RUN_DIR, got {item!r}")
        items.append((name, Path(path)))
    try:
        written = write_pages(items, args.out, args.title)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for page_path in written:
        print(f"wrote {page_path}")
    return 0


if __name__ == "__main__":
    from bmvtrack.cli import run_main

    run_main(main)
