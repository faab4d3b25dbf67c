"""`python -m bmvtrack.pipeline`: the whole chain on the synthetic default, one step after another.

generate → analyse motion → pretrain the βMVUnet → train MV-SAC → evaluate against the baselines
on a synthetic *test* set (another generator seed: videos no step trains, tunes or selects on)
→ render a rollout video. Each step is the same command a user runs by hand (called in-process),
each prints where its artefacts are, and a finished step is not redone when its output exists
(``--force`` redoes everything). ``--quick`` is a ≤ 3-minute smoke version with tiny budgets.
The commands refuse to replace earlier results on their own (``bmvtrack.run_folder``); the pipeline
owns its output folders, so a step it decides to (re)do passes ``--overwrite``: a skipped step's
outputs are kept, a redone step's are replaced (an unfinished one from an interrupted pipeline, or
everything with ``--force``), and the evaluation and the video, redone every time, never keep
results of an earlier model.
Outputs go under ``./data`` and ``./runs`` (``BMVTRACK_DATA_DIR`` / ``BMVTRACK_RUNS_DIR`` move them);
the full job's videos are the synthetic default's folder (``paths.SYNTH_DIR``, which
``BMVTRACK_SYNTH_DIR`` moves). ``--quick`` generates its own small set and writes under
``runs/quick`` so that its tiny prior and checkpoint are never taken for the full job's finished steps.
W&B (offline by default): the runs of the steps share one group, ``pipeline-[quick-]<time>`` (or the
``WANDB_RUN_GROUP`` already set), and the pipeline's own run in it holds its resolved configuration
(budget, seed, folders) and each step's duration.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

QUICK = {
    "videos": 6, "frames": 16, "pretrain_min": 0.6, "pretrain_steps": 60, "rl_steps": 400, "rl_min": 1.0,
    "learning_starts": 150, "eval_every": 400, "test_videos": 4,
}
FULL = {
    "videos": 30, "frames": 40, "pretrain_min": 9.0, "pretrain_steps": 0, "rl_steps": 20_000, "rl_min": 14.0,
    "learning_starts": 1000, "eval_every": 5000, "test_videos": 15,
}
TEST_SEED_OFFSET = 1000  # the test set's generator seed is the job's seed + this: never the training videos


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.time()


def _done(t0: float, *paths: Path) -> float:
    where = ", ".join(str(p) for p in paths)
    took = time.time() - t0
    print(f"--- done in {took:.0f}s: {where}", flush=True)
    return took


@contextmanager
def _env(name: str, value: str):
    """``os.environ[name] = value`` inside the block (the commands run in-process read it)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bmvtrack.pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="≤ 3-minute smoke run with tiny budgets")
    p.add_argument("--force", action="store_true", help="redo steps whose outputs already exist")
    p.add_argument("--no-wandb", action="store_true", help="do not log to W&B")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from bmvtrack.logging_wandb import run_name

    name = run_name("pipeline", "quick" if args.quick else "")
    group = os.environ.get("WANDB_RUN_GROUP") or name
    with _env("WANDB_RUN_GROUP", group):  # every step's W&B run joins the pipeline's group
        return _run(args, name, group)


