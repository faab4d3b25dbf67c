"""`python -m bmvtrack.evaluate`: run box trackers over a dataset's tracks and write the baseline report.

Prints the overall table — the standard columns first: success AUC, precision at 20 px and mean
IoU of each tracker's axis-aligned box against the mask's tight box (OTB), J&F of the tracked
masks (trackers that segment); then the ellipse and corner conversions of the rotated box, the
rotated IoU, losses of track, fps with every per-track set-up counted and fps of the update calls
alone; then how often and how fast it recovers from its losses of track — and writes
``overall.{md,csv}``, ``sequences.{md,csv}``, ``success.png``, the predictions per sequence
(``results/``) and the same boxes in the got10k and pytracking formats (``got10k/``,
``pytracking/``) into ``--out``, with the exact command. ``--rescore DIR`` recomputes the report
from saved results without running any tracker. ``--perturb-every N`` (opt-in) re-initialises
every tracker on a perturbed ground-truth box every N frames and reports how it recovers from that
(the same perturbations for every tracker). Protocol: see ``bmvtrack.evaluate``.

No result is lost or mixed up (``bmvtrack.run_folder``): ``--out`` is locked while the command
writes it (a second command on it stops at once); a folder that already holds an evaluation is
refused unless ``--overwrite`` is given, and then its previous report and per-tracker results are
deleted before anything runs, so none of them can leak into the new report. Each evaluation
records what it ran in ``manifest.json``; ``--rescore`` reads only the result files listed there
(others found beside them are left out with a warning) and refuses an unfinished run.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bmvtrack.adaptation import AdaptConfig
from bmvtrack.cli import add_data_args, data_config_from_args
from bmvtrack.data.readers import VideoDataset
from bmvtrack.io import atomic_write_text
from bmvtrack.run_folder import RunFolder, RunFolderError, claim_run_folder
from bmvtrack.evaluate import (
    EVALUATION_OUTPUTS,
    RESULTS_DIR,
    EvaluationResults,
    Perturbation,
    evaluate_trackers,
    evaluation_folder,
    load_run_results,
    markdown_table,
    read_manifest,
    rescore,
    tracker_slug_clashes,
    write_manifest,
    write_report,
)

DEFAULT_TRACKERS = "zero,mil,kcf,csrt,oracle"


def claim_report_folder(out: Path, overwrite: bool) -> RunFolder:
    """Lock ``--out``; an earlier evaluation there is refused, or removed with ``--overwrite``."""
    try:
        earlier = read_manifest(out) or {}
    except RunFolderError:
        earlier = {}
    what = "unfinished evaluation" if earlier.get("status") == "running" else "evaluation"
    folder = claim_run_folder(out, EVALUATION_OUTPUTS, overwrite=overwrite, what=what, resume_flag=None)
    if folder.removed:
        print(f"--overwrite: removed the previous evaluation's {', '.join(p.name for p in folder.removed)} from {out}",
              file=sys.stderr)
    return folder


def _check_rescore_target(source: Path, out: Path) -> None:
    """Rescoring never writes into the folder it reads (--overwrite there would delete its results)."""
    run, o = evaluation_folder(source).resolve(), out.resolve()
    src = source.resolve()
    if o in (run, src) or o.is_relative_to(src) or src.is_relative_to(o / RESULTS_DIR):
        raise RunFolderError(f"{out}: --out must be another folder than the run being rescored ({source}); "
                             "the new report goes beside it, never over it")


def main(argv: list[str] | None = None) -> int:
    from bmvtrack.agents.baselines import available_trackers, describe_trackers, make_tracker

    p = argparse.ArgumentParser(prog="python -m bmvtrack.evaluate", description=__doc__.splitlines()[0],
                                epilog="registered trackers (--trackers; agents: --policy NAME=RUN):\n"
                                       + describe_trackers(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--trackers", default=None,
                   help=f"comma-separated tracker names, of {', '.join(available_trackers())} (each described "
                        f"below; default {DEFAULT_TRACKERS}); with --rescore: report only these of the run's trackers")
    p.add_argument("--out", type=Path, default=Path("outputs/evaluate"),
                   help="report folder (refused if it holds an evaluation, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the evaluation --out holds: its report and per-tracker results are deleted first")
    p.add_argument("--max-tracks", type=int, default=None, help="evaluate only the first N tracks")
    p.add_argument("--box-method", default="minarearect", choices=["minarearect", "principal"],
                   help="ground-truth rotated box from the mask (the axis-aligned headline does not depend on it)")
    p.add_argument("--axis-aligned-init", default="tight", choices=["tight", "rbox"],
                   help="first box of axis-aligned trackers (OpenCV): the mask's tight bounds (OTB, default) "
                        "or the bounds of the rotated ground-truth box")
    p.add_argument("--rescore", type=Path, default=None, metavar="DIR",
                   help="recompute the report of the evaluation in DIR (its --out, or its results/) from the "
                        "sequence results its manifest lists (no tracker is run); the report goes to --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--policy", action="append", default=[], metavar="NAME=RUN",
                   help="a trained agent (a train_sac run folder, or one of its checkpoints) evaluated as tracker "
                        "NAME (repeatable)")
    p.add_argument("--allow-other-encoder", action="store_true",
                   help="let an agent read states of an encoder file other than the one it was trained with "
                        "(--segmenter does not change an agent's encoder; this is for a retrained checkpoint file)")
    p.add_argument("--segmenter", type=Path, default=None,
                   help="βMVUnet checkpoint of the segmentation trackers (the segmentation* names below; "
                        "default runs/pretrain_vae/checkpoint.pt)")
    p.add_argument("--motion-net", type=Path, default=None,
                   help="motion-posterior βMVUnet checkpoint (model.input: pair) of the motion-posterior tracker "
                        "(default runs/motion/checkpoint.pt)")
    p.add_argument("--policy-adapt", action="append", default=[], metavar="NAME=RUN",
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
    p.add_argument("--adapt-warp-scale", type=float, default=AdaptConfig.warp_scale,
                   help="'motion-posterior-adapt': its warps are drawn from the network's prior with the "
                        "covariance scaled by this squared, as pretraining's pairs.warp_scale "
                        f"(default {AdaptConfig.warp_scale})")
    p.add_argument("--perturb-every", type=int, default=None, metavar="N",
                   help="perturbation protocol (off by default): before frames N, 2N, … (where the object is "
                        "there) re-initialise each tracker on the previous frame with its ground-truth box perturbed; "
                        "the report adds how trackers recover from it (Perturbed recovered, Frames to recover)")
    p.add_argument("--perturb-shift", type=float, default=None, metavar="S",
                   help=f"with --perturb-every: the centre moves by N(0, S)·max(w, h) in x and y "
                        f"(default {Perturbation.shift})")
    p.add_argument("--perturb-scale", type=float, default=None, metavar="C",
                   help=f"with --perturb-every: each side is scaled by exp(N(0, C)) (default {Perturbation.scale})")
    p.add_argument("--perturb-seed", type=int, default=None, metavar="K",
                   help="with --perturb-every: the draws of track i come from numpy's default_rng([K, i]), the same "
                        f"for every tracker (default {Perturbation.seed})")
    p.add_argument("--no-wandb", action="store_true", help="do not log to W&B")
    args = p.parse_args(argv)
    if args.max_tracks is not None and args.max_tracks < 1:
        p.error("--max-tracks must be at least 1")
    perturbation = _perturbation(p, args)
    try:
        adapt = AdaptConfig(steps=args.adapt_steps, lr=args.adapt_lr, label=args.adapt_label, core=args.adapt_core,
                            params=args.adapt_params, warp_scale=args.adapt_warp_scale)
    except ValueError as exc:
        p.error(str(exc))

    cfg = data_config_from_args(args)
    ds = VideoDataset.from_config(cfg)
    title = f"Tracking on {cfg.root} ({ds.layout}, {ds.resolution or ''} split {cfg.split or 'all'})"
    command = "python -m bmvtrack.evaluate " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    from bmvtrack.logging_wandb import dataset_config

    resolved = {"command": command, "title": title, "data": dataset_config(cfg, ds), "adapt": adapt}  # the W&B config
    if args.rescore is not None:
        _check_rescore_target(args.rescore, args.out)
        chosen = None if args.trackers is None else [n.strip().lower() for n in args.trackers.split(",") if n.strip()]
        loaded = load_run_results(args.rescore, chosen)  # read (and checked) before --out is touched
        # the perturbations are in the results; the settings they were drawn with, in the run's manifest
        settings = (read_manifest(evaluation_folder(args.rescore)) or {}).get("perturbation")
        title += _perturbation_title(settings)
        resolved["title"] = title
        folder = claim_report_folder(args.out, args.overwrite)
        with folder:
            results = rescore(loaded, ds, args.box_method)
            paths = write_report(results, args.out, title, save_sequences=False)
            atomic_write_text(args.out / "command.txt", command + "\n")
            write_manifest(args.out, status="finished", trackers=results.trackers,
                           tracks=sorted({r.sequence for r in loaded}), kind="rescore",
                           source=str(evaluation_folder(args.rescore)), command=command, perturbation=settings)
            _print_and_log(results, paths, args, title, {**resolved, "kind": "rescore", "perturbation": settings})
        return 0
    names = [n.strip().lower() for n in (args.trackers or DEFAULT_TRACKERS).split(",") if n.strip()]
    from bmvtrack.agents.loading import learned_tracker_factories

    learned, names = learned_tracker_factories(args.policy, names, args.segmenter, adapt, args.policy_adapt,
                                               allow_other_encoder=args.allow_other_encoder,
                                               motion_net=args.motion_net)
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
    clashes = tracker_slug_clashes(factories)
    if clashes:
        p.error(f"tracker names {clashes[0]} would share one results folder; rename one")
    settings = None if perturbation is None else perturbation.to_dict()
    title += _perturbation_title(settings)
    resolved.update(title=title, perturbation=settings)
    with claim_report_folder(args.out, args.overwrite):
        # "running" until every result and the report exist: --rescore refuses an interrupted run
        record = {"command": command, "data": cfg.root, "split": cfg.split, "perturbation": settings}
        write_manifest(args.out, status="running", trackers=list(factories), tracks=[t.name for t in tracks], **record)
        results = evaluate_trackers(factories, ds, tracks, progress=not args.no_progress,
                                    box_method=args.box_method, axis_aligned_init=args.axis_aligned_init,
                                    perturbation=perturbation)
        paths = write_report(results, args.out, title, save_sequences=True)
        atomic_write_text(args.out / "command.txt", command + "\n")
        write_manifest(args.out, status="finished", trackers=list(factories), tracks=[t.name for t in tracks],
                       results=results, **record)
        _print_and_log(results, paths, args, title, {**resolved, "kind": "run"})
    return 0


def _perturbation(p: argparse.ArgumentParser, args: argparse.Namespace) -> Perturbation | None:
    """The perturbation protocol the flags ask for (None: off); a setting without --perturb-every, or
    --perturb-every with --rescore (a run's perturbations are in its results), is a usage error."""
    given = {k: v for k, v in (("shift", args.perturb_shift), ("scale", args.perturb_scale),
                               ("seed", args.perturb_seed)) if v is not None}
    if args.perturb_every is None:
        if given:
            p.error(f"--perturb-{next(iter(given))} needs --perturb-every")
        return None
    if args.rescore is not None:
        p.error("--perturb-every cannot be combined with --rescore: a run's perturbations are in its results")
    try:
        return Perturbation(args.perturb_every, **given)
    except ValueError as exc:
        p.error(str(exc))


def _perturbation_title(settings: dict | None) -> str:
    """What the report's title adds for a perturbed run (nothing for a plain one)."""
    if not settings:
        return ""
    return (f"; perturbed every {settings['every']} frames (shift {settings['shift']:g}, scale {settings['scale']:g}, "
            f"seed {settings['seed']})")


def _print_and_log(results: EvaluationResults, paths: dict, args: argparse.Namespace, title: str,
                   resolved: dict | None = None) -> None:
    n_tracks = max((len(r) for r in results.runs.values()), default=0)
    print(f"{title}: {n_tracks} tracks\n")
    print(markdown_table(results.overall()))
    print(f"wrote {', '.join(str(v) for v in paths.values())} and {args.out / 'command.txt'}")
    log_report(results, paths, args, title, resolved)


def log_report(results, paths: dict, args: argparse.Namespace, title: str, resolved: dict | None = None) -> None:
    """The overall table and the success plot to W&B (offline by default); the run's config is the
    command's resolved configuration (``args``, ``data``, ``adapt``, ``trackers``, ``tracks``, …)."""
    from bmvtrack.logging_wandb import RunLogger, WandbConfig, command_config, run_name

    rows = results.overall()
    if not rows:
        return
    config = command_config(args, **{"title": title, **(resolved or {})}, trackers=list(results.runs),
                            tracks=max((len(r) for r in results.runs.values()), default=0))
    logger = RunLogger(args.out, run_name("evaluate"), "evaluate", config, WandbConfig(enabled=not args.no_wandb))
    keys = ("success_auc", "precision_20", "mean_iou", "jf", "success_auc_ellipse", "success_auc_bounds",
            "success_auc_rot", "fps", "fps_per_frame", "recovered", "frames_to_recover", "perturbed_recovered",
            "perturbed_frames_to_recover")
    logger.log({f"eval/{r['tracker']}/{k}": r[k] for r in rows for k in keys if isinstance(r.get(k), (int, float))})
    cols = list(rows[0])
    # a blank J&F (tracker without masks) goes to the table as NaN: one type per column
    logger.log_table("eval/overall", cols, [[float("nan") if r[c] is None else r[c] for c in cols] for r in rows])
    png = paths.get("success_png") or next((v for v in paths.values() if str(v).endswith(".png")), None)
    if png is not None:
        logger.log_image("eval/success_plot", png)
    logger.finish()

