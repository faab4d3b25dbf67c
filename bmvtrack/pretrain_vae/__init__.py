"""Pretraining the βMVAE / βMVUnet on object-centred patches: the library behind
``python -m bmvtrack.pretrain_vae`` (whose command line is ``command``).

One module per responsibility; ``trainer`` says what a run does, ``checkpoints`` what its
checkpoint (the contract the RL environment reads) holds:

- ``config``: ``PretrainConfig``, reading it, resolving it against a checkpoint to resume;
- ``folders``: claiming the output folder (``claim_out_dir``), the run folder's ``command.txt``;
- ``data``: training patches (``PatchDataset``), the resumable sampler, opening datasets;
- ``validation``: the held-out patches, their metrics and sample grids;
- ``prior``: the motion prior of a run (checkpoint, file, or measured);
- ``step``: the network, RAdam, the cyclical LR and one optimiser step;
- ``checkpoints``: the checkpoint's keys, writing it, resuming from it;
- ``rng``: the RNG states a resumed run restores;
- ``distributed``: torchrun / DDP;
- ``curves``: the loss curves (the paper's Figs 11–12);
- ``trainer``: ``Trainer`` and ``train``, the run itself.
"""
from __future__ import annotations

from bmvtrack.pretrain_vae.checkpoints import ARCH_KEYS, CHECKPOINT_VERSION
from bmvtrack.pretrain_vae.config import COMMAND, PretrainConfig, checkpoint_path, load_pretrain_config, resolve_config
from bmvtrack.pretrain_vae.curves import plot_loss_curves
from bmvtrack.pretrain_vae.data import PatchDataset, ResumableSampler, open_dataset
from bmvtrack.pretrain_vae.distributed import DistContext, init_distributed, resolve_device
from bmvtrack.pretrain_vae.folders import RUN_OUTPUTS, claim_out_dir
from bmvtrack.pretrain_vae.rng import rng_state, seed_everything, set_rng_state
from bmvtrack.pretrain_vae.step import STAT_KEYS
from bmvtrack.pretrain_vae.trainer import PretrainResult, Trainer, TrainingDiverged, train

__all__ = [
    "ARCH_KEYS", "CHECKPOINT_VERSION", "COMMAND", "RUN_OUTPUTS", "STAT_KEYS",
    "DistContext", "PatchDataset", "PretrainConfig", "PretrainResult", "ResumableSampler", "Trainer",
    "TrainingDiverged", "checkpoint_path", "claim_out_dir", "init_distributed", "load_pretrain_config", "main",
    "open_dataset", "plot_loss_curves", "resolve_config", "resolve_device", "rng_state", "seed_everything",
    "set_rng_state", "train",
]

from bmvtrack.pretrain_vae.command import main as main  # noqa: E402  (the command line over this library)
