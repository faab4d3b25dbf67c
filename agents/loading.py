"""Loading a trained agent run as a tracker: the agent's files, its resolved config and its encoder."""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Sequence

from bmvtrack.agents.baselines import make_tracker, motion_trackers, registered_tracker, segmentation_trackers
from bmvtrack.agents.policy_tracker import PolicyTracker
from bmvtrack.adaptation import AdaptConfig, SharedAdaptation
from bmvtrack.config import from_dict
from bmvtrack.paths import DEFAULT_MOTION_CHECKPOINT, DEFAULT_VAE_CHECKPOINT
from bmvtrack.envs.state_encoder import StateEncoder


def _load(path: str | Path):
    """``(model, config, meta, folder)`` of a train_sac run folder or checkpoint folder."""
    from bmvtrack.agents.agent_file import load_agent as load_files
    from bmvtrack.agents.train_sac import TrainConfig

    model, meta, folder = load_files(path)
    return model, from_dict(TrainConfig, meta["config"], source=str(folder / "agent.json")), meta, folder


def load_agent(path: str | Path):
    """``(model, config)`` of a train_sac run folder or checkpoint folder; nothing is unpickled."""
    model, cfg, _, _ = _load(path)
    return model, cfg


def policy_tracker_factory(model_path: str | Path, encoder: str | Path | None = None,
                           name: str | None = None, adapt: AdaptConfig | None = None,
                           shared: dict[str, SharedAdaptation] | None = None,
                           allow_other_encoder: bool = False) -> Callable[[], PolicyTracker]:
    """A zero-argument factory of PolicyTrackers sharing one loaded model and encoder.

    The encoder (``encoder``, else the one the agent was trained with) must be the very file the
    agent was trained on (SHA-256), unless ``allow_other_encoder``.

    An agent trained on adapted states (its config's ``adapt.steps > 0``) always adapts as it was
    trained, whatever ``adapt`` says: its state means nothing without it. With ``shared``,
    agents of the same encoder file and ``AdaptConfig`` share each track's adapted copy.
    """
    from bmvtrack.agents.train_sac import check_encoder

    model, cfg, meta, folder = _load(model_path)
    if cfg.adapt.steps > 0:
        adapt = cfg.adapt
    enc_path = Path(encoder or cfg.encoder or DEFAULT_VAE_CHECKPOINT)
    if not enc_path.is_file():
        from bmvtrack.checkpoint import CheckpointError

        raise CheckpointError(f"{enc_path}: encoder checkpoint of agent {folder} not found")
    check_encoder(meta, enc_path, str(folder), allow_other_encoder)
    one = None
    if shared is not None and adapt is not None and adapt.steps > 0:
        key = json.dumps([str(enc_path.resolve()), asdict(adapt)], sort_keys=True)
        one = shared.setdefault(key, SharedAdaptation(adapt))
    enc = StateEncoder.from_checkpoint(enc_path, kind=cfg.obs)
    enc.proposal = cfg.env.proposal != "none"
    space = model.action_space
    enc.cue_bounds = (space.low, space.high)  # the cue proposes motions the agent's actions can reach
    label = name or cfg.agent.algo
    return lambda: PolicyTracker(model, enc, space.low, space.high, template=cfg.env.template,
                                 context=cfg.env.context, name=label, adapt=adapt, shared=one,
                                 proposal=cfg.env.proposal)


def learned_tracker_factories(policies: list[str], names: list[str], segmenter: Path | None = None,
                              adapt: AdaptConfig | None = None,
                              adapted_policies: Sequence[str] = (),
                              allow_other_encoder: bool = False,
                              motion_net: Path | None = None) -> tuple[dict, list[str]]:
    """Factories of the learned trackers, and the names left for the registry (``make_tracker``).

    Learned trackers are the agents given as ``NAME=RUN_FOLDER`` (a train_sac run) and the βMVUnet segmentation
    trackers among ``names`` (the registry's ``segmentation_trackers()``), which share one loaded
    ``segmenter`` checkpoint (default: the default pretraining checkpoint). ``adapt`` configures
    first-frame adaptation: of ``segmentation-adapt`` (all weights) and of the agents given in
    ``adapted_policies`` (their cue's decoder only, so the state they were trained on is unchanged).
    The motion-posterior trackers among ``names`` share one loaded ``motion_net`` (default
    ``runs/motion/checkpoint.pt``).
    """
    adapt = adapt or AdaptConfig()
    out = {}
    shared: dict[str, SharedAdaptation] = {}  # one adaptation per track for agents of one encoder
    for item, adapted in [(p, False) for p in policies] + [(p, True) for p in adapted_policies]:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--policy expects NAME=RUN_FOLDER, got {item!r}")
        if name in out:
            raise ValueError(f"tracker name {name!r} given twice")
        out[name] = policy_tracker_factory(
            path, name=name, adapt=replace(adapt, params="decoder") if adapted else None, shared=shared,
            allow_other_encoder=allow_other_encoder)
    segs = [n for n in names if n in segmentation_trackers()]
    if segs:
        from bmvtrack.segmentation import load_segmenter

        model, _ = load_segmenter(segmenter or DEFAULT_VAE_CHECKPOINT)  # loaded once, shared
        for name in segs:
            out[name] = lambda name=name: make_tracker(name, model=model, adapt=adapt)
    motions = [n for n in names if n in motion_trackers()]
    if motions:
        from bmvtrack.agents.baselines.motion_posterior import load_motion_posterior

        net, _ = load_motion_posterior(motion_net or DEFAULT_MOTION_CHECKPOINT)
        seg = None
        if any(registered_tracker(n).options.get("segmenter") for n in motions):
            from bmvtrack.segmentation import load_segmenter

            seg, _ = load_segmenter(segmenter or DEFAULT_VAE_CHECKPOINT)
        for name in motions:
            extra = {"segmenter": seg} if registered_tracker(name).options.get("segmenter") else {}
            out[name] = lambda name=name, extra=extra: make_tracker(name, model=net, adapt=adapt, **extra)
    return out, [n for n in names if n not in segs and n not in motions]
