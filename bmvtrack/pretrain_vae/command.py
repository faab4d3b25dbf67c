"""`python -m bmvtrack.pretrain_vae`: pretrain the βMVUnet / βMVAE on object-centred patches.

With no arguments it trains the small βMVUnet (configs/pretrain_default.yaml, the built-in
defaults) on the synthetic default dataset (generated if absent) within the time budget, and
leaves the checkpoint the RL environment reads at runs/pretrain_vae/checkpoint.pt.

    python -m bmvtrack.pretrain_vae [--config YAML] [--set key=value ...] [--resume auto|PATH | --overwrite]
    torchrun --nproc_per_node=2 -m bmvtrack.pretrain_vae ...     # DistributedDataParallel

The output folder is claimed before anything is written (``bmvtrack.run_folder``): while a run
writes it, a second command on it stops at once; a folder that holds a run (checkpoint.pt,
best.pt or a run folder) is refused unless ``--resume auto`` continues that run or
``--overwrite`` replaces it, so running the command twice never silently replaces a trained model.

All logic lives in ``bmvtrack.pretrain_vae``; this module parses arguments and reports.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import torch

from bmvtrack.checkpoint import CheckpointError
from bmvtrack.pretrain_vae import TrainingDiverged, resolve_config, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bmvtrack.pretrain_vae", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=None,
                   help="PretrainConfig YAML (default: built-in defaults = configs/pretrain_default.yaml; "
                        "with --resume and no --config: the checkpoint's own config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set model.beta=0 --set lr_max=1e-3)")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="continue a run: 'auto' = <out_dir>/checkpoint.pt if present, or a checkpoint path")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run the output folder holds (its checkpoint.pt, best.pt and run folders are "
                        "deleted first); without it such a folder is refused")
    g = p.add_argument_group("data (override the config's training dataset)")
    g.add_argument("--data", default=None, help="dataset folder (layout detected unless --layout)")
    g.add_argument("--layout", default=None, choices=["auto", "davis2016", "davis2017", "youtube-vos"])
    g.add_argument("--resolution", default=None, help="DAVIS resolution folder (480p, 240p, ...)")
    g.add_argument("--split", default=None, help="training split (e.g. dev/train, train)")
    g.add_argument("--val-split", default=None, help="validation split of the same dataset (e.g. dev/val, val; 'none' = no validation)")
    r = p.add_argument_group("run")
    r.add_argument("--out", default=None, help="output folder (checkpoint.pt, best.pt, run folders)")
    r.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="wall-clock budget in minutes (0 = none)")
    r.add_argument("--epochs", type=int, default=None)
    r.add_argument("--max-steps", type=int, default=None)
    r.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    r.add_argument("--threads", type=int, default=None, help="torch intra-op threads (0 = torch default)")
    r.add_argument("--no-wandb", action="store_true", help="no W&B run (metrics.jsonl is always written)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """The convenience flags as ``key=value`` overrides (strings JSON-quoted so YAML keeps them strings)."""
    out: list[str] = []

    def s(key: str, value: object) -> None:
        out.append(f"{key}={json.dumps(value)}")

    if args.data is not None:
        s("data.root", args.data)
        s("data.layout", args.layout or "auto")
    elif args.layout is not None:
        s("data.layout", args.layout)
    if args.resolution is not None:
        s("data.resolution", args.resolution)
    if args.split is not None:
        s("data.split", args.split)
    if args.val_split is not None:
        out.append("val_split=null" if args.val_split.lower() == "none" else f"val_split={json.dumps(args.val_split)}")
    if args.out is not None:
        s("out_dir", args.out)
    if args.device is not None:
        s("device", args.device)
    for key, value in (("time_budget_min", args.time_budget), ("epochs", args.epochs),
                       ("max_steps", args.max_steps), ("threads", args.threads)):
        if value is not None:
            out.append(f"{key}={value}")
    if args.no_wandb:
        out.append("wandb.enabled=false")
    return out


def command_line(argv: list[str]) -> str:
    """The invocation as one shell line (torchrun's form when launched by it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --nproc_per_node={os.environ.get('LOCAL_WORLD_SIZE', world)}" if world > 1 else "python"
    return f"{launcher} -m bmvtrack.pretrain_vae {shlex.join(argv)}".rstrip()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides) + _flag_overrides(args)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    say = print if rank0 else (lambda _msg: None)
    try:
        cfg, resume = resolve_config(args.config, overrides, args.resume, say=say)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        result = train(cfg, resume=resume, command=command_line(argv), progress=not args.quiet,
                       overwrite=args.overwrite)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if rank0:
        t, v = result.train, result.val
        print(f"run folder: {result.run_dir}")
        print(f"checkpoint: {result.checkpoint}" + (f"  best (val J {result.best_val:.4f}): {result.best}" if result.best else ""))
        print(f"steps {result.step}, epochs {result.epoch:.2f}, {result.wall_s:.0f} s ({result.stop_reason}), "
              f"{result.images_per_s:.1f} training images/s, {result.params['total'] / 1e6:.3f} M parameters")
        if t:
            print(f"train: loss {t['train/loss']:.4f}  cons {t['train/cons']:.4f}  kl {t['train/kl']:.4f}  "
                  f"soft-J {t['train/jaccard']:.4f}")
        if v:
            print(f"val:   loss {v['val/loss']:.4f}  cons {v['val/cons']:.4f}  kl {v['val/kl']:.4f}  "
                  f"J {v['val/J']:.4f}  Mahalanobis {v['val/mahalanobis']:.4g}")
    return 0

