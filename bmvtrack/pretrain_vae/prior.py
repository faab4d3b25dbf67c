"""The motion prior of a pretraining run (the Gaussian the KL term pulls the latent towards).

A resumed run keeps its checkpoint's prior. A new run reads ``cfg.prior`` ("paper" = the paper's
prior); when that file is absent it is measured on the training data (``analyze_motion``), saved
there, and the run says so.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bmvtrack.analyze_motion import fit_prior, measure_dataset, motion_samples
from bmvtrack.data.readers import VideoDataset
from bmvtrack.motion import MotionPrior, PriorError
from bmvtrack.pretrain_vae.config import PretrainConfig
from bmvtrack.pretrain_vae.distributed import DistContext


def run_prior(cfg: PretrainConfig, ctx: DistContext, ckpt: dict[str, Any] | None, train_sets: list[VideoDataset],
              say: Callable[[str], None]) -> tuple[MotionPrior, str]:
    """The prior and where it came from (for the run's description)."""
    if ckpt is not None:
        prior = MotionPrior.from_dict(ckpt["prior"])
        return prior, f"from the checkpoint ({prior.source})"
    with ctx.main_first():  # rank 0 measures and writes a missing file, the others read it
        return _configured_prior(cfg, ctx, train_sets, say)


def _configured_prior(cfg: PretrainConfig, ctx: DistContext, train_sets: list[VideoDataset],
                      say: Callable[[str], None]) -> tuple[MotionPrior, str]:
    units = "relative" if cfg.model.input == "pair" else "action"
    if cfg.prior == "paper":
        if units == "relative":
            raise PriorError("pretrain config: a motion posterior (model.input: pair) needs a box-relative prior; "
                             "the paper's is over G_t — give a prior file path (measured when absent)")
        return MotionPrior.paper(), "the paper's (appendix 2.2), as configured"
    path = Path(cfg.prior)
    if path.is_file() or not ctx.is_main:  # ranks > 0: rank 0 wrote it before we got here
        prior = MotionPrior.load(path)
        if prior.units != units:
            raise PriorError(f"{path}: prior is over {prior.units} motion, model.input {cfg.model.input} needs "
                             f"{units} motion (give another prior path; a missing one is measured)")
        return prior, f"{path} ({prior.source})"
    measured = [tm for ds in train_sets for tm in measure_dataset(ds, cfg.box_method, progress=False)]
    roots = ", ".join(f"{dc.root} (split {dc.split or 'all'})" for dc in [cfg.data, *cfg.extra_data])
    prior = fit_prior(measured, f"measured by pretrain_vae on {roots}, {len(measured)} tracks", cfg.box_method,
                      fit=cfg.prior_fit, units=units, context=cfg.augment.context)
    prior.save(path)
    n = len(motion_samples(measured))
    say(f"no prior file at {path}: measured the motion prior on the training data "
        f"({len(measured)} tracks, {n} frame pairs) and saved it to {path}")
    return prior, f"{path} (measured now on the training data)"
