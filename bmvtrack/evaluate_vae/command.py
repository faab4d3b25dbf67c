"""`python -m bmvtrack.evaluate_vae`: J, F, J&F, saliency, NLL/MSE and Mahalanobis of a pretrained βMVAE/βMVUnet.

The headline is deterministic (posterior mean); ``--best-of N`` adds the paper's protocol (best of
N stochastic masks per frame by J with the annotation), labelled as such. ``--crop`` places the
crops: ``gt`` (the paper's, from the annotation), ``perturbed`` (noisy annotated box) or
``tracking`` (at the box of the previous predicted mask). Writes ``vae_eval_<crop>.md`` and
``.csv`` into ``--out`` and logs ``eval/…`` scalars to W&B (offline by default).

One ``--out`` may collect the reports of several crop modes (one file pair each); a report of the
same crop mode already there is never replaced without ``--overwrite``, and the folder is locked
while the command writes it (``bmvtrack.run_folder``). Without ``--out`` each run gets a new folder.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from bmvtrack.checkpoint import CheckpointError
from bmvtrack.cli import add_data_args, data_config_from_args
from bmvtrack.data.readers import VideoDataset
from bmvtrack.logging_wandb import RunLogger, WandbConfig, command_config, dataset_config, run_name
from bmvtrack.paths import DEFAULT_VAE_CHECKPOINT, RUNS_DIR
from bmvtrack.run_folder import RunFolder, RunFolderError, claim_run_folder
from bmvtrack.segmentation import load_segmenter
from bmvtrack.evaluate_vae import (
    CROP_MODES,
    VaeEvalConfig,
    config_dict,
    evaluate,
    report_markdown,
    report_stem,
    wandb_metrics,
    write_report,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bmvtrack.evaluate_vae", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_VAE_CHECKPOINT,
                   help=f"pretraining checkpoint (default {DEFAULT_VAE_CHECKPOINT})")
    add_data_args(p)
    g = p.add_argument_group("evaluation")
    g.add_argument("--crop", default="gt", choices=CROP_MODES,
                   help="crop placement: gt (paper), perturbed (noisy annotated box), tracking (previous predicted mask)")
    g.add_argument("--best-of", type=int, default=0, metavar="N",
                   help="also report the paper's protocol: best of N stochastic masks per frame (looks at the annotation)")
    g.add_argument("--adapt-steps", type=int, default=0,
                   help="fine-tune each track's network on frame 0's annotation first, N Adam steps "
                        "(semi-supervised protocol, ours; default 0 = off)")
    g.add_argument("--adapt-lr", type=float, default=1e-4, help="learning rate of --adapt-steps")
    g.add_argument("--context", type=float, default=0.25, help="crop padding per side, fraction of (w+h) (paper 0.25)")
    g.add_argument("--no-clip", action="store_true", help="do not clip crop windows to the frame")
    g.add_argument("--threshold", type=float, default=0.5, help="probability threshold of the masks")
    g.add_argument("--box-method", default="minarearect", choices=["minarearect", "principal"],
                   help="rotated box fitted to masks (annotation, reference and tracking)")
    g.add_argument("--keep", default="overlap", choices=["overlap", "all", "largest"],
                   help="tracking: fit the box to the mask components touching the previous box (default), all, or the largest")
    g.add_argument("--perturb-shift", type=float, default=0.1, help="perturbed: centre shift std, fraction of max(w,h)")
    g.add_argument("--perturb-scale", type=float, default=0.1, help="perturbed: log-scale std of each side")
    g.add_argument("--seed", type=int, default=0, help="seed of the perturbations and stochastic samples")
    g.add_argument("--batch-size", type=int, default=32, help="patches per forward pass (gt / perturbed)")
    g.add_argument("--all-frames", action="store_true",
                   help="score every frame (default: drop each track's first and last frame, DAVIS protocol)")
    g.add_argument("--max-tracks", type=int, default=None, help="evaluate only the first N tracks")
    g.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: on a shared 2-core machine more threads are far slower)")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None,
                   help="output folder (default: a new runs/evaluate_vae/<run name>); a report of the same --crop "
                        "there is refused unless --overwrite")
    o.add_argument("--overwrite", action="store_true", help="replace the report of this --crop that --out holds")
    o.add_argument("--no-wandb", action="store_true", help="do not log to Weights & Biases")
    o.add_argument("--quiet", action="store_true", help="no per-track progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = VaeEvalConfig(
            crop=args.crop, context=args.context, clip=not args.no_clip, threshold=args.threshold,
            box_method=args.box_method, keep=args.keep, best_of=args.best_of, perturb_shift=args.perturb_shift,
            perturb_scale=args.perturb_scale, seed=args.seed, batch_size=args.batch_size,
            exclude_first_last=not args.all_frames, max_tracks=args.max_tracks,
            adapt_steps=args.adapt_steps, adapt_lr=args.adapt_lr,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        model, model_cfg = load_segmenter(args.checkpoint, device)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data_cfg = data_config_from_args(args)
    ds = VideoDataset.from_config(data_cfg)
    name = run_name("evaluate_vae", args.crop)
    stem = report_stem(cfg)
    outputs = [f"{stem}.md", f"{stem}.csv"]
    what = f"{cfg.crop}-crop VAE evaluation"
    if args.out is not None:
        out = args.out
        folder = claim_run_folder(out, outputs, overwrite=args.overwrite, what=what, resume_flag=None)
    else:
        out, folder = claim_fresh_folder(RUNS_DIR / "evaluate_vae" / name, outputs, what)
    with folder:
        if folder.removed:
            print(f"--overwrite: replacing {', '.join(str(p) for p in folder.removed)}", file=sys.stderr)
        return _run(args, cfg, model, model_cfg, data_cfg, ds, device, name, out, argv)


def claim_fresh_folder(path: Path, outputs: list[str], what: str, tries: int = 100) -> tuple[Path, RunFolder]:
    """Claim ``path``, or ``path-2``, ``path-3``… : the first that does not exist yet.

    The default ``--out`` is named by the second; two runs started within one second must not
    share it (the loser of a race for one name takes the next).
    """
    for n in range(1, tries + 1):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        if candidate.exists():
            continue
        try:
            return candidate, claim_run_folder(candidate, outputs, what=what, resume_flag=None)
        except RunFolderError:
            continue
    raise RunFolderError(f"{path}: no free output folder after {tries} tries; pass --out")


def _run(args: argparse.Namespace, cfg: VaeEvalConfig, model, model_cfg, data_cfg, ds: VideoDataset, device: str,
         name: str, out: Path, argv: list[str] | None) -> int:
    argv_list = sys.argv[1:] if argv is None else list(argv)
    info = {
        "checkpoint": str(args.checkpoint), "arch": model_cfg.arch, "bottleneck": model_cfg.bottleneck,
        "patch_size": model_cfg.patch_size, "data": data_cfg.root, "layout": ds.layout,
        "resolution": getattr(ds, "resolution", None), "split": data_cfg.split or "all", "device": device,
        "command": "python -m bmvtrack.evaluate_vae " + " ".join(shlex.quote(a) for a in argv_list),
    }
    # the run's config: the arguments, the evaluation config and what they resolved to (model, dataset)
    config = command_config(args, **{**info, "eval": config_dict(cfg), "data": dataset_config(data_cfg, ds),
                                     "model": model_cfg, "out": out})
    logger = RunLogger(out, name, "evaluate_vae", config=config, wandb_cfg=WandbConfig(enabled=not args.no_wandb))
    try:
        report = evaluate(model, ds, cfg, progress=None if args.quiet else (lambda s: print(s, file=sys.stderr)),
                          info=info)
        md, cs = write_report(report, out, report_stem(cfg))
        logger.log(wandb_metrics(report))
        logger.log_table("eval/per_sequence", report.columns(),
                         [[row[c] for c in report.columns()] for row in report.rows()])
        logger.summary(wandb_metrics(report))
    finally:
        logger.finish()
    print(report_markdown(report))
    print(f"wrote {md} and {cs}")
    return 0

