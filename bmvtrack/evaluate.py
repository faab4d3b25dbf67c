"""`python -m bmvtrack.evaluate`: run box trackers over a dataset's tracks and write the baseline report.

Prints the overall table (success AUC, precision@20 px, mean IoU axis-aligned and rotated,
losses of track, fps) and writes ``overall.{md,csv}``, ``sequences.{md,csv}``, ``success.png``
and the predicted boxes per sequence (``results/``) into ``--out``, with the exact command.
``--rescore DIR`` recomputes the report from saved results without running any tracker.
Protocol: see ``bmvtrack.tracking``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bmvtrack.adaptation import AdaptConfig
from bmvtrack.cli import add_data_args, data_config_from_args, run_main
from bmvtrack.data.readers import VideoDataset
from bmvtrack.io import atomic_write_text
from bmvtrack.tracking import evaluate_trackers, load_results, markdown_table, rescore, write_report

DEFAULT_TRACKERS = "zero,mil,kcf,csrt,oracle"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bmvtrack.evaluate", description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument("--trackers", default=DEFAULT_TRACKERS,
                   help=f"comma-separated registered tracker names (default {DEFAULT_TRACKERS})")
    p.add_argument("--out", type=Path, default=Path("outputs/evaluate"), help="report folder")
    p.add_argument("--max-tracks", type=int, default=None, help="evaluate only the first N tracks")
    p.add_argument("--box-method", default="minarearect", choices=["minarearect", "principal"],
                   help="ground-truth rotated box from the mask (the axis-aligned headline does not depend on it)")
    p.add_argument("--axis-aligned-init", default="tight", choices=["tight", "rbox"],
                   help="first box of axis-aligned trackers (OpenCV): the mask's tight bounds (OTB, default) "
                        "or the bounds of the rotated ground-truth box")
    p.add_argument("--rescore", type=Path, default=None, metavar="DIR",
                   help="recompute the report from sequence results saved in DIR (no tracker is run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--policy", action="append", default=[], metavar="NAME=MODEL_ZIP",
                   help="a trained agent (train_sac's model.zip) evaluated as tracker NAME (repeatable)")
    p.add_argument("--segmenter", type=Path, default=None,
                   help="βMVUnet checkpoint of the segmentation trackers (default runs/pretrain_vae/checkpoint.pt); "
                        "'segmentation' fits the box to the mask pieces touching the previous box, "
                        "'segmentation-all' to all of them; 'segmentation-adapt' is 'segmentation' fine-tuned "
                        "first on frame 0's box (bmvtrack.adaptation); 'segmentation-csrt' is 'segmentation-adapt' "
                        "with CSRT's box taking over wherever the mask's box disagrees with it (bmvtrack.proposals), "
                        "'segmentation-csrt-principal' the same with the principal-axes box fitted to the mask")
    p.add_argument("--policy-adapt", action="append", default=[], metavar="NAME=MODEL_ZIP",
                   help="like --policy, but the decoder proposing the agent's motion cue is fine-tuned on "
                        "frame 0's box first (the encoder, hence the rest of the state, is unchanged)")
    p.add_argument("--adapt-steps", type=int, default=AdaptConfig.steps,
                   help=f"first-frame adaptation: Adam steps (default {AdaptConfig.steps})")
    p.add_argument("--adapt-lr", type=float, default=AdaptConfig.lr,
                   help=f"first-frame adaptation: learning rate (default {AdaptConfig.lr})")
    p.add_argument("--adapt-label", choices=["box", "pseudo"], default=AdaptConfig.label,
                   help="first-frame adaptation label: the network's own mask inside the box (plus its centre, "
                        "--adapt-core) with background outside it, or the filled box "
                        f"(default {AdaptConfig.label})")
    p.add_argument("--adapt-core", type=float, default=AdaptConfig.core,
                   help="with --adapt-label pseudo: the box's centre part (this fraction of its sides) is "
                        f"labelled object too (default {AdaptConfig.core})")
    p.add_argument("--adapt-params", choices=["all", "decoder"], default=AdaptConfig.params,
                   help="weights 'segmentation-adapt' tunes (agents always tune their cue's decoder only; "
                        f"default {AdaptConfig.params})")
    p.add_argument("--no-wandb", action="store_true", help="do not log to W&B")
    args = p.parse_args(argv)
    if args.max_tracks is not None and args.max_tracks < 1:
        p.error("--max-tracks must be at least 1")
    try:
        adapt = AdaptConfig(steps=args.adapt_steps, lr=args.adapt_lr, label=args.adapt_label, core=args.adapt_core,
                            params=args.adapt_params)
    except ValueError as exc:
        p.error(str(exc))

    cfg = data_config_from_args(args)
    ds = VideoDataset.from_config(cfg)
    title = f"Tracking on {cfg.root} ({ds.layout}, {ds.resolution or ''} split {cfg.split or 'all'})"
    if args.rescore is not None:
        results = rescore(load_results(args.rescore), ds, args.box_method)
        save_sequences = False
    else:
        from agents.baselines import available_trackers, make_tracker

        names = [n.strip().lower() for n in args.trackers.split(",") if n.strip()]
        from agents.loading import learned_tracker_factories

        learned, names = learned_tracker_factories(args.policy, names, args.segmenter, adapt, args.policy_adapt)
        unknown = [n for n in names if n not in available_trackers()]
        if not (names or learned) or unknown:
            p.error(f"unknown tracker(s) {unknown}; registered: {', '.join(available_trackers())}")
        for n in names:  # fail now (e.g. an OpenCV build without contrib), not after other trackers ran
            try:
                make_tracker(n)
            except (RuntimeError, ValueError) as exc:
                p.error(f"tracker {n!r}: {exc}")
        tracks = ds.tracks()[: args.max_tracks]
        factories = {n: (lambda n=n: make_tracker(n)) for n in names}
        factories.update(learned)
        results = evaluate_trackers(factories, ds, tracks, progress=not args.no_progress,
                                    box_method=args.box_method, axis_aligned_init=args.axis_aligned_init)
        save_sequences = True
    paths = write_report(results, args.out, title, save_sequences=save_sequences)
    command = "python -m bmvtrack.evaluate " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    atomic_write_text(args.out / "command.txt", command + "\n")
    n_tracks = max((len(r) for r in results.runs.values()), default=0)
    print(f"{title}: {n_tracks} tracks\n")
    print(markdown_table(results.overall()))
    print(f"wrote {', '.join(str(v) for v in paths.values())} and {args.out / 'command.txt'}")
    log_report(results, paths, args, title)
    return 0


def log_report(results, paths: dict, args: argparse.Namespace, title: str) -> None:
    """The overall table and the success plot to W&B (offline by default)."""
    from bmvtrack.logging_wandb import RunLogger, WandbConfig, run_name

    rows = results.overall()
    if not rows:
        return
    logger = RunLogger(args.out, run_name("evaluate"), "evaluate", {"title": title, "trackers": list(results.runs)},
                       WandbConfig(enabled=not args.no_wandb))
    keys = ("success_auc", "success_auc_bounds", "precision_20", "mean_iou", "success_auc_rot", "fps")
    logger.log({f"eval/{r['tracker']}/{k}": r[k] for r in rows for k in keys if isinstance(r.get(k), (int, float))})
    cols = list(rows[0])
    logger.log_table("eval/overall", cols, [[r[c] for c in cols] for r in rows])
    png = paths.get("success_png") or next((v for v in paths.values() if str(v).endswith(".png")), None)
    if png is not None:
        logger.log_image("eval/success_plot", png)
    logger.finish()


if __name__ == "__main__":
    run_main(main)
