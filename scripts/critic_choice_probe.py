"""Does the trained critic know which move is right? Track with argmax Q over candidate moves.

    python scripts/critic_choice_probe.py RUN [RUN ...]            # score each run on its fold's held-out sequences
    python scripts/critic_choice_probe.py --summarize EXP [EXP ...]  # pool the scored runs with paired intervals

RUN is a motion-agent run of ``scripts/run_agent_folds.sh`` (``f<K>-<variant>-s<seed>``, trained with a
proposal tracker). Each frame, the tracker computes the run's state as the agent does and moves by the
candidate of highest min(Q₁, Q₂) of the run's trained critic:

- ``critic-cues``: the move onto the decoded mask's box (if the mask is not empty) or onto CSRT's box:
  a cue choice learned by RL, the same two candidates ``rule-colour`` picks between by hand;
- ``critic-all``: those two, the actor's own move π(s) and the posterior mean μ′.

Why: the actor trails its start on held-out video; a critic that ranks candidates better than the
colour rule would be RL value reached through a decision rather than a continuous correction.
Scores go to ``RUN/eval-critic/`` (one pass; the project's evaluation). ``--summarize`` compares them,
per sequence (mean over seeds), with the run's trained agent, its untrained start and ``rule-colour``.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch

from bmvtrack.adaptation import SharedAdaptation
from bmvtrack.agents import motion_agent as ma
from bmvtrack.config import from_dict, to_dict
from bmvtrack.data.readers import DataConfig, TrackFilter, VideoDataset
from bmvtrack.evaluate import evaluate_trackers, write_report
from bmvtrack.paths import DAVIS2016_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summarize_agents import collect, compare, per_sequence  # noqa: E402

RUN = re.compile(r"^f(\d+)-(.+)-s(\d+)$")
SUB = "eval-critic"


def critic_tracker(model, state: ma.MotionState, cfg: ma.MotionAgentConfig, mode: str,
                   adapt: SharedAdaptation | None) -> ma.MotionStateTracker:
    """The tracker that moves by the candidate of highest min(Q₁, Q₂) (``mode``: cues or all)."""
    low, high = model.action_space.low, model.action_space.high
    cue, mu = state.layout["search/motion"], state.layout["search/mu"]

    def act(obs: np.ndarray) -> np.ndarray:
        cands = [obs[state.proposal_move]] + ([obs[cue][:5]] if obs[cue][6] < 0.5 else [])
        if mode == "all":
            cands += [model.predict(obs, deterministic=True)[0], obs[mu]]
        acts = np.clip(np.stack(cands).astype(np.float32), low, high)
        with torch.no_grad():
            o = model.policy.obs_to_tensor(np.repeat(obs[None], len(acts), 0))[0]
            a = torch.as_tensor(model.policy.scale_action(acts), dtype=torch.float32)
            q = torch.min(torch.cat(model.critic(o, a), dim=1), dim=1).values
        return acts[int(torch.argmax(q))]

    return ma.MotionStateTracker(state, act, f"critic-{mode}", low, high, cfg.make_proposal(), adapt=adapt)


def score(run: Path, davis: str, folds: str) -> None:
    fold = int(RUN.match(run.name).group(1))  # type: ignore[union-attr]
    model, state, meta = ma.load(run)
    data = DataConfig(root=davis, layout="davis2016", resolution="240p", split=f"{folds}:{fold}:test",
                      filters=TrackFilter(max_box_fraction=1.0))  # as scripts/run_agent_folds.sh
    cfg = from_dict(ma.MotionAgentConfig, {**meta["config"], "data": to_dict(data)}, source=f"{run}: agent.json")
    if cfg.proposal == "none":
        raise SystemExit(f"{run}: trained without a proposal tracker; the critic choice needs one")
    ds = VideoDataset.from_config(data)
    tracks = list(ds.tracks())
    shared = SharedAdaptation(cfg.adapt, keep=len(tracks)) if cfg.adapt.steps > 0 else None
    trackers = {f"critic-{m}": (lambda m=m: critic_tracker(model, state, cfg, m, shared)) for m in ("cues", "all")}
    results = evaluate_trackers(trackers, ds, tracks, progress=False)
    write_report(results, run / SUB, title=f"critic choice, {run.name}")
    for r in results.overall():
        print(f"{run.name} {r['tracker']}: AUC {r['success_auc']:.3f}")


def summarize(exp: Path) -> None:
    chosen, _ = collect(exp, SUB, "success_auc")
    base, _ = collect(exp, "eval", "success_auc")
    seq = {n: per_sequence(t) for n, t in {**base, **chosen}.items()}
    variant = next(n for n in base if n.endswith("-untrained")).removesuffix("-untrained")
    print(f"## {exp}\n\n| tracker | AUC | − trained agent | − untrained | − rule-colour |\n|---|---|---|---|---|")
    for name in ("critic-cues", "critic-all"):
        if name not in seq:
            continue
        cells = [compare(seq[name], seq[ref])[0] for ref in (variant, f"{variant}-untrained", "rule-colour")]
        print(f"| {name} | {np.mean(list(seq[name].values())):.3f} | " + " | ".join(cells) + " |")
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--summarize", action="store_true", help="pool scored runs of each experiment folder")
    p.add_argument("--data", default=str(DAVIS2016_DIR))
    p.add_argument("--folds", default="configs/folds/davis2016_3fold.yaml")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for path in args.paths:
        summarize(path) if args.summarize else score(path, args.data, args.folds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
