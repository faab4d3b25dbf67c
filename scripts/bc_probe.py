"""Behaviour-cloning probe: can a policy regress the expert G_t from an observation kind?

    python scripts/bc_probe.py --obs features_motion --prior-source cue --noise 0.2

Expert episodes on the synthetic train split (optionally with DART noise), BC epochs, then
one-pass evaluation on the held-out tracks beside zero motion and the untrained agent (for
``--prior-source cue``: the mask's own motion).
"""
import argparse

import numpy as np
import torch

from bmvtrack.agents.train_sac import TrainConfig, build_agent, collect_demonstrations, evaluate_in_env
from bmvtrack.motion import STAY_ACTION, MotionPrior
from bmvtrack.envs.registration import make_sb3_vec_env, resolve_encoder, resolve_env_config
from bmvtrack.envs.tracking_env import TrackingEnv
from bmvtrack.envs.wrappers import EncodedObservation

ap = argparse.ArgumentParser()
ap.add_argument("--obs", default="features_motion")
ap.add_argument("--loss", default="mse", choices=["mse", "nll"])
ap.add_argument("--box-method", default="minarearect")
ap.add_argument("--prior-source", default="global", choices=["global", "state", "cue"])
ap.add_argument("--env-prior", default="runs/prior/prior.json")
ap.add_argument("--encoder", default="runs/pretrain_vae/checkpoint.pt")
ap.add_argument("--episodes", type=int, default=60)
ap.add_argument("--epochs", type=int, default=40)
ap.add_argument("--noise", type=float, default=0.0, help="DART noise (× the prior's std)")
args = ap.parse_args()
torch.set_num_threads(1)

cfg = TrainConfig()
cfg.obs = args.obs
cfg.agent.ent_coef = "auto_0.01"
cfg.agent.prior_source = args.prior_source
env_cfg = resolve_env_config(cfg.env, box_method=args.box_method, prior=args.env_prior)
probe = TrackingEnv(env_cfg)
enc = resolve_encoder(args.encoder, args.obs, probe.prior)
env_cfg.crop_size = enc.patch_size
venv = make_sb3_vec_env(1, env_cfg, encoder=enc, seed=0)
shaping = MotionPrior.load("runs/prior/prior_robust.json") if args.prior_source == "global" else probe.prior
model = build_agent(cfg, venv, shaping.mean, shaping.cov, venv.obs_layout, cue=(enc.prior_mean, enc.prior_std))
eenv = EncodedObservation(TrackingEnv(env_cfg.held_out("val"), prior=probe.prior), enc)
before = evaluate_in_env(model, eenv, 0)
env = EncodedObservation(TrackingEnv(env_cfg, prior=probe.prior), enc)
demos = collect_demonstrations(env, args.episodes, 0, noise=args.noise)
losses = model.bc_pretrain(demos["obs"], demos["actions"], epochs=args.epochs, loss=args.loss)


class Zero:
    def predict(self, o, deterministic=True):
        return STAY_ACTION.astype(np.float32), None


print(vars(args), f"BC loss {losses[0]:.4f} -> {losses[-1]:.4f}", "| before BC", before,
      "| after BC", evaluate_in_env(model, eenv, 0), "| zero", evaluate_in_env(Zero(), eenv, 0), flush=True)
