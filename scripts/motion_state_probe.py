"""How much of the expert's move the motion agent's state predicts, step by step, on held-out video.

    python scripts/motion_state_probe.py --motion-net runs/folds/motion-f0/checkpoint.pt \
        --train-split configs/folds/davis2016_3fold.yaml:0:train --test-split configs/folds/davis2016_3fold.yaml:0:test \
        [--agent runs/agent_folds/f0-supervised-s0 ...]

States are collected by following μ′ (the untrained agent): on the training split from perturbed
random starts (the agents' training distribution), on the test split from frame 0 (evaluation's).
Each predictor of the expert's box-relative move (``info["expert_relative"]``) is scored by its
squared error in prior standard deviations, per action dimension and averaged: zero motion, μ′, the
decoded mask's move (``rule-mask``), a ridge regression on the standardised state fitted on the
training states, and any saved agents' deterministic actions. Why: tracking AUC compounds every
step's error; this separates "the state does not say where the object went" from "the agent did not
learn what the state says".
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from bmvtrack.agents import motion_agent as ma
from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.envs.motion_env import make_motion_env
from bmvtrack.paths import DAVIS2016_DIR

KEEP = TrackFilter(absent="keep", max_box_fraction=1.0)


def collect(state, data: DataConfig, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(states, expert moves) of one episode per track, following μ′."""
    env = make_motion_env(state, data=data, start="random" if shift else "first", start_shift=shift,
                          start_scale=0.1 if shift else 0.0, lost_frames=0)
    mu = state.layout["search/mu"]
    xs, ys = [], []
    rng = np.random.default_rng(seed)
    for k in range(len(env.raw.tracks)):
        obs, info = env.reset(seed=int(rng.integers(2**31)), options={"track_index": k})
        done = False
        while not done:
            xs.append(obs)
            ys.append(info["expert_relative"])
            obs, _, terminated, truncated, info = env.step(obs[mu])
            done = terminated or truncated
    return np.array(xs), np.array(ys)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--motion-net", required=True)
    p.add_argument("--data", default=str(DAVIS2016_DIR))
    p.add_argument("--resolution", default="240p")
    p.add_argument("--train-split", required=True)
    p.add_argument("--test-split", required=True)
    p.add_argument("--agent", action="append", default=[], help="a saved motion agent (repeatable)")
    p.add_argument("--ridge", type=float, default=10.0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    state = ma.MotionState(args.motion_net)
    lay, sd = state.layout, state.prior_std

    def data(split: str) -> DataConfig:
        return DataConfig(root=args.data, layout="davis2016", resolution=args.resolution, split=split, filters=KEEP)

    xtr, ytr = collect(state, data(args.train_split), 0.15, 0)
    xte, yte = collect(state, data(args.test_split), 0.0, 1)

    def error(pred: np.ndarray) -> str:
        e = np.mean(((pred - yte) / sd) ** 2, axis=0)
        return " | ".join(f"{v:.2f}" for v in e) + f" | **{e.mean():.2f}**"

    def mask(x: np.ndarray) -> np.ndarray:
        cue = x[:, lay["search/motion"]]
        return np.where(cue[:, 6:7] > 0.5, x[:, lay["search/mu"]], cue[:, :5])

    def design(x: np.ndarray) -> np.ndarray:
        return np.c_[x[:, lay["search/scaled"]], x[:, lay["search/motion"]][:, 5:7], x[:, lay["box"]], np.ones(len(x))]

    a = design(xtr)
    w = np.linalg.solve(a.T @ a + args.ridge * np.eye(a.shape[1]), a.T @ (ytr / sd))
    rows = [("zero motion", np.zeros_like(yte)), ("μ′ (rule-mu, the untrained agent)", xte[:, lay["search/mu"]]),
            ("decoded mask's move (rule-mask)", mask(xte)), (f"ridge on the state (λ = {args.ridge:g})", design(xte) @ w * sd)]
    for path in args.agent:
        model, _, meta = ma.load(path, state=state)
        rows.append((f"agent {meta['config']['variant']} ({path})", model.predict(xte, deterministic=True)[0]))
    print(f"Squared error of the expert's box-relative move, in prior standard deviations: {len(xte)} held-out "
          f"states ({args.test_split}), ridge fitted on {len(xtr)} training states ({args.train_split}).\n")
    print("| predictor | ln w | ln h | sin θ | Δcx | Δcy | mean |\n|---|---|---|---|---|---|---|")
    for name, pred in rows:
        print(f"| {name} | {error(pred)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
