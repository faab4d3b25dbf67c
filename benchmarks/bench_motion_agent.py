"""Motion agent speed, side by side in one run: training steps/s (an environment step and a gradient
update) of the motion agent against the cue agent's, MV-SAC's gradient updates/s on the motion
agent's state against plain SAC's, and tracking fps at 480p with every per-track set-up counted,
alone and with a proposal tracker (KCF, CSRT) beside it, moved on a worker thread while the
network runs (the default) and after it, and with CSRT, the cue history and the colour scores.

    python benchmarks/bench_motion_agent.py --motion-net runs/motion/checkpoint.pt \
        [--encoder runs/pretrain_vae/checkpoint.pt] [--data DIR] [--rounds 5] [--threads 2] [--fps-only]

The cue agent is the default MV-SAC of ``configs/train_synth.yaml`` on the single-crop βMVUnet
(``--encoder``; an untrained default-size network without it) and its ``features_motion`` state;
its first-frame adaptation and proposal tracker are per-track set-up, left out of its side (so its
rate is an upper bound). Rounds alternate between the agents: the machine's noise hits both alike.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import SAC

from bmvtrack.agents import motion_agent as ma
from bmvtrack.agents.mvsac import MVSAC
from bmvtrack.data.readers import DataConfig, TrackFilter, VideoDataset
from bmvtrack.envs.registration import make_sb3_vec_env, resolve_env_config
from bmvtrack.envs.state_encoder import StateEncoder
from bmvtrack.models import ModelConfig
from bmvtrack.paths import DAVIS2016_DIR
from bench_agent import updates_per_second  # noqa: E402  (benchmarks/ is the script's folder: on sys.path)

KEEP = TrackFilter(absent="keep", max_box_fraction=1.0)


def steps_per_second(model, steps: int) -> float:
    """Environment steps and one gradient update each (``learn`` past ``learning_starts``)."""
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False, progress_bar=False)
    return steps / (time.perf_counter() - t0)


def rates_and_updates(args: argparse.Namespace, data: DataConfig, cfg: ma.MotionAgentConfig, motion) -> None:
    """Training steps/s against the cue agent's, and gradient updates/s against plain SAC's."""
    env_cfg = resolve_env_config(data=asdict(data))
    prior = env_cfg.motion_prior()
    enc = (StateEncoder.from_checkpoint(args.encoder) if args.encoder
           else StateEncoder.untrained(ModelConfig(), prior))
    venv = make_sb3_vec_env(1, env_cfg, encoder=enc, seed=0)
    start = venv.obs_layout["search/motion"].start
    cue = MVSAC("MlpPolicy", venv, prior_mean=prior.mean, prior_cov=prior.cov, prior_source="cue", prior_init=True,
                prior_warmup=True, prior_kl_coef=0.1, cue_slice=(start, start + 5), cue_mean=enc.prior_mean,
                cue_std=enc.prior_std, cue_scale=0.05, learning_starts=0, batch_size=256, verbose=0, seed=0)
    for m in (motion, cue):
        m.learn(300, progress_bar=False)  # a filled buffer and warm caches on both sides
    rates: dict[str, list[float]] = {"motion agent": [], "cue agent": []}
    for _ in range(args.rounds):
        rates["motion agent"].append(steps_per_second(motion, args.steps))
        rates["cue agent"].append(steps_per_second(cue, args.steps))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    print(f"training steps/s (env step + 1 update, median of {args.rounds} rounds, {args.threads} thread(s)): "
          + ", ".join(f"{k} {v:.1f}" for k, v in med.items())
          + f"; ratio {med['motion agent'] / med['cue agent']:.2f}")
    print(f"state cache during the motion agent's training: {motion.get_env().get_attr('state')[0].cache_info()}")

    menv = motion.get_env()
    common = dict(learning_starts=0, batch_size=128, buffer_size=5000, seed=0, verbose=0,
                  policy_kwargs={"net_arch": [256, 256]})
    sac = SAC("MlpPolicy", menv, **common)
    plain_rl = ma.build(ma.MotionAgentConfig(motion_net=args.motion_net, data=data, variant="rl", learning_starts=0))[0]
    for m in (sac, plain_rl):
        m.learn(300, progress_bar=False)
    ups: dict[str, list[float]] = {"sac": [], "mvsac rl": [], "mvsac rl-expert": []}
    for _ in range(args.rounds):
        ups["sac"].append(updates_per_second(sac, args.steps))
        ups["mvsac rl"].append(updates_per_second(plain_rl, args.steps))
        ups["mvsac rl-expert"].append(updates_per_second(motion, args.steps))
    umed = {k: float(np.median(v)) for k, v in ups.items()}
    print("gradient updates/s (batch 128, the motion agent's state): " + ", ".join(f"{k} {v:.1f}" for k, v in umed.items())
          + f"; MV-SAC / SAC: rl {umed['mvsac rl'] / umed['sac']:.2f}, rl-expert {umed['mvsac rl-expert'] / umed['sac']:.2f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--motion-net", required=True)
    p.add_argument("--encoder", default=None, help="the cue agent's βMVUnet (default: an untrained default-size one)")
    p.add_argument("--data", default=str(DAVIS2016_DIR), help="DAVIS 2016 folder (240p frames for training, 480p for fps)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fps-only", action="store_true", help="only the 480p tracking fps (no training or update rates)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = DataConfig(root=args.data, layout="davis2016", resolution="240p", split="dev/train", filters=KEEP)

    cfg = ma.MotionAgentConfig(motion_net=args.motion_net, data=data, variant="rl-expert", learning_starts=0)
    motion, _, _ = ma.build(cfg)
    if not args.fps_only:
        rates_and_updates(args, data, cfg, motion)

    root = Path(args.data)
    if not (root / "JPEGImages" / "480p").is_dir():
        print(f"skipping 480p tracking fps: {root} has no 480p frames")
        return
    from bmvtrack.evaluate import evaluate_trackers

    ds = VideoDataset(root, resolution="480p", filters=KEEP)
    tracks = ds.tracks()[:2]
    for t in tracks:  # decode once: the fps below is the tracker's, not the JPEG decoder's
        for i in range(len(t)):
            ds.frame(t, i)
    state = cfg.make_state()
    trackers = {"motion agent": lambda: ma.agent_tracker(motion, state, "motion agent")}
    for kind in ("kcf", "csrt"):  # a proposal tracker beside the agent: its start and every move count
        pcfg = replace(cfg, variant="rl", proposal=kind)
        agent = ma.build(pcfg, state)[0]
        for overlap in (True, False):  # the proposal moved on a worker thread while the network runs, or after it
            name = f"motion agent + {kind}" + ("" if overlap else " (not overlapped)")
            trackers[name] = (lambda a=agent, c=pcfg, n=name, o=overlap:
                              ma.agent_tracker(a, state, n, c.make_proposal(), overlap=o))
    ccfg = replace(cfg, variant="rl", proposal="csrt", history=True, colour=True)  # + the cue history and colour scores
    colour_agent = ma.build(ccfg, state)[0]
    trackers["motion agent + csrt + history + colour"] = lambda: ma.agent_tracker(
        colour_agent, state, "motion agent + csrt + history + colour", ccfg.make_proposal())
    fps: dict[str, list[float]] = {name: [] for name in trackers}
    for _ in range(args.rounds):  # every round runs each tracker in turn: the machine's noise hits all alike
        for row in evaluate_trackers(trackers, ds, tracks, progress=False).overall():
            fps[row["tracker"]].append(row["fps"])
    frames = sum(len(t) for t in tracks)
    med = {name: float(np.median(v)) for name, v in fps.items()}
    for name, v in med.items():
        print(f"tracking at 480p, {name} ({len(tracks)} tracks, {frames} frames, set-up counted, median of "
              f"{args.rounds}): {v:.1f} fps")
    print(f"with the cue history and colour scores / without (csrt, overlapped): "
          f"{med['motion agent + csrt + history + colour'] / med['motion agent + csrt']:.2f}")
    print("overlapped / not overlapped: " + ", ".join(
        f"{k} {med[f'motion agent + {k}'] / med[f'motion agent + {k} (not overlapped)']:.2f}" for k in ("kcf", "csrt")))


if __name__ == "__main__":
    main()