def _run(args: argparse.Namespace, run: str, group: str) -> int:
    budget = QUICK if args.quick else FULL

    from bmvtrack import analyze_motion, evaluate, paths, pretrain_vae, train_sac, visualize
    from bmvtrack.data.synth import SynthConfig, ensure_synthetic

    wandb = ["--no-wandb"] if args.no_wandb else []
    start = time.time()
    name = "synth-quick" if args.quick else "synth"
    runs = paths.RUNS_DIR / "quick" if args.quick else paths.RUNS_DIR
    prior = runs / paths.DEFAULT_PRIOR.relative_to(paths.RUNS_DIR)
    vae_dir = runs / paths.DEFAULT_VAE_DIR.relative_to(paths.RUNS_DIR)
    # the full job runs in the synthetic default's folder (its budget is the default's size, so with
    # --seed 0 these are the default's videos); --quick on a small set of its own
    data_root = paths.DATA_DIR / name if args.quick else paths.SYNTH_DIR
    layout = "davis2017"
    data_args = ["--data", str(data_root), "--layout", layout]

    t0 = _step("1/6 synthetic data")
    ensure_synthetic(data_root, layout=layout, videos=budget["videos"], seed=args.seed,
                     cfg=SynthConfig(frames=budget["frames"]))
    took = {"data": _done(t0, data_root)}

    t0 = _step("2/6 motion prior (training split)")
    robust = prior.with_name("prior_robust.json")
    if args.force or not prior.is_file():
        analyze_motion.main([*data_args, "--split", "train", "--out", str(prior), "--overwrite"])
    if args.force or not robust.is_file():  # the bulk of the motion (for agent.prior_file=...; the default cue agent uses the env prior)
        analyze_motion.main([*data_args, "--split", "train", "--fit", "robust", "--out", str(robust), "--overwrite"])
    took["motion_prior"] = _done(t0, prior, prior.with_suffix(".png"), robust)

    t0 = _step("3/6 pretrain the βMVUnet")
    ckpt = vae_dir / paths.DEFAULT_VAE_CHECKPOINT.name
    if args.force or not ckpt.is_file():
        sets = [f"data.root={data_root}", f"time_budget_min={budget['pretrain_min']}", f"prior={prior}",
                f"out_dir={vae_dir}", f"seed={args.seed}"]
        if budget["pretrain_steps"]:
            sets.append(f"max_steps={budget['pretrain_steps']}")
        # no checkpoint: at most an interrupted run's logs are there; --force: redo it
        pretrain_vae.main([*sum((["--set", s] for s in sets), []), *wandb, "--overwrite"])
    took["pretrain_vae"] = _done(t0, ckpt)

    t0 = _step("4/6 train MV-SAC")
    agent_dir = runs / "train_sac" / f"mvsac-s{args.seed}"
    if args.force or not (agent_dir / "checkpoints" / "latest").is_file():
        sets = [f"env.data.root={data_root}", f"env.data.layout={layout}", f"env.prior={prior}",
                f"agent.learning_starts={budget['learning_starts']}", f"eval_every={budget['eval_every']}",
                f"checkpoint_every={budget['eval_every']}"]
        train_sac.main(["--encoder", str(ckpt), "--timesteps", str(budget["rl_steps"]), "--time-budget",
                        str(budget["rl_min"]), "--seed", str(args.seed), "--out", str(agent_dir),
                        *sum((["--set", s] for s in sets), []), *wandb, "--overwrite"])
    took["train_sac"] = _done(t0, agent_dir)

    t0 = _step("5/6 evaluate against the baselines (synthetic test set: videos no step has seen)")
    test_root = paths.DATA_DIR / f"{name}-test"
    ensure_synthetic(test_root, layout=layout, videos=budget["test_videos"], seed=args.seed + TEST_SEED_OFFSET,
                     cfg=SynthConfig(frames=budget["frames"]))
    eval_dir = runs / "evaluate" / f"{name}-test"
    trackers = "zero,kcf,csrt,segmentation,oracle" if args.quick else "zero,mil,kcf,csrt,segmentation,oracle"
    evaluate.main(["--data", str(test_root), "--layout", layout, "--trackers", trackers, "--segmenter", str(ckpt),
                   "--policy", f"mvsac={agent_dir}", "--out", str(eval_dir), "--no-progress", *wandb,
                   "--overwrite"])
    took["evaluate"] = _done(t0, eval_dir / "overall.md", eval_dir / "success.png")

    t0 = _step("6/6 rollout video")
    vis_dir = runs / "visualize"
    visualize.main([*data_args, "--split", "val", "--policy", f"mvsac={agent_dir}",
                    "--trackers", "csrt,segmentation", "--segmenter", str(ckpt), "--out", str(vis_dir), *wandb,
                    "--overwrite"])
    took["visualize"] = _done(t0, vis_dir)
    print(f"\npipeline finished in {(time.time() - start) / 60:.1f} min", file=sys.stderr)

    from bmvtrack.logging_wandb import RunLogger, WandbConfig, command_config

    config = command_config(args, group=group, budget=budget, data=data_root, layout=layout, runs=runs, prior=prior,
                            checkpoint=ckpt, agent=agent_dir, evaluation=eval_dir, videos=vis_dir)
    logger = RunLogger(runs / "pipeline", run, "pipeline", config, WandbConfig(enabled=not args.no_wandb, group=group))
    logger.log({f"pipeline/{k}_s": v for k, v in took.items()} | {"pipeline/total_s": time.time() - start})
    logger.finish()
    return 0


if __name__ == "__main__":
    from bmvtrack.cli import run_main

    run_main(main)
