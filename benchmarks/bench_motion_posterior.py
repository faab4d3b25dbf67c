"""Step cost of the motion posterior against today's single-crop encoder, side by side at 480p.

Per frame, the ``motion-posterior`` tracker cuts three crops (reference, its mask or box, search),
runs the pair βMVUnet once and pastes its mask back; the ``segmentation`` tracker cuts one crop,
runs the single-crop βMVUnet, pastes and fits a box. Both are timed in the same run, interleaved
frame by frame, on the same 854×480 frames; each track's set-up (construction and ``init``) is
counted in its fps, as ``evaluate`` does. ``motion-posterior-mask`` adds, per track, the mask's
noise measured on 16 warps of frame 0, and per frame a box fitted to the decoded mask and the
Gaussian product. Untrained default-size networks unless checkpoints are given (the networks' cost
does not depend on the weights; the mask's does, so give ``--motion-net`` a trained one for it:
an untrained network's mask may be empty, and then nothing is fused).

    python benchmarks/bench_motion_posterior.py [--threads 2] [--frames 200] [--tracks 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bmvtrack.agents.baselines import MotionPosteriorTracker, SegmentationTracker
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.motion import RBox


def _network(checkpoint: str | None, pair: bool):
    if checkpoint:
        from bmvtrack.segmentation import load_segmenter

        return load_segmenter(checkpoint)[0]
    cfg = ModelConfig(input="pair", in_channels=7, keypoints=16) if pair else ModelConfig()
    return build_model(cfg, np.zeros(5), np.eye(5) * 0.01, np.full(5, 0.1)).eval().requires_grad_(False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--motion-net", default=None, help="motion-posterior checkpoint (default: untrained)")
    p.add_argument("--segmenter", default=None, help="single-crop βMVUnet checkpoint (default: untrained)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=200, help="frames per track")
    p.add_argument("--tracks", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pair_net, single_net = _network(args.motion_net, True), _network(args.segmenter, False)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 854, 3), dtype=np.uint8) for _ in range(8)]
    box = RBox(427, 240, 120, 80, 10)
    makers = {"motion-posterior": lambda: MotionPosteriorTracker(pair_net),
              "motion-posterior-mask": lambda: MotionPosteriorTracker(pair_net, measure="mask"),
              "segmentation": lambda: SegmentationTracker(single_net)}
    seconds = {k: 0.0 for k in makers}
    for _ in range(args.tracks):
        trackers = {}
        for name, make in makers.items():
            t0 = time.perf_counter()
            trackers[name] = make()
            trackers[name].init(frames[0], box)
            seconds[name] += time.perf_counter() - t0
        for i in range(1, args.frames):
            for name, tr in trackers.items():  # interleaved: the same noise for both
                t0 = time.perf_counter()
                tr.update(frames[i % len(frames)])
                seconds[name] += time.perf_counter() - t0
    n = args.tracks * args.frames
    fps = {k: n / s for k, s in seconds.items()}
    print(f"854×480 frames, {args.tracks} tracks × {args.frames} frames, torch threads {torch.get_num_threads()}")
    for name, v in fps.items():
        print(f"  {name:22s} {v:7.1f} fps (set-up included)")
    print(f"step cost motion-posterior / segmentation = {seconds['motion-posterior'] / seconds['segmentation']:.2f}")
    fused = trackers["motion-posterior-mask"].noise is not None
    print(f"step cost motion-posterior-mask / motion-posterior = "
          f"{seconds['motion-posterior-mask'] / seconds['motion-posterior']:.2f} (mask {'fused' if fused else 'empty: nothing fused'})")


if __name__ == "__main__":
    main()
