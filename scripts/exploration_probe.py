"""What does exploration cost a trained agent? A diagnostic, not a tracker.

    python scripts/exploration_probe.py runs/exp7/mvsac-adapt-s0 [...] [--samples 3]

For each agent it rebuilds the held-out environment of its training run (same encoder, same adapted
states, ``eval_split`` tracks in order, no termination) and prints the mean IoU of the
deterministic policy and of the sampled one (the actions training executes), over ``--samples``
passes. When sampled actions track much worse, the replay buffer holds states the deterministic
policy never visits, and the critic learns about those.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from bmvtrack.agents.loading import load_agent
from bmvtrack.agents.train_sac import evaluate_in_env, held_out_env, training_setup


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="train_sac run folders")
    p.add_argument("--samples", type=int, default=3, help="sampled passes per agent")
    p.add_argument("--split", default=None, help="held-out split (default: the run's eval_split)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print("| agent | deterministic mean IoU | sampled mean IoU (mean ± std) |\n|---|---|---|")
    for path in args.models:
        model, cfg = load_agent(path)
        cfg.eval_split = args.split or cfg.eval_split
        if not cfg.eval_split:
            raise SystemExit(f"{path}: its run has no eval_split: pass --split")
        _, env_cfg, prior, encoder, per_track = training_setup(cfg)
        env = held_out_env(cfg, env_cfg, prior, encoder, per_track)
        det = evaluate_in_env(model, env)["eval/mean_iou"]
        torch.manual_seed(0)
        sampled = [evaluate_in_env(model, env, deterministic=False)["eval/stochastic_mean_iou"]
                   for _ in range(args.samples)]
        print(f"| {path} | {det:.3f} | {np.mean(sampled):.3f} ± {np.std(sampled):.3f} |", flush=True)


if __name__ == "__main__":
    main()
