"""First-frame adaptation cost, in frames of tracking, measured side by side on one 480p DAVIS frame.

    python benchmarks/bench_adapt.py [--checkpoint runs/pretrain_vae/checkpoint.pt] [--steps 60] [--threads 0]
        [--motion-net runs/folds/motion-f0/checkpoint.pt]

Prints the seconds of one adaptation (all weights; decoder only) and of one segmentation-tracker
step, and their ratios: how many tracked frames one adaptation costs. With ``--motion-net`` the same
for the motion network (``motion-posterior-adapt``: its pairs, its tracker step) and its adaptation
time against the single-crop network's. Absolute times on this
shared machine are noisy; the ratios are what to compare.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bmvtrack.adaptation import AdaptConfig, adapt_to_box
from bmvtrack.data.images import read_frame, read_mask
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.motion import MotionPrior, rbox_from_mask
from bmvtrack.paths import DAVIS2016_DIR
from bmvtrack.segmentation import load_segmenter, track_step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default=None, help="segmenter (default: an untrained default-size network)")
    p.add_argument("--steps", type=int, default=AdaptConfig.steps)
    p.add_argument("--frames", type=int, default=30, help="tracker steps timed")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--davis", default=str(DAVIS2016_DIR))
    p.add_argument("--motion-net", default=None, help="a motion-posterior checkpoint, timed the same way")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.davis)
    img, ann = root / "JPEGImages/480p/bear/00000.jpg", root / "Annotations/480p/bear/00000.png"
    if img.is_file():
        frame, mask = read_frame(img), read_mask(ann) > 127
    else:  # no shared data: a 854×480 frame with a textured ellipse
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 255, (480, 854, 3), dtype=np.uint8)
        yy, xx = np.mgrid[:480, :854]
        mask = ((xx - 420) / 120.0) ** 2 + ((yy - 250) / 80.0) ** 2 < 1
        frame[mask] = (200, 60, 40)
    if args.checkpoint:
        model, _ = load_segmenter(args.checkpoint)
    else:
        prior = MotionPrior.paper()
        model = build_model(ModelConfig(), prior.mean, prior.cov, prior.sample_std).eval().requires_grad_(False)
    box = rbox_from_mask(mask)

    track_step(model, frame, box)  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.frames):
        track_step(model, frame, box)
    step = (time.perf_counter() - t0) / args.frames
    times = {}
    for params in ("all", "decoder"):
        cfg = AdaptConfig(steps=args.steps, params=params)
        t0 = time.perf_counter()
        adapt_to_box(model, frame, box, cfg)
        times[params] = time.perf_counter() - t0
    print(f"torch threads {torch.get_num_threads()}, frame {frame.shape[1]}×{frame.shape[0]}, {args.steps} steps × "
          f"{AdaptConfig.batch_size} patches")
    print(f"tracker step (crop + network + box): {step * 1e3:.1f} ms")
    for params, sec in times.items():
        print(f"adaptation, {params:7s}: {sec:.2f} s = {sec / step:.0f} tracked frames")
    print(f"decoder-only / all-weights adaptation time: {times['decoder'] / times['all']:.2f}")
    if args.motion_net:
        from bmvtrack.agents.baselines.motion_posterior import MotionPosteriorTracker, load_motion_posterior

        net, _ = load_motion_posterior(args.motion_net)
        tracker = MotionPosteriorTracker(net)
        tracker.init(frame, box)
        tracker.update(frame)  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.frames):
            tracker.init(frame, box)
            tracker.update(frame)
        motion_step = (time.perf_counter() - t0) / args.frames
        t0 = time.perf_counter()
        adapt_to_box(net, frame, box, AdaptConfig(steps=args.steps))
        motion = time.perf_counter() - t0
        print(f"motion-posterior step: {motion_step * 1e3:.1f} ms; its adaptation: {motion:.2f} s = "
              f"{motion / motion_step:.0f} tracked frames")
        print(f"motion-network / single-crop adaptation time (all weights): {motion / times['all']:.2f}")


if __name__ == "__main__":
    main()
