"""`python -m bmvtrack.analyze_motion`: measure the MGD prior of real motion on a dataset.

Writes the prior file (μ, Σ, counts, quantiles) that pretraining, the environment and the agent
read, a PNG of the marginals and the correlation matrix, and prints the oracle-replay check.

An existing prior file (or its PNG) is never replaced without ``--overwrite``: every later
pretraining and agent is built on it. The folder is locked while the command writes into it
(``bmvtrack.run_folder``), so two commands cannot write one prior at once; temporaries that an
interrupted write of these files left behind are removed.
"""
from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

from bmvtrack.cli import add_data_args, data_config_from_args
from bmvtrack.data.readers import VideoDataset
from bmvtrack.motion import MotionPrior
from bmvtrack.paths import DEFAULT_PRIOR
from bmvtrack.run_folder import claim_run_folder
from bmvtrack.analyze_motion import describe, fit_prior, measure_dataset, motion_samples, oracle_replay, plot_prior


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bmvtrack.analyze_motion", description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument("--box-method", default="minarearect", choices=["minarearect", "principal"],
                   help="rotated box from the mask: OpenCV minAreaRect (paper) or principal axes")
    p.add_argument("--fit", default="gaussian", choices=["gaussian", "robust"],
                   help="plain sample moments (paper) or the Gaussian of the bulk of the data (robust to box-fit jumps)")
    p.add_argument("--out", type=Path, default=DEFAULT_PRIOR, help=f"prior file to write (default {DEFAULT_PRIOR}, read by the other commands)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--overwrite", action="store_true", help="replace an existing prior file (and its PNG)")
    args = p.parse_args(argv)
    if args.out.is_dir():
        p.error(f"--out {args.out} is a folder; give the prior file to write (e.g. {args.out / 'prior.json'})")
    if args.out.suffix.lower() == ".png":
        p.error(f"--out {args.out}: the prior's plot would overwrite it; give a .json path")

    cfg = data_config_from_args(args)
    ds = VideoDataset.from_config(cfg)
    # The lock is on the prior's folder, which other priors may share: only this prior's own files
    # count as its outputs, and only their temporaries are cleaned (never a neighbour's in flight).
    own = [args.out.name, args.out.with_suffix(".png").name]
    folder = claim_run_folder(args.out.parent, own, overwrite=args.overwrite, what=f"motion prior {args.out.name}",
                              resume_flag=None, temporaries=[f".{glob.escape(n)}.*.tmp" for n in own])
    with folder:
        if folder.removed:
            print(f"--overwrite: replacing {', '.join(str(p) for p in folder.removed)}")
        return _measure(args, cfg, ds)


def _measure(args: argparse.Namespace, cfg, ds: VideoDataset) -> int:
    measured = measure_dataset(ds, args.box_method)
    samples = motion_samples(measured)
    source = f"{cfg.root} ({ds.layout}, split {cfg.split or 'all'}, {len(measured)} tracks)"
    prior = fit_prior(measured, source, args.box_method, fit=args.fit)
    prior.save(args.out)
    if not args.no_plot:
        plot_prior(prior, samples, args.out.with_suffix(".png"), reference=MotionPrior.paper())

    replay = np.array([v for tm in measured for v in oracle_replay(tm)])
    theta = np.degrees(np.arcsin(np.clip(samples[:, 2], -1, 1)))
    print(describe(prior))
    print(f"oracle replay: mean rotated IoU {replay.mean():.5f}, min {replay.min():.5f} over {len(replay)} frames")
    print(f"|θ| per step: max {np.abs(theta).max():.1f}°, {np.mean(np.abs(theta) > 20) * 100:.1f}% > 20°")
    print(f"wrote {args.out}" + ("" if args.no_plot else f" and {args.out.with_suffix('.png')}"))
    return 0

