"""Write the fixed cross-validation folds of a DAVIS folder (configs/folds/davis2016_3fold.yaml), reproducibly.

Rule: a sequence's *motion* is the mean, over consecutive annotated frames that both show the
object, of the shift of the mask's centroid divided by the square root of the mask's area in the
earlier frame (object sizes moved per frame: scale-free, so large slow objects and small fast ones
compare). Sequences are sorted by motion, largest first (ties by name), and dealt to the folds in
snake order 0, 1, 2, 2, 1, 0, 0, 1, 2, ...: each fold gets one of every ``k`` consecutive ranks, so
the folds are balanced in motion and have equal sizes (±1). Only the masks are read (lossless PNG),
so the output does not depend on a JPEG decoder. tests/test_folds.py checks the committed file
equals this script's output on the DAVIS 2016 train split:

    python scripts/make_folds.py --data PATH/davis2016 --out configs/folds/davis2016_3fold.yaml
    python scripts/make_folds.py --data PATH/davis2016 --check configs/folds/davis2016_3fold.yaml
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COMMAND = "python scripts/make_folds.py --data PATH/davis2016 --out configs/folds/davis2016_3fold.yaml"


def sequence_motion(root: str | Path, resolution: str = "240p") -> dict[str, tuple[float, int]]:
    """Per sequence of a DAVIS 2016 folder: (motion as in the module docstring, annotated frames (mask files))."""
    from bmvtrack.data.images import DatasetError
    from bmvtrack.data.readers import TrackFilter, VideoDataset

    ds = VideoDataset(root, layout="davis2016", resolution=resolution,
                      filters=TrackFilter(absent="keep", max_box_fraction=1.0, min_frames=1))
    out: dict[str, tuple[float, int]] = {}
    for track in ds.tracks():
        centres, areas = [], []
        for i in range(len(track)):
            ys, xs = np.nonzero(ds.mask(track, i))
            centres.append((xs.mean(), ys.mean()) if len(xs) else (np.nan, np.nan))
            areas.append(float(len(xs)))
        c, a = np.asarray(centres, np.float64), np.asarray(areas, np.float64)
        both = (a[:-1] > 0) & (a[1:] > 0)
        if not both.any():
            raise DatasetError(f"{ds.mask_dir / track.sequence}: no two consecutive frames show the object")
        shift = np.linalg.norm(np.diff(c, axis=0), axis=1)[both] / np.sqrt(a[:-1][both])
        annotated = sum(1 for f in (ds.mask_dir / track.sequence).iterdir() if f.suffix.lower() == ".png")
        out[track.sequence] = (float(shift.mean()), annotated)
    missing = sorted(set(ds.sequences) - set(out))
    if missing:
        raise DatasetError(f"{ds.mask_dir}: sequences without a track: {missing}")
    return out


def deal(ranked: list[str], k: int) -> list[list[str]]:
    """Deal ``ranked`` to ``k`` folds in snake order (0, 1, …, k−1, k−1, …, 0, 0, 1, …)."""
    folds: list[list[str]] = [[] for _ in range(k)]
    for i, name in enumerate(ranked):
        r, j = divmod(i, k)
        folds[j if r % 2 == 0 else k - 1 - j].append(name)
    return folds


def make_folds(root: str | Path, k: int = 3, resolution: str = "240p") -> str:
    """The folds file's text for the DAVIS 2016 folder ``root`` (deterministic: same data, same bytes)."""
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    motion = sequence_motion(root, resolution)
    if len(motion) < k:
        raise ValueError(f"{root}: {len(motion)} sequences cannot fill {k} folds")
    ranked = sorted(motion, key=lambda s: (-motion[s][0], s))
    folds = deal(ranked, k)
    sizes = sorted({len(f) for f in folds})
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    snake = ", ".join(str(j) for j in [*range(k), *reversed(range(k)), *range(k)])
    lines = [
        f"# DAVIS 2016 train ({len(motion)} sequences) in {k} fixed folds of {size}, so that every real-video",
        "# figure can hold out all sequences: models of fold K never see fold K's sequences.",
        "# Select a fold as a split (docs/user_guide.md, \"Cross-validation folds\"):",
        "#   <this file>:K:test is fold K's sequences, <this file>:K:train those of all other folds.",
        "# Rule: a sequence's motion is the mean, over consecutive annotated frames both showing the object,",
        "# of the mask centroid's shift over the square root of the mask's area in the earlier frame",
        f"# ({resolution} masks). Sorted by motion, largest first (ties by name), then dealt in snake order",
        f"# {snake}, ...: every fold gets one of each {k} consecutive ranks.",
        "# Generated, not edited; regenerate (tests/test_folds.py checks this file equals the output):",
        f"#   {COMMAND}" if k == 3 else
        f"#   python scripts/make_folds.py --data {root} --folds {k} --resolution {resolution} --out FILE",
        "folds:",
    ]
    width = max(len(s) for s in motion)
    for j, fold in enumerate(folds):
        m = np.mean([motion[s][0] for s in fold])
        frames = sum(motion[s][1] for s in fold)
        lines.append(f"  # fold {j}: {len(fold)} sequences, {frames} annotated frames, mean motion {m:.4f}")
        for i, s in enumerate(fold):
            lines.append(f"  {'- - ' if i == 0 else '  - '}{s.ljust(width)}  # motion {motion[s][0]:.4f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="DAVIS 2016 folder holding the 30 train sequences")
    p.add_argument("--resolution", default="240p", help="resolution folder whose masks are measured (default 240p)")
    p.add_argument("--folds", type=int, default=3, help="number of folds (default 3)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", type=Path, default=None, help="write the folds file here (default: print it)")
    out.add_argument("--check", type=Path, default=None, help="exit 1 unless this file equals the output")
    args = p.parse_args(argv)

    text = make_folds(args.data, args.folds, args.resolution)
    if args.check is not None:
        same = args.check.is_file() and args.check.read_text() == text
        print(f"{args.check}: {'matches' if same else 'differs from'} the folds of {args.data}")
        return 0 if same else 1
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from bmvtrack.cli import run_main

    run_main(main)
