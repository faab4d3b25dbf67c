"""Where the decoded mask and the proposal tracker disagree, does the agent's state say which is right?

    python scripts/cue_choice_probe.py --fold 0 [--fold 1 --fold 2] [--adapt-steps 60]

For each fold, states are collected along one pass of every track from its annotated first box,
following the decoded mask's box (``rule-mask``; μ′ where the mask is empty), with CSRT beside it
never restarted and the cue history and colour scores on: the training folds' tracks and the
held-out fold's, each seen through the fold's motion posterior adapted to the track's first frame
(as the agents are). At every step where the two cues' boxes overlap by less than 0.5 (where
choosing matters), the label is which of the two boxes overlaps the next annotated box more (rotated IoU). Each chooser is
scored on the held-out steps by accuracy and by the mean IoU of the box it picks: always the mask,
always the proposal, the cue nearer to μ′ (the posterior mean as a third vote, in prior standard
deviations), the cue whose box has the higher colour contrast (``bmvtrack.appearance``: the rule
``rule-colour``), and a logistic regression fitted on the training folds' steps, on the one-frame
state, with the cue history, and with both the history and the colour scores. Why: an agent can
only learn when to trust which cue if the state tells them apart; this measures that directly,
without RL.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from scipy.optimize import minimize

from bmvtrack.adaptation import AdaptConfig
from bmvtrack.agents import motion_agent as ma
from bmvtrack.appearance import SCORE_DIM, mask_box_wins
from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.envs.motion_env import make_motion_env
from bmvtrack.motion import rotated_iou
from bmvtrack.paths import DAVIS2016_DIR
from bmvtrack.proposals import AGREE_IOU, agreement

KEEP = TrackFilter(absent="keep", max_box_fraction=1.0)
FOLDS = "configs/folds/davis2016_3fold.yaml"


def collect(cfg: ma.MotionAgentConfig, state: ma.MotionState,
            data: DataConfig) -> tuple[dict[str, np.ndarray], dict[str, slice]]:
    """Per disagreement step: the state and both cues' IoU with the next annotated box;
    and the state's layout."""
    env = make_motion_env(state, cfg.action_n_std, cfg.make_proposal(), "box", None, cfg.make_adapted(state),
                          data=data, start="first", start_shift=0.0, start_scale=0.0, perturb_prob=0.0, lost_frames=0)
    env.prepare_adapted()
    lay = env.obs_layout
    cue, mu = lay["search/motion"], lay["search/mu"]
    rows: dict[str, list] = {"obs": [], "mask": [], "prop": []}
    for k in range(len(env.raw.tracks)):
        obs, _ = env.reset(seed=k, options={"track_index": k})
        done = False
        while not done:
            raw = env.raw
            gt = raw._gt[raw._t + 1] if raw._t + 1 < len(raw._gt) else None
            mask_box = env.state_of(raw.track).mask_box(obs, raw.box)
            prop_box = env.proposal.box  # already moved to the next frame
            if gt is not None and mask_box is not None and agreement(mask_box, prop_box) < AGREE_IOU:
                rows["obs"].append(obs)
                rows["mask"].append(rotated_iou(mask_box, gt))
                rows["prop"].append(rotated_iou(prop_box, gt))
            move = obs[mu] if obs[cue][6] > 0.5 else obs[cue][:5]
            obs, _, terminated, truncated, _ = env.step(move)
            done = terminated or truncated
    return {k: np.array(v) for k, v in rows.items()}, lay


