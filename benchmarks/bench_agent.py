"""Agent speed: MV-SAC gradient updates/s over plain SAC's (same env, same buffer, interleaved),
and tracking fps at inference on full-resolution 480p DAVIS frames (crop + encoder + policy).

    python benchmarks/bench_agent.py [--checkpoint runs/pretrain_vae/checkpoint.pt] [--rounds 10] [--obs features_motion]
                                     [--proposal csrt]

Ratios are measured side by side in one run; absolute numbers on this shared machine are noisy.
Targets: update ratio ≥ 0.8; ≥ 30 fps on 2 cores for the default model.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import SAC

from bmvtrack.agents.mvsac import MVSAC
from bmvtrack.agents.policy_tracker import PolicyTracker
from bmvtrack.data.readers import TrackFilter, VideoDataset
from bmvtrack.models import ModelConfig
from bmvtrack.proposals import PROPOSALS, make_proposal_tracker
from bmvtrack.envs.state_encoder import DEFAULT_OBS, StateEncoder
from bmvtrack.envs.registration import make_sb3_vec_env, resolve_env_config
from bmvtrack.paths import DAVIS2016_DIR


def updates_per_second(model, steps: int) -> float:
    t0 = time.perf_counter()
    model.train(gradient_steps=steps, batch_size=model.batch_size)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default=None, help="encoder checkpoint (default: untrained default-size encoder)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--updates", type=int, default=50)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--davis", default=str(DAVIS2016_DIR))
    p.add_argument("--obs", default=DEFAULT_OBS, help="observation kind (default: the agents' default)")
    p.add_argument("--proposal", default="none", choices=PROPOSALS,
                   help="a classical tracker's box in the state (env.proposal); its time alone is printed too")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = resolve_env_config(proposal=args.proposal)
    prior = cfg.motion_prior()
    enc = (StateEncoder.from_checkpoint(args.checkpoint, kind=args.obs) if args.checkpoint
           else StateEncoder.untrained(ModelConfig(), prior, kind=args.obs))
    venv = make_sb3_vec_env(2, cfg, encoder=enc, seed=0)
    common = dict(learning_starts=0, batch_size=256, buffer_size=10_000, seed=0, verbose=0)
    sac = SAC("MlpPolicy", venv, **common)
    mv = MVSAC("MlpPolicy", venv, prior_mean=prior.mean, prior_cov=prior.cov, prior_warmup=True, prior_init=True,
               **common)
    # with the KL term: the default agent (a residual around the mask's motion) when the cue is observed
    cue = {}
    if "search/motion" in venv.obs_layout:
        start = venv.obs_layout["search/motion"].start
        cue = dict(prior_source="cue", prior_init=True, cue_slice=(start, start + 5), cue_mean=enc.prior_mean,
                   cue_std=enc.prior_std, cue_scale=0.2)
    mv_kl = MVSAC("MlpPolicy", venv, prior_mean=prior.mean, prior_cov=prior.cov, prior_kl_coef=0.1, **cue, **common)
    for m in (sac, mv, mv_kl):  # the same amount of experience in each buffer
        m.learn(600, progress_bar=False)
    rates = {"sac": [], "mvsac": [], "mvsac+kl": []}
    for _ in range(args.rounds):  # interleaved rounds: machine noise hits all three alike
        rates["sac"].append(updates_per_second(sac, args.updates))
        rates["mvsac"].append(updates_per_second(mv, args.updates))
        rates["mvsac+kl"].append(updates_per_second(mv_kl, args.updates))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    print(f"gradient updates/s (median of {args.rounds} rounds, batch 256): "
          + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    print(f"MV-SAC / SAC update ratio: {med['mvsac'] / med['sac']:.2f}   (with KL term: {med['mvsac+kl'] / med['sac']:.2f})")
    venv.close()

    davis = Path(args.davis)
    if not (davis / "JPEGImages" / "480p").is_dir():
        print(f"skipping 480p tracking fps: {davis} not found")
        return
    ds = VideoDataset(davis, resolution="480p", filters=TrackFilter(absent="keep", max_box_fraction=1.0))
    track = ds.tracks()[0]
    frames = [np.array(ds.frame(track, i)) for i in range(len(track))]  # decoded up front: not timed
    from bmvtrack.evaluate import track_ground_truth

    box0 = track_ground_truth(ds, track).rboxes[0]
    tracker = PolicyTracker(mv_kl, enc, mv.action_space.low, mv.action_space.high, name="mvsac",
                            proposal=args.proposal)
    for _ in range(2):
        tracker.init(frames[0], box0)
        t0 = time.perf_counter()
        for f in frames[1:]:
            tracker.update(f)
        fps = (len(frames) - 1) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    x = np.zeros((1, enc.patch_size, enc.patch_size, 3), np.uint8)
    for _ in range(len(frames) - 1):
        enc.encode_crops(x)  # the tracker encodes one search crop per frame (template cached)
    bare = (len(frames) - 1) / (time.perf_counter() - t0)
    if args.proposal != "none":
        alone = make_proposal_tracker(args.proposal)
        alone.init(frames[0], box0)
        t0 = time.perf_counter()
        for f in frames[1:]:
            alone.update(f)
        print(f"{args.proposal} alone on the same frames: {(len(frames) - 1) / (time.perf_counter() - t0):.1f} fps")
    print(f"tracking on {track.sequence} 480p ({frames[0].shape[1]}×{frames[0].shape[0]}, {len(frames)} frames), "
          f"obs {args.obs}: {fps:.1f} fps with crop + network + policy; bare network forward alone {bare:.1f}/s; "
          f"torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
