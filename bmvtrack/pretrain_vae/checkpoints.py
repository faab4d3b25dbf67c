"""The pretraining checkpoint: what it holds, writing it, and resuming a run from it.

The checkpoint is the contract the RL environment reads (``load_checkpoint(path, kind="bmvae")``,
then ``ckpt["model"]`` and ``ckpt["model_config"]``); everything in it is a plain type or a tensor,
so ``weights_only=True`` loads it. Keys: kind, version, model, model_config, prior, config, epoch,
epoch_step, step, optimizer, scheduler, rng, best_val, val, wandb_id, run_name, run_id (a random id
that tells two runs apart even when their names, made of the start second, coincide), world_size.

Rank 0 writes ``<out_dir>/checkpoint.pt`` (latest) and ``<out_dir>/best.pt`` (best validation J),
each atomically; a state with non-finite weights is never written, so the last good checkpoint
is never overwritten by a diverged one. A resumed run restores the weights, the optimiser, the
schedule, its position in the epoch and the RNG states, so on CPU it continues the uninterrupted
run exactly. (Ranks > 0 of a resumed distributed run are re-seeded from ``(seed, rank, step)``;
only rank 0's RNG states are saved.)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bmvtrack.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bmvtrack.config import to_dict
from bmvtrack.models import ModelConfig
from bmvtrack.motion import MotionPrior
from bmvtrack.pretrain_vae.config import PretrainConfig, checkpoint_path
from bmvtrack.pretrain_vae.rng import rng_state, seed_everything, set_rng_state
from bmvtrack.pretrain_vae.step import NonFinite, Optimisation

CHECKPOINT_VERSION = 1
# ModelConfig keys that change parameter shapes: a checkpoint with other values cannot be resumed.
ARCH_KEYS = (
    "arch", "in_channels", "num_classes", "patch_size", "base_width", "decoder_width", "extra_stage",
    "extra_width", "extra_blocks", "z_channels", "num_parts", "part_size", "bottleneck", "norm",
)


@dataclass
class RunState:
    """Which run this is and how far it got: what a checkpoint carries besides the training state."""

    run_name: str
    run_id: str
    step: int = 0
    epoch: int = 0
    epoch_step: int = 0  # batches of ``epoch`` already done
    best_val: float | None = None
    last_val: dict[str, float] = field(default_factory=dict)
    wandb_id: str | None = None


def checkpoint_payload(cfg: PretrainConfig, opt: Optimisation, prior: MotionPrior, state: RunState, world: int,
                       params: dict[str, int]) -> dict[str, Any]:
    """The checkpoint (see the module docstring for the keys); plain types and tensors only."""
    return {
        "kind": "bmvae",
        "version": CHECKPOINT_VERSION,
        "model": {k: v.detach().cpu() for k, v in opt.net.state_dict().items()},
        "model_config": to_dict(cfg.model),
        "prior": prior.to_dict(),
        "config": to_dict(cfg),
        "epoch": state.epoch,
        "epoch_step": state.epoch_step,
        "step": state.step,
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "rng": rng_state(),
        "best_val": state.best_val,
        "val": dict(state.last_val),
        "wandb_id": state.wandb_id,
        "run_name": state.run_name,
        "run_id": state.run_id,
        "world_size": world,
        "params": dict(params),
    }


class CheckpointWriter:
    """Writes ``checkpoint.pt`` (and ``best.pt``) of ``out_dir``; remembers the last step it saved."""

    def __init__(self, out_dir: str | Path, last_saved_step: int | None = None) -> None:
        self.path = checkpoint_path(out_dir)
        self.best_path = Path(out_dir) / "best.pt"
        self.last_saved_step = last_saved_step

    def write(self, payload: dict[str, Any], best: bool = False) -> None:
        """Write atomically; raises ``NonFinite`` (nothing written) when a weight is not finite."""
        bad = [n for n, p in payload["model"].items() if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:
            raise NonFinite(f"non-finite weights in {bad[:3]}")
        save_checkpoint(self.path, payload)
        if best:
            save_checkpoint(self.best_path, payload)
        self.last_saved_step = payload["step"]


class CheckpointReader:
    """The checkpoint a run resumes from: read once, checked against the config, then restored."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.ckpt = load_checkpoint(self.path, kind="bmvae")

    def check_model_config(self, model: ModelConfig, say: Callable[[str], None]) -> None:
        """Refuse a network of another shape (``ARCH_KEYS``); say which other settings change."""
        saved = self.ckpt.get("model_config")
        if not isinstance(saved, dict):
            raise CheckpointError(f"{self.path}: checkpoint holds no model_config")
        want = to_dict(model)
        diff = {k: (saved.get(k), want[k]) for k in ARCH_KEYS if saved.get(k) != want[k]}
        if diff:
            desc = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
            raise CheckpointError(f"{self.path}: cannot resume, the checkpoint's network differs from the configured one ({desc})")
        other = {k: (saved.get(k), want[k]) for k in want if k not in ARCH_KEYS and saved.get(k) != want[k]}
        if other:
            say("note: resuming with changed model settings: "
                + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in other.items()))

    def restore(self, opt: Optimisation, state: RunState, steps_per_epoch: int, seed: int, rank: int) -> None:
        """Weights, optimiser, schedule, ``state`` and this rank's RNG states, as the run left them."""
        ckpt = self.ckpt
        try:
            opt.load_state(ckpt)
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{self.path}: checkpoint state does not fit the configured run ({first[:300]})") from None
        state.step = int(ckpt["step"])
        state.epoch = int(ckpt["epoch"])
        state.epoch_step = int(ckpt.get("epoch_step", 0))
        if state.epoch_step >= steps_per_epoch:  # the data changed size: start the next epoch
            state.epoch, state.epoch_step = state.epoch + 1, 0
        state.best_val = ckpt.get("best_val")
        state.last_val = dict(ckpt.get("val") or {})
        state.wandb_id = ckpt.get("wandb_id")
        state.run_name = ckpt.get("run_name") or state.run_name
        state.run_id = ckpt.get("run_id") or state.run_id
        if rank == 0 and ckpt.get("rng"):
            set_rng_state(ckpt["rng"])
        else:
            seed_everything(hash((seed, rank, state.step)) % 2**31)