def features(obs: np.ndarray, lay: dict[str, slice], history: bool, colour: bool = False) -> np.ndarray:
    """The state's standardised numbers (scaled moves and spreads, mask area and empty flag, box size,
    the proposal's standardised move and overlap), the cue history and the colour scores if asked."""
    prop = obs[:, lay["proposal"]]
    parts = [obs[:, lay["search/scaled"]], obs[:, lay["search/motion"]][:, 5:7], obs[:, lay["box"]], prop[:, 5:11]]
    if history:
        parts.append(obs[:, lay["history"]])
    if colour:
        parts.append(obs[:, lay["colour"]])
    return np.concatenate(parts, axis=1).astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """L2-regularised logistic regression (with an intercept) by L-BFGS; returns the weights."""
    a = np.c_[x, np.ones(len(x))]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = a @ w
        p = 1.0 / (1.0 + np.exp(-z))
        nll = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * np.sum(w[:-1] ** 2)
        return nll, a.T @ (p - y) + l2 * np.r_[w[:-1], 0.0]

    return minimize(loss, np.zeros(a.shape[1]), jac=True, method="L-BFGS-B").x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fold", type=int, action="append", required=True)
    p.add_argument("--motion-dir", default="runs/folds", help="fold K's posterior: DIR/motion-fK/checkpoint.pt")
    p.add_argument("--data", default=str(DAVIS2016_DIR))
    p.add_argument("--resolution", default="240p")
    p.add_argument("--adapt-steps", type=int, default=60)
    p.add_argument("--l2", type=float, default=10.0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    chosen: dict[str, list[np.ndarray]] = {}
    best = []
    for k in args.fold:
        net = f"{args.motion_dir}/motion-f{k}/checkpoint.pt"
        cfg = ma.MotionAgentConfig(motion_net=net, proposal="csrt", reinit="never", history=True, colour=True,
                                   adapt=AdaptConfig(steps=args.adapt_steps))
        state = cfg.make_state()
        data = {part: DataConfig(root=args.data, layout="davis2016", resolution=args.resolution,
                                 split=f"{FOLDS}:{k}:{part}", filters=KEEP) for part in ("train", "test")}
        (tr, lay), (te, _) = collect(cfg, state, data["train"]), collect(cfg, state, data["test"])
        y_tr, y_te = (tr["prop"] > tr["mask"]).astype(float), te["prop"] > te["mask"]
        sd = state.prior_std
        mu = te["obs"][:, lay["search/mu"]]
        mask_move = te["obs"][:, lay["search/motion"]][:, :5]
        prop_move = te["obs"][:, lay["proposal"]][:, :5]
        vote = np.linalg.norm((prop_move - mu) / sd, axis=1) < np.linalg.norm((mask_move - mu) / sd, axis=1)
        picks = {"always the mask": np.zeros(len(y_te), bool), "always the proposal": np.ones(len(y_te), bool),
                 "the cue nearer to μ′": vote}
        colour = te["obs"][:, lay["colour"]]  # the mask's box's inside, contrast, similarity; the proposal's
        empty = te["obs"][:, lay["search/motion"]][:, 6] > 0.5
        picks["the cue of higher colour contrast"] = np.array(  # the proposal unless the mask's box wins (colour_choice)
            [e or not mask_box_wins(c[:SCORE_DIM], c[SCORE_DIM:]) for e, c in zip(empty, colour)])
        for name, hist, with_colour in (("state", False, False), ("state + history", True, False),
                                        ("state + history + colour", True, True)):
            x_tr, x_te = features(tr["obs"], lay, hist, with_colour), features(te["obs"], lay, hist, with_colour)
            m, s = x_tr.mean(0), x_tr.std(0) + 1e-6
            w = fit_logistic((x_tr - m) / s, y_tr, args.l2)
            picks["logistic, " + name] = np.c_[(x_te - m) / s, np.ones(len(x_te))] @ w > 0
        print(f"fold {k}: {len(y_tr)} training and {len(y_te)} held-out disagreement steps; "
              f"the proposal is right on {y_tr.mean():.2f} / {y_te.mean():.2f} of them")
        for name, pick in picks.items():
            chosen.setdefault(name, []).append(np.where(pick, te["prop"], te["mask"]))
            chosen.setdefault(name + "/acc", []).append((pick == y_te).astype(float))
        best.append(np.maximum(te["prop"], te["mask"]))
    print("\n| chooser (held-out disagreement steps, pooled) | accuracy | mean IoU of the box picked |\n|---|---|---|")
    for name in [n for n in chosen if not n.endswith("/acc")]:
        print(f"| {name} | {np.concatenate(chosen[name + '/acc']).mean():.3f} | {np.concatenate(chosen[name]).mean():.3f} |")
    print(f"| the better of the two (the answer) | 1.000 | {np.concatenate(best).mean():.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
