"""How good is the segmenter's box as a measurement of the next box? A diagnostic, not a tracker.

    python scripts/one_step_probe.py --checkpoint CKPT --data PATH/davis2016 --resolution 240p --split dev/val
                                     [--gains 0,0.2,0.5,1] [--adapt-steps 0]

Per track it prints two mean rotated IoUs with the next annotated box:
- one step: the box fitted to the mask of a crop placed at the *previous annotated* box, against
  not moving (the previous annotated box itself);
- tracking with a constant-gain filter: the next box moves a fraction ``k`` of the way from the
  current box towards the fitted one (k = 0 never moves, k = 1 is the segmentation tracker).
With ``--adapt-steps`` the network is first fine-tuned on frame 0's box (bmvtrack.adaptation).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from bmvtrack.adaptation import AdaptConfig, adapt_to_box
from bmvtrack.cli import add_data_args, data_config_from_args
from bmvtrack.data.readers import VideoDataset
from bmvtrack.motion import RBox, rotated_iou
from bmvtrack.segmentation import load_segmenter, track_step
from bmvtrack.evaluate import track_ground_truth


def blend(box: RBox, measured: RBox | None, k: float) -> RBox:
    """Move ``k`` of the way to ``measured``: centre and angle linearly, sides geometrically."""
    if measured is None:
        return box
    da = ((measured.angle - box.angle + 90.0) % 180.0) - 90.0  # the nearest equivalent angle
    return RBox(box.cx + k * (measured.cx - box.cx), box.cy + k * (measured.cy - box.cy),
                box.w * (measured.w / box.w) ** k, box.h * (measured.h / box.h) ** k, box.angle + k * da)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    add_data_args(p)
    p.add_argument("--gains", default="0,0.2,0.5,1")
    p.add_argument("--adapt-steps", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base, _ = load_segmenter(args.checkpoint)
    ds = VideoDataset.from_config(data_config_from_args(args))
    gains = [float(g) for g in args.gains.split(",")]
    totals: dict[str, list[float]] = {"stay": [], "one step": [], **{f"k={k:g}": [] for k in gains}}
    for tr in ds.tracks():
        gt = track_ground_truth(ds, tr).rboxes
        model = base
        if args.adapt_steps:
            model = adapt_to_box(base, ds.frame(tr, 0), gt[0], AdaptConfig(steps=args.adapt_steps))
        rows: dict[str, list[float]] = {key: [] for key in totals}
        pairs = [(t, gt[t - 1], gt[t]) for t in range(1, len(tr)) if gt[t - 1] is not None and gt[t] is not None]
        for t, prev, nxt in pairs:
            rows["stay"].append(rotated_iou(prev, nxt))
            rows["one step"].append(rotated_iou(track_step(model, ds.frame(tr, t), prev).box, nxt))
        for k in gains:
            box = gt[0]
            for t in range(1, len(tr)):
                box = blend(box, track_step(model, ds.frame(tr, t), box).box, k)
                if gt[t] is not None:
                    rows[f"k={k:g}"].append(rotated_iou(box, gt[t]))
        print(f"{tr.name:20s} " + "  ".join(f"{key} {np.mean(v):.3f}" for key, v in rows.items()), flush=True)
        for key, v in rows.items():
            totals[key] += v
    print(f"{'all frames':20s} " + "  ".join(f"{key} {np.mean(v):.3f}" for key, v in totals.items()))


if __name__ == "__main__":
    main()
