"""Environment speed: steps/s single and vectorised, and env step time over the bare encoder forward.

Both sides are measured in the same run, interleaved, so machine noise affects them alike; the
ratio (target ≤ 1.5) says how much the environment adds beyond the network it has to run.

    python benchmarks/bench_env.py [--data DIR --resolution 240p --split dev/val] [--envs 4] [--steps 200]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.models import ModelConfig
from bmvtrack.envs.state_encoder import StateEncoder
from bmvtrack.envs.registration import make_sb3_vec_env, resolve_env_config
from bmvtrack.envs.tracking_env import EnvConfig


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=None)
    p.add_argument("--resolution", default=None)
    p.add_argument("--split", default=None)
    p.add_argument("--checkpoint", default=None, help="encoder checkpoint (default: an untrained default-size encoder)")
    p.add_argument("--obs", default="features")
    p.add_argument("--envs", type=int, default=4)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2000, help="steps before timing (fills the frame and box caches)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {}
    if args.data:
        overrides = dict(root=args.data, resolution=args.resolution, split=args.split)
    cfg = resolve_env_config(EnvConfig(data=DataConfig(filters=TrackFilter(absent="keep", max_box_fraction=1.0))), **overrides)
    prior = cfg.motion_prior()
    enc = (StateEncoder.from_checkpoint(args.checkpoint, kind=args.obs) if args.checkpoint
           else StateEncoder.untrained(ModelConfig(), prior, kind=args.obs))
    print(f"encoder patch {enc.patch_size}, obs {args.obs}, torch threads {torch.get_num_threads()}")

    results = {}
    for n in (1, args.envs):
        venv = make_sb3_vec_env(n, cfg, encoder=enc, seed=0)
        venv.reset()
        stay = np.tile([[1, 1, 0, 0, 0]], (n, 1)).astype(np.float32)
        crops = np.random.default_rng(0).integers(0, 255, (n, enc.patch_size, enc.patch_size, 3), dtype=np.uint8)
        for _ in range(max(args.warmup // n, 5)):  # steady state: every track decoded once
            venv.step(stay)
        enc.encode_crops(crops)
        t_env = t_enc = 0.0
        for _ in range(args.steps):  # interleaved: env step, then the bare forward on the same batch size
            t0 = time.perf_counter(); venv.step(stay); t1 = time.perf_counter()
            enc.encode_crops(crops); t2 = time.perf_counter()
            t_env += t1 - t0; t_enc += t2 - t1
        venv.close()
        results[n] = (n * args.steps / t_env, t_env / t_enc)
        print(f"{n} env(s): {results[n][0]:8.1f} env steps/s   env step / bare encoder forward = {results[n][1]:.2f}")
    print(f"vectorised speed-up ({args.envs} envs vs 1): {results[args.envs][0] / results[1][0]:.2f}x")


if __name__ == "__main__":
    main()
