"""`python -m bmvtrack.train_sac`: train MV-SAC (or plain SAC) in the tracking environment.

With no arguments: the synthetic default, the default pretrained encoder (pretrained first when
absent), MV-SAC with the measured motion prior, ≤ 20 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bmvtrack.cli import run_main
from bmvtrack.config import load_config


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bmvtrack.train_sac", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=None, help="YAML file (configs/train_*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set agent.total_timesteps=5000 (repeatable)")
    p.add_argument("--algo", choices=["mvsac", "sac"], default=None, help="shortcut for agent.algo")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--timesteps", type=int, default=None, help="shortcut for agent.total_timesteps")
    p.add_argument("--time-budget", type=float, default=None, help="minutes (shortcut for time_budget_min)")
    p.add_argument("--encoder", default=None, help="pretrained βMVUnet checkpoint")
    p.add_argument("--out", default=None, help="run folder")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue the run in folder RUN (or one of its checkpoints) exactly where it stopped; "
                        "its own config is used, --set / shortcuts may change only its length and logging")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or interrupted run in --out")
    p.add_argument("--allow-other-encoder", action="store_true",
                   help="resume with an encoder file other than the one the agent was trained with (says so)")
    p.add_argument("--no-wandb", action="store_true", help="do not log to W&B")
    return p


def resolve(args: argparse.Namespace):
    """The run's config from the flags: a YAML file and overrides, or (``--resume``) the run's own."""
    from bmvtrack.agents.train_sac import TrainConfig, resume_config
    from bmvtrack.config import ConfigError

    shortcuts = {"agent.algo": args.algo, "seed": args.seed, "agent.total_timesteps": args.timesteps,
                 "time_budget_min": args.time_budget, "encoder": args.encoder, "out_dir": args.out}
    # flag values are typed already (a folder name like "run #1" is never parsed as YAML)
    overrides = [(k, v) for k, v in shortcuts.items() if v is not None] + args.overrides
    if args.no_wandb:
        overrides.append(("wandb.enabled", False))
    if args.resume:
        if args.config is not None:
            raise ConfigError("--config cannot be combined with --resume: the run's own config is used")
        if args.overwrite:
            raise ConfigError("--overwrite cannot be combined with --resume")
        cfg = resume_config(args.resume, overrides)
    else:
        cfg = load_config(TrainConfig, args.config, overrides)
    return cfg


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    from bmvtrack.agents.train_sac import train

    cfg = resolve(args)
    out = train(cfg, resume=args.resume, argv=argv, overwrite=args.overwrite,
                allow_other_encoder=args.allow_other_encoder)
    final = out["final"]
    print(f"run folder: {out['run_dir']}")
    if final:
        sampled = final.get("eval/stochastic_mean_iou")
        extra = "" if sampled is None else f" (sampled actions: mean IoU {sampled:.3f})"
        print(f"held-out tracking: mean IoU {final['eval/mean_iou']:.3f}, "
              f"success AUC {final['eval/success_auc']:.3f}{extra}")
    return 0


if __name__ == "__main__":
    run_main(main)
