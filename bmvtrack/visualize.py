"""`python -m bmvtrack.visualize`: watch trackers on one sequence — MP4, GIF and an IoU-over-time plot.

Each panel shows the frame, the annotated rotated box (green), the tracker's box, its IoU, running
mean IoU and the five action values (for every tracker, the G_t that moved its box from the
previous frame: the agent's own action for a policy). Several trackers are tiled side by side.

``--out`` collects the videos of many sequences (files named after the track); an earlier video of
the same track is not replaced without ``--overwrite``, and the folder is locked while the command
writes it (``bmvtrack.run_folder``).
"""
from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

from bmvtrack.cli import add_data_args, data_config_from_args, run_main, writable_folder
from bmvtrack.config import ConfigError
from bmvtrack.data.readers import DataConfig, Track, VideoDataset
from bmvtrack.motion import motion_between
from bmvtrack.paths import RUNS_DIR
from bmvtrack.run_folder import claim_run_folder
from bmvtrack.evaluate import SequenceResult, run_tracker, score_sequence, track_ground_truth
from bmvtrack.video import PALETTE, overlay, tile, write_gif, write_mp4

MAX_LISTED = 20  # sequence names an unknown --sequence lists


def pick_track(ds: VideoDataset, sequence: str | None) -> Track:
    """The track named ``sequence`` (a track ``video/object`` or a video's first track); a name that
    matches nothing is a one-line ConfigError listing the valid names (the first few when many)."""
    tracks = ds.tracks()
    if not tracks:
        raise ConfigError(f"--sequence: the dataset at {ds.root} has no tracks to show")
    if sequence is None:
        return tracks[0]
    for t in tracks:
        if sequence in (t.name, t.sequence):
            return t
    names = list(dict.fromkeys(n for t in tracks for n in (t.sequence, t.name)))
    shown = ", ".join(names[:MAX_LISTED]) + (f", … ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else "")
    raise ConfigError(f"--sequence {sequence!r}: no such sequence or track; valid: {shown}")


def render_rollouts(ds: VideoDataset, track: Track, results: list[SequenceResult], ious: list[np.ndarray],
                    columns: int = 0) -> list[np.ndarray]:
    """One tiled image per frame of the track."""
    gt = track_ground_truth(ds, track).rboxes
    h, w = track.size
    frames = []
    for i in range(len(track)):
        frame = ds.frame(track, i)
        panels = []
        for k, (res, iou) in enumerate(zip(results, ious)):
            box, prev = res.box(i), res.box(i - 1) if i > 0 else None
            action = motion_between(prev, box, w, h) if (box is not None and prev is not None) else None
            seen = iou[1:i + 1]
            running = float(np.nanmean(seen)) if np.any(~np.isnan(seen)) else 1.0
            cur = 1.0 if i == 0 else iou[i]
            panels.append(overlay(frame, gt[i], box, res.tracker, i, cur, running, action, PALETTE[k % len(PALETTE)]))
        frames.append(tile(panels, columns))
    return frames


def plot_iou(results: list[SequenceResult], ious: list[np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bmvtrack.io import atomic_save

    fig, ax = plt.subplots(figsize=(8, 3.2))
    for k, (res, iou) in enumerate(zip(results, ious)):
        c = np.array(PALETTE[k % len(PALETTE)]) / 255
        ax.plot(np.arange(len(iou)), iou, label=f"{res.tracker} (mean {np.nanmean(iou[1:]):.2f})", color=c)
    ax.set_xlabel("frame"); ax.set_ylabel("rotated IoU"); ax.set_ylim(0, 1.02); ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8); ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save(path, lambda buf: fig.savefig(buf, format="png", dpi=100))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bmvtrack.visualize", description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument("--policy", action="append", default=[], metavar="NAME=RUN",
                   help="a trained agent (a train_sac run folder) shown as NAME (repeatable)")
    p.add_argument("--allow-other-encoder", action="store_true",
                   help="let an agent read states of an encoder file other than the one it was trained with")
    p.add_argument("--trackers", default="",
                   help="other registered trackers side by side, e.g. zero,csrt,segmentation,oracle "
                        "(every name: python -m bmvtrack.evaluate --help)")
    p.add_argument("--segmenter", type=Path, default=None, help="checkpoint of the 'segmentation' tracker")
    p.add_argument("--motion-net", type=Path, default=None,
                   help="checkpoint of the 'motion-posterior' tracker (default runs/motion/checkpoint.pt)")
    p.add_argument("--sequence", default=None, help="sequence or track name (default: the first track)")
    p.add_argument("--out", type=Path, default=RUNS_DIR / "visualize", help="output folder")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--columns", type=int, default=0, help="panels per row (0 = one row)")
    p.add_argument("--no-gif", action="store_true")
    p.add_argument("--no-wandb", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier video of the same track in --out")
    args = p.parse_args(argv)
    if args.fps < 1:
        p.error(f"--fps must be at least 1, got {args.fps}")
    if args.columns < 0:
        p.error(f"--columns must be >= 0, got {args.columns}")

    from bmvtrack.agents.baselines import make_tracker
    from bmvtrack.agents.loading import learned_tracker_factories

    names = [n.strip().lower() for n in args.trackers.split(",") if n.strip()]
    factories, names = learned_tracker_factories(args.policy, names, args.segmenter,
                                                   allow_other_encoder=args.allow_other_encoder,
                                                   motion_net=args.motion_net)
    factories.update({n: (lambda n=n: make_tracker(n)) for n in names})
    if not factories:
        p.error("nothing to show: give --policy NAME=RUN and/or --trackers")

    data_cfg = data_config_from_args(args)
    ds = VideoDataset.from_config(data_cfg)
    track = pick_track(ds, args.sequence)
    writable_folder(args.out)  # fail now, not after every tracker has run
    base = track.name.replace("/", "_")
    own = [f"{base}.mp4", f"{base}.gif", f"{base}_iou.png"]
    # locked while writing; temporaries: bmvtrack.io's .<name>.*.tmp and video.write_mp4's .<stem>.*.mp4
    with claim_run_folder(args.out, own, overwrite=args.overwrite, what=f"video of {track.name}", resume_flag=None,
                          temporaries=[".*.tmp", f".{glob.escape(base)}.*.mp4"]):
        return _render(args, ds, track, factories, data_cfg)


def _render(args: argparse.Namespace, ds: VideoDataset, track: Track, factories: dict, data_cfg: DataConfig) -> int:
    """Run the trackers on ``track`` and write the video, GIF and IoU plot into the claimed ``--out``."""
    gt = track_ground_truth(ds, track)
    results, ious = [], []
    for name, factory in factories.items():
        res = run_tracker(factory(), ds, track, gt.rboxes, name=name)
        results.append(res)
        ious.append(score_sequence(res, gt.rboxes, gt.aabbs).iou_rot)
    frames = render_rollouts(ds, track, results, ious, args.columns)
    base = track.name.replace("/", "_")  # the names main() claimed (no with_suffix: a name may hold a dot)
    mp4 = write_mp4(frames, args.out / f"{base}.mp4", args.fps)
    gif = None if args.no_gif else write_gif(frames, args.out / f"{base}.gif", args.fps)
    png = args.out / f"{base}_iou.png"
    plot_iou(results, ious, png, f"{track.name}: rotated IoU per frame")

    from bmvtrack.logging_wandb import RunLogger, WandbConfig, command_config, dataset_config, run_name

    config = command_config(args, data=dataset_config(data_cfg, ds), sequence=track.name, frames=len(track),
                            trackers=list(factories))
    logger = RunLogger(args.out, run_name("visualize", track.name.replace("/", "_")), "visualize", config,
                       WandbConfig(enabled=not args.no_wandb))
    logger.log({f"rollout/{r.tracker}/mean_iou": float(np.nanmean(i[1:])) for r, i in zip(results, ious)})
    logger.log_video("rollout/video", mp4, fps=args.fps)
    logger.log_image("rollout/iou_over_time", png)
    logger.finish()
    for r, i in zip(results, ious):
        print(f"{r.tracker:>14s}: mean rotated IoU {np.nanmean(i[1:]):.3f} over {len(i) - 1} frames")
    print(f"wrote {mp4}" + (f", {gif}" if gif else "") + f" and {png}")
    return 0


if __name__ == "__main__":
    run_main(main)
