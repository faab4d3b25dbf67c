"""The configuration of a pretraining run: ``PretrainConfig`` (YAML ``configs/pretrain_*.yaml``,
strict keys), reading it, and resolving it against a checkpoint to resume."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bmvtrack import paths
from bmvtrack.checkpoint import CheckpointError, load_checkpoint
from bmvtrack.config import ConfigError, apply_overrides, from_dict, load_config, merge_into, to_dict
from bmvtrack.data.pair_sampler import PairConfig
from bmvtrack.data.patch_sampler import AugmentConfig
from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.logging_wandb import WandbConfig
from bmvtrack.models import ModelConfig

COMMAND = "pretrain_vae"


def _synthetic_data() -> DataConfig:
    """The default training data: the synthetic default (``paths.SYNTH_DIR``; ``open_dataset``
    generates it), with every annotated frame: tracks whose object vanishes for a while and large
    objects still give good patches (the paper's filters matter for tracking episodes)."""
    return DataConfig(root=str(paths.SYNTH_DIR), layout="davis2017", split="train",
                      filters=TrackFilter(absent="keep", max_box_fraction=1.0))


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs (YAML: ``configs/pretrain_*.yaml``; strict keys)."""

    model: ModelConfig = field(default_factory=ModelConfig)  # the network (default: small βMVUnet, 96 px)
    data: DataConfig = field(default_factory=_synthetic_data)  # training dataset (split = training split)
    extra_data: list[DataConfig] = field(default_factory=list)  # more training datasets, mixed in uniformly per patch
    val_split: str | None = "val"  # held-out split of `data` for validation (None: no validation, no best.pt)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # box jitter, flips, colour noise
    pairs: PairConfig = field(default_factory=PairConfig)  # real and warped training pairs (model.input: pair)
    wandb: WandbConfig = field(default_factory=WandbConfig)  # W&B (offline by default)
    batch_size: int = field(default=32, metadata={"ge": 1})  # patches per step and per process (paper: 32)
    # Paper: RAdam, cyclical LR between 5e-5 and 1e-4 (920 epochs on a GPU). A 10-minute CPU run
    # from scratch needs larger steps: after 150 steps on the synthetic default, val J 0.35 with the
    # paper's range, 0.55 with this one, 0.56 with 1e-3…4e-3 (noisier); see configs/pretrain_default.yaml.
    lr_min: float = field(default=5e-4, metadata={"gt": 0.0})  # lower bound of the cyclical learning rate (paper: 5e-5)
    lr_max: float = field(default=2e-3, metadata={"gt": 0.0})  # upper bound of the cyclical learning rate (paper: 1e-4)
    cycle_steps: int = field(default=400, metadata={"ge": 2})  # steps of one full LR cycle (up and down; Smith: 4–20 epochs' worth)
    cycle_mode: Literal["triangular", "triangular2"] = "triangular"  # triangular2 halves the amplitude every cycle
    # cyclic: the paper's triangular cycles; cosine: one decay from lr_max to lr_min over max_steps
    # (the textbook U-Net's schedule, so that the weights are taken at a learning rate near 0)
    lr_schedule: Literal["cyclic", "cosine"] = "cyclic"
    # radam: the paper's; adam (ours): the textbook U-Net's, to compare training loops on one network
    optimizer: Literal["radam", "adam"] = "radam"
    weight_decay: float = field(default=0.0, metadata={"ge": 0.0})  # the optimiser's (L2) weight decay
    # RAdam's first ~5 steps are un-adapted SGD steps (lr × gradient); β·KL against a strongly
    # correlated prior has curvature ~1e4, so unclipped they diverge (measured: loss 284 → inf in 4 steps).
    grad_clip: float = field(default=1.0, metadata={"ge": 0.0})  # clip the global gradient norm to this (0 = no clipping; the norm is always checked)
    epochs: int = field(default=30, metadata={"ge": 1})  # passes over the training patches (the time budget may stop the run earlier)
    max_steps: int = field(default=0, metadata={"ge": 0})  # stop after this many optimiser steps in all (0 = no limit)
    time_budget_min: float = field(default=9.0, metadata={"ge": 0.0})  # wall-clock budget of one invocation, final validation included (0 = none)
    seed: int = field(default=0, metadata={"ge": 0})  # model init, shuffling and jitter
    num_workers: int = field(default=0, metadata={"ge": 0})  # DataLoader worker processes (0 = load in the training process)
    threads: int = field(default=0, metadata={"ge": 0})  # torch intra-op threads, set by the command (0 = torch's default)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    out_dir: str = str(paths.DEFAULT_VAE_DIR)  # checkpoint.pt / best.pt here, the run folder below it
    prior: str = str(paths.DEFAULT_PRIOR)  # prior file; measured on the training data and saved if absent; "paper" = paper's prior
    box_method: Literal["minarearect", "principal"] = "minarearect"  # rotated box of a mask (patches and prior)
    prior_fit: Literal["gaussian", "robust"] = "gaussian"  # a prior measured by this run: sample moments (paper) or the bulk's Gaussian
    checkpoint_every: int = field(default=200, metadata={"ge": 0})  # also save every N steps (0 = only at epoch ends and at the end)
    log_every: int = field(default=10, metadata={"ge": 1})  # log training scalars every N steps (means over those steps)
    val_max_patches: int = field(default=1024, metadata={"ge": 0})  # validation patches (evenly spaced subset when more; 0 = all)
    sample_masks: int = field(default=8, metadata={"ge": 0})  # patches in the per-epoch sample-mask grid (0 = none)
    tag: str = ""  # run-name tag: pretrain_vae-<tag>-<time>

    def __post_init__(self) -> None:
        """Ranges (field metadata) and the checks that involve two fields, also for configs built in code."""
        from bmvtrack.config import validate

        validate(self, source="pretrain config")
        if not self.lr_min <= self.lr_max:
            raise ConfigError(f"pretrain config: need 0 < lr_min <= lr_max, got {self.lr_min}, {self.lr_max}")
        if self.lr_schedule == "cosine" and not self.max_steps:
            raise ConfigError("pretrain config: lr_schedule cosine decays over max_steps, which is 0 (set max_steps)")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"pretrain config: device must be auto, cpu, cuda or cuda:N, got {dev!r}")


def load_pretrain_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """Read a PretrainConfig YAML strictly (``load_config``); each ``extra_data`` entry starts
    from the pretraining track filters (every annotated frame), not ``DataConfig``'s own."""

    def extra_data_filters(data: dict[str, Any]) -> None:
        if isinstance(data.get("extra_data"), list):
            filters = to_dict(_synthetic_data())["filters"]
            data["extra_data"] = [merge_into({"filters": dict(filters)}, e) if isinstance(e, dict) else e
                                  for e in data["extra_data"]]

    return load_config(PretrainConfig, path, overrides, adjust=extra_data_filters)


def checkpoint_path(out_dir: str | Path) -> Path:
    """The latest checkpoint of a run folder (the environment's default)."""
    return Path(out_dir) / "checkpoint.pt"


def resolve_config(
    config_path: str | Path | None, overrides: list[str] | None = None, resume: str | Path | None = None,
    say: Callable[[str], None] = print,
) -> tuple[PretrainConfig, Path | None]:
    """The run's config and the checkpoint to resume from (None: a new run).

    ``resume="auto"`` means ``<out_dir>/checkpoint.pt`` when it exists (else a new run). When
    resuming without an explicit config file, the checkpoint's own config is the base and the
    overrides apply on top of it, so ``--resume auto`` alone continues a run as it was configured.
    """
    overrides = list(overrides or [])
    cfg = load_pretrain_config(config_path, overrides)
    if resume is None:
        return cfg, None
    if str(resume) == "auto":
        path = checkpoint_path(cfg.out_dir)
        if not path.is_file():
            say(f"--resume auto: no checkpoint at {path}; starting a new run")
            return cfg, None
    else:
        path = Path(resume)
    ckpt = load_checkpoint(path, kind="bmvae")
    if config_path is None:
        data = ckpt.get("config")
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: checkpoint holds no run config; pass --config")
        data = json.loads(json.dumps(data))  # a private copy
        apply_overrides(data, overrides)
        cfg = from_dict(PretrainConfig, data, source=f"{path} [config]" + (" + overrides" if overrides else ""))
    return cfg, path
