"""`python -m bmvtrack.train_motion_agent`: train a motion agent (MV-SAC on the motion posterior) and score it.

One run: the agent of ``--variant`` (``rl``, ``rl-expert``, ``supervised``; bmvtrack.agents.motion_agent)
trained ``--steps`` environment steps on ``--split`` with the motion posterior ``--motion-net``, saved
in ``--out`` (``checkpoints/``), then scored on ``--eval-split`` with the project's evaluation
(``eval/``: one pass; ``eval-perturbed/``: the perturbation protocol, for recovery), beside the same
agent untrained and the hand rules on the same state (``rule-mu``: move by μ′; ``rule-mask``: move
onto the decoded mask's box; with a proposal tracker ``--set proposal=csrt`` also ``rule-proposal`` and
``rule-fuse``, and with ``--set colour=true`` ``rule-colour``). ``--score RUN`` scores a saved run
again on the data given (``--data``/``--split``, e.g. another dataset) into ``RUN/eval-<dataset>-<split>/``; with
``--step-scales`` also the agent's move shrunk towards its start's (a diagnostic of what RL learned).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bmvtrack.cli import add_data_args, data_config_from_args, run_main
from bmvtrack.io import atomic_write_text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bmvtrack.train_motion_agent", description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument("--motion-net", default=None, help="motion-posterior checkpoint (model.input: pair, reference: box)")
    p.add_argument("--score", default=None, metavar="RUN",
                   help="score the saved agent of RUN on --data/--split instead of training one")
    p.add_argument("--variant", choices=["rl", "rl-expert", "supervised"], default="rl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=6000, help="environment steps (default 6000)")
    p.add_argument("--eval-split", default=None, help="held-out split to score on (default: none, train only)")
    p.add_argument("--step-scales", type=float, nargs="+", default=[], metavar="S",
                   help="with --score: also the agent's move shrunk towards its untrained start's by each S "
                        "(r0 + S·(π − r0); a diagnostic of how far the learned correction helps)")
    p.add_argument("--perturb-every", type=int, default=20,
                   help="the perturbation protocol of the recovery evaluation (0: one pass only)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a MotionAgentConfig field, e.g. --set gamma=0.95 (repeatable)")
    p.add_argument("--out", default=None, help="run folder (training)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--no-wandb", action="store_true", help="do not log to W&B (offline by default)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from dataclasses import fields, replace

    from bmvtrack.agents import motion_agent as ma
    from bmvtrack.config import ConfigError, apply_overrides, from_dict, to_dict
    from bmvtrack.run_folder import claim_run_folder

    data = data_config_from_args(args)
    if args.step_scales and not args.score:
        raise ConfigError("--step-scales scores a saved agent: it needs --score RUN")
    if args.score:
        return rescore(args, data)
    if not args.motion_net or not args.out:
        raise ConfigError("training an agent needs --motion-net and --out")
    names = {f.name for f in fields(ma.MotionAgentConfig)} - {"data", "motion_net"}
    for item in args.overrides:
        if item.partition("=")[0].strip().split(".")[0] not in names:
            raise ConfigError(f"--set {item}: not a MotionAgentConfig field (one of {sorted(names)})")
    values = to_dict(ma.MotionAgentConfig())
    values.update(motion_net=args.motion_net, data=to_dict(data), variant=args.variant, steps=args.steps,
                  seed=args.seed, threads=args.threads)
    apply_overrides(values, args.overrides, ma.MotionAgentConfig)  # typed and range-checked like every config
    cfg = from_dict(ma.MotionAgentConfig, values, source="train_motion_agent + --set")
    out = Path(args.out)
    folder = claim_run_folder(out, ["checkpoints/", "eval/", "record.json"], overwrite=args.overwrite,
                              what="motion-agent run", resume_flag=None)
    from bmvtrack.logging_wandb import RunLogger, WandbConfig, command_config, run_name

    logger = RunLogger(out, run_name("train_motion_agent", cfg.variant), "train_motion_agent",
                       command_config(args, agent=cfg), WandbConfig(enabled=not args.no_wandb))
    try:
        state = cfg.make_state()
        model, record = ma.train(cfg, out, state, progress=None if args.quiet else print, log=logger.log)
        atomic_write_text(out / "record.json", json.dumps(record, indent=1))
        logger.summary({f"record/{k}": v for k, v in record.items() if isinstance(v, (int, float))})
        if args.eval_split:
            paths = score(cfg, model, state, replace(data, split=args.eval_split), out, args.perturb_every, args.seed)
            for sub, (rows, png) in paths.items():
                logger.log({f"{sub}/{r['tracker']}/{k}": r[k] for r in rows
                            for k in ("success_auc", "precision_20", "fps", "perturbed_recovered")
                            if isinstance(r.get(k), (int, float))})
                logger.log_image(f"{sub}/success_plot", png)
    finally:
        logger.finish()
        folder.release()
    return 0


def rescore(args: argparse.Namespace, data) -> int:
    """``--score RUN``: the saved agent, its untrained start and the rules on ``data``."""
    from bmvtrack.agents import motion_agent as ma
    from bmvtrack.config import from_dict, to_dict
    from bmvtrack.run_folder import claim_run_folder

    model, state, meta = ma.load(args.score)
    cfg = from_dict(ma.MotionAgentConfig, {**meta["config"], "data": to_dict(data)}, source=f"{args.score}: agent.json")
    name = f"eval-{Path(str(data.root)).name}-{str(data.split or 'all').replace('/', '_').replace(':', '_')}"
    out = Path(args.score)
    folder = claim_run_folder(out / name, ["overall.csv"], overwrite=args.overwrite, what="evaluation", resume_flag=None)
    try:
        score(cfg, model, state, data, out, args.perturb_every, cfg.seed, prefix=name, step_scales=args.step_scales)
    finally:
        folder.release()
    return 0


def score(cfg, model, state, data, out: Path, perturb_every: int, seed: int, prefix: str = "eval",
          step_scales: Sequence[float] = ()) -> dict:
    """The trained agent, the same agent untrained and the hand rules on ``data``; one pass and perturbed
    (and, per ``step_scales`` S, ``<agent>-step<S>``: ``motion_agent.step_scaled_tracker``).
    Returns, per report folder, its overall rows and its success plot."""
    from dataclasses import replace

    from bmvtrack.agents import motion_agent as ma
    from bmvtrack.data.readers import VideoDataset
    from bmvtrack.evaluate import Perturbation, evaluate_trackers, write_report

    from bmvtrack.adaptation import SharedAdaptation

    ds = VideoDataset.from_config(data)
    tracks = list(ds.tracks())
    # with adaptation, every tracker reads the same per-track copy (made once, kept for the second protocol)
    shared = SharedAdaptation(cfg.adapt, keep=len(tracks)) if cfg.adapt.steps > 0 else None
    # the same agent untrained (its weights do not depend on the training states, so no adaptation here)
    untrained = ma.build(replace(cfg, adapt=replace(cfg.adapt, steps=0)), state)[0]
    low, high = model.action_space.low, model.action_space.high
    name = f"motion-agent-{cfg.variant}"
    fresh = cfg.make_proposal  # each tracker gets its own proposal tracker
    trackers = {
        name: lambda: ma.agent_tracker(model, state, name, fresh(), adapt=shared),
        f"{name}-untrained": lambda: ma.agent_tracker(untrained, state, f"{name}-untrained", fresh(), adapt=shared),
        "rule-mu": lambda: ma.rule_tracker(state, "mu", "rule-mu", low, high, adapt=shared),
        "rule-mask": lambda: ma.rule_tracker(state, "mask", "rule-mask", low, high, adapt=shared),
    }
    for s in step_scales:
        trackers[f"{name}-step{s:g}"] = (lambda s=s: ma.step_scaled_tracker(model, untrained, state, s,
                                                                          f"{name}-step{s:g}", fresh(), shared))
    if cfg.proposal != "none":
        for rule in ("proposal", "fuse") + (("colour",) if cfg.colour else ()):
            trackers[f"rule-{rule}"] = lambda r=rule: ma.rule_tracker(state, r, f"rule-{r}", low, high, fresh(), shared)
    reports: dict = {}
    protocols = [(prefix, None)]
    if perturb_every > 0:
        protocols.append((f"{prefix}-perturbed", Perturbation(every=perturb_every, seed=seed)))
    for sub, perturbation in protocols:
        results = evaluate_trackers(trackers, ds, tracks, progress=False, perturbation=perturbation)
        paths = write_report(results, out / sub, title=f"{name} seed {seed} on {data.split}")
        reports[sub] = (results.overall(), paths["success_png"])
    return reports


if __name__ == "__main__":
    run_main(main)
