"""Make what a training config needs per track — first-frame-adapted copies, proposal boxes — one shard at a time.

Why: adapting the 79 tracks of configs/train_davis_synth.yaml takes ~20 minutes on one thread, and
train_sac would otherwise do it serially before its first step (and run CSRT over every track in
every run). Shards split the tracks (training tracks and held-out ones) so that two processes fill
the same caches (``runs/adapt_cache``, ``runs/proposal_cache``) side by side:
    python scripts/prepare_tracks.py --config configs/train_davis_synth.yaml --shard 0/2 &
    python scripts/prepare_tracks.py --config configs/train_davis_synth.yaml --shard 1/2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="train_sac YAML (adapt.steps > 0 and/or env.proposal set)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--shard", default="0/1", help="i/n: prepare every n-th track starting at the i-th")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    i, n = (int(v) for v in args.shard.split("/"))
    if not 0 <= i < n:
        p.error(f"--shard {args.shard}: need 0 <= i < n")

    import torch

    from bmvtrack.agents.train_sac import TrainConfig, training_setup
    from bmvtrack.config import load_config
    from bmvtrack.envs.tracking_env import TrackingEnv, track_key

    torch.set_num_threads(args.threads)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    _, env_cfg, prior, _, per_track = training_setup(cfg)
    if per_track is None and env_cfg.proposal == "none":
        p.error(f"{args.config}: adapt.steps is 0 and env.proposal is none: nothing to prepare")
    envs = [TrackingEnv(env_cfg, prior=prior)]
    if cfg.eval_split:
        envs.append(TrackingEnv(env_cfg.held_out(cfg.eval_split), prior=prior))
    mine = [(e, t) for e in envs for t in e.tracks][i::n]
    if per_track is not None:
        per_track.models.prepare((track_key(t), t.name, lambda e=e, t=t: e.first_frame(t)) for e, t in mine)
    for e in envs:
        e.tracks = [t for env, t in mine if env is e]
        e.prepare_proposals()
    print(f"shard {i}/{n}: {len(mine)} tracks prepared or found in the caches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
