"""Behaviour-cloning probe: can a policy regress the expert G_t from an observation kind?

    python scripts/bc_probe.py features|features_mask mse|nll minarearect|principal [ENV_PRIOR]

60 expert episodes on the synthetic train split, 40 BC epochs, then one-pass evaluation on the
held-out tracks beside zero motion (README, "Where it stands").
"""
import sys, numpy as np, torch
torch.set_num_threads(1)
from agents.training import TrainConfig, collect_demonstrations, build_agent, evaluate_in_env
from envs.registration import resolve_env_config, resolve_encoder, make_sb3_vec_env
from envs.encoding import EncodedObservation
from envs.tracking_env import TrackingEnv
from bmvtrack.motion import MotionPrior
obs_kind, loss, box = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = TrainConfig(); cfg.obs = obs_kind; cfg.agent.ent_coef = "auto_0.01"
env_cfg = resolve_env_config(cfg.env, box_method=box, prior=sys.argv[4] if len(sys.argv) > 4 else "runs/prior/prior.json")
probe = TrackingEnv(env_cfg)
enc = resolve_encoder("runs/pretrain_vae/checkpoint.pt", obs_kind, probe.prior)
env_cfg.crop_size = enc.patch_size
venv = make_sb3_vec_env(1, env_cfg, encoder=enc, seed=0)
shaping = MotionPrior.load("runs/prior/prior_robust.json")
model = build_agent(cfg, venv, shaping.mean, shaping.cov, venv.obs_layout)
env = EncodedObservation(TrackingEnv(env_cfg, prior=probe.prior), enc)
demos = collect_demonstrations(env, 60, 0)
l = model.bc_pretrain(demos["obs"], demos["actions"], epochs=40, loss=loss)
ecfg = resolve_env_config(env_cfg, split="val", order="sequential", lost_frames=0)
eenv = EncodedObservation(TrackingEnv(ecfg, prior=probe.prior), enc)
class Zero:
    def predict(self, o, deterministic=True): return np.array([1,1,0,0,0], np.float32), None
print(obs_kind, loss, box, "bc", round(l[0],3), round(l[-1],3), "BC policy", evaluate_in_env(model, eenv, 0), "zero", evaluate_in_env(Zero(), eenv, 0), flush=True)
