"""Pretraining the βMVAE / βMVUnet on object-centred patches: the training loop behind
``python -m bmvtrack.pretrain_vae``.

What a run does (one ``Trainer``):

- training patches come from ``PatchSampler`` over the training datasets (``data`` plus optional
  ``extra_data``), with fresh box jitter, flips and colour noise every epoch; validation patches are
  the deterministic paper crops of the held-out split (``val_split``), cut once and kept in memory;
- the motion prior is read from ``cfg.prior``; when that file is absent it is measured on the
  training data (``motion_stats``), saved there, and the run says so;
- RAdam with the cyclical learning rate (triangular, ``lr_min`` … ``lr_max``), loss
  ``loss_from_config`` (weighted CE + (1 − soft Jaccard) + β·KL, eqs. 2–3);
- a non-finite loss or gradient stops the run with a message; the last good checkpoint is never
  overwritten by a diverged state;
- ``time_budget_min`` stops the run cleanly (final validation and checkpoint included) before the
  budget is spent; it counts from the start of ``Trainer`` (data preparation included);
- rank 0 first claims ``out_dir`` (``claim_out_dir``): locked against a second writer for the whole
  run; a folder holding another run (checkpoint.pt, best.pt, a run folder) is refused unless
  ``overwrite`` — a new run's first validation would otherwise replace the old ``best.pt``;
- rank 0 logs (``RunLogger``: ``metrics.jsonl`` always, W&B when enabled), shows a tqdm bar, writes
  ``<out_dir>/checkpoint.pt`` (latest) and ``<out_dir>/best.pt`` (best validation J), per-epoch
  sample-mask grids, and at the end the loss curves (the paper's Figs 11–12).

The checkpoint is the contract the RL environment reads (``load_checkpoint(path, kind="bmvae")``,
then ``ckpt["model"]`` and ``ckpt["model_config"]``); everything in it is a plain type or a tensor,
so ``weights_only=True`` loads it. Keys: kind, version, model, model_config, prior, config, epoch,
epoch_step, step, optimizer, scheduler, rng, best_val, val, wandb_id, run_name, run_id (a random id
that tells two runs apart even when their names, made of the start second, coincide), world_size.

Distributed (launched by ``torchrun``; ``WORLD_SIZE > 1`` in the environment): gloo on CPU, nccl on
CUDA, a ``DistributedSampler``, the model wrapped in ``DistributedDataParallel``; rank 0 alone
validates, logs and saves. ``batch_size`` is per process (the effective batch is
``batch_size × world_size``): the paper's "batch" bottleneck computes Σ′ over the *local* batch, so
each process keeps the paper's 32 samples per Σ′ rather than a fraction of it. BatchNorm
statistics are also per process (no SyncBatchNorm), as usual for DDP.

Reproducibility: the jitter of a training patch is drawn from a generator seeded by
``(seed, epoch, index)``, so it does not depend on how patches are split across workers or ranks;
the shuffling order is the ``DistributedSampler`` permutation of ``(seed, epoch)``. A resumed run
skips the batches of the current epoch it has already done and restores the torch / numpy /
Python RNG states, so on CPU it continues the uninterrupted run exactly. (Ranks > 0 of a resumed
distributed run are re-seeded from ``(seed, rank, step)``; only rank 0's RNG states are saved.)
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm.auto import tqdm

from bmvtrack import paths
from bmvtrack.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bmvtrack.config import ConfigError, apply_overrides, from_dict, load_config, merge_into, save_config, to_dict
from bmvtrack.data.patch_sampler import AugmentConfig, PatchSampler
from bmvtrack.data.readers import DataConfig, TrackFilter, VideoDataset
from bmvtrack.io import atomic_save, atomic_write_text
from bmvtrack.logging_wandb import RunLogger, WandbConfig, read_metrics, run_name
from bmvtrack.metrics import mahalanobis_gaussians
from bmvtrack.models import ModelConfig, build_model, count_parameters, loss_from_config
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import MotionPrior
from bmvtrack.analyze_motion import fit_prior, measure_dataset, motion_samples
from bmvtrack.run_folder import RunFolder, RunFolderError, claim_run_folder

COMMAND = "pretrain_vae"
CHECKPOINT_VERSION = 1
STAT_KEYS = ("total", "cons", "ce", "jaccard", "kl")
# ModelConfig keys that change parameter shapes: a checkpoint with other values cannot be resumed.
ARCH_KEYS = (
    "arch", "in_channels", "num_classes", "patch_size", "base_width", "decoder_width", "extra_stage",
    "extra_width", "extra_blocks", "z_channels", "num_parts", "part_size", "bottleneck", "norm",
)


def _synthetic_data() -> DataConfig:
    # Pretraining uses every annotated frame: tracks whose object vanishes for a while and large
    # objects still give good patches (the paper's filters matter for tracking episodes).
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
    wandb: WandbConfig = field(default_factory=WandbConfig)  # W&B (offline by default)
    batch_size: int = field(default=32, metadata={"ge": 1})  # patches per step and per process (paper: 32)
    # Paper: RAdam, cyclical LR between 5e-5 and 1e-4 (920 epochs on a GPU). A 10-minute CPU run
    # from scratch needs larger steps: after 150 steps on the synthetic default, val J 0.35 with the
    # paper's range, 0.55 with this one, 0.56 with 1e-3…4e-3 (noisier); see configs/pretrain_default.yaml.
    lr_min: float = field(default=5e-4, metadata={"gt": 0.0})  # lower bound of the cyclical learning rate (paper: 5e-5)
    lr_max: float = field(default=2e-3, metadata={"gt": 0.0})  # upper bound of the cyclical learning rate (paper: 1e-4)
    cycle_steps: int = field(default=400, metadata={"ge": 2})  # steps of one full LR cycle (up and down; Smith: 4–20 epochs' worth)
    cycle_mode: Literal["triangular", "triangular2"] = "triangular"  # triangular2 halves the amplitude every cycle
    weight_decay: float = field(default=0.0, metadata={"ge": 0.0})  # RAdam weight decay
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
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"pretrain config: device must be auto, cpu, cuda or cuda:N, got {dev!r}")


# --------------------------------------------------------------------------- configuration


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


# What makes an out_dir hold a run: its checkpoints and its run folders (logs, samples, command).
RUN_OUTPUTS = ("checkpoint.pt", "best.pt", f"{COMMAND}-*/")


def _identity(ckpt: dict[str, Any]) -> tuple[str, str | None]:
    """What tells runs apart: ``run_id`` (random, per run), else (older checkpoints) ``run_name``."""
    return ("run_id", ckpt["run_id"]) if ckpt.get("run_id") else ("run_name", ckpt.get("run_name") or None)


def _same_run(a: dict[str, Any], path: Path) -> bool:
    """Whether the checkpoint at ``path`` belongs to the run of checkpoint ``a`` (unreadable: no)."""
    try:
        b = load_checkpoint(path, kind="bmvae")
    except CheckpointError:
        return False
    if a.get("run_id") and b.get("run_id"):
        return a["run_id"] == b["run_id"]
    return bool(a.get("run_name")) and a.get("run_name") == b.get("run_name")


def claim_out_dir(out_dir: str | Path, resume_ckpt: dict[str, Any] | None = None,
                  resume_path: str | Path | None = None, overwrite: bool = False) -> RunFolder:
    """Lock ``out_dir`` for this run; refuse to replace another run's checkpoints without ``overwrite``.

    A new run needs a folder without checkpoints or run folders (``--overwrite`` removes them).
    A resumed run may write into the folder only when the checkpoints there are its own (the
    same ``run_id``, or ``run_name`` for older checkpoints) or there are none: continuing run A into a folder holding run B would
    replace B's ``checkpoint.pt`` and ``best.pt`` just as a new run would. ``--overwrite`` never
    removes the checkpoint being resumed.
    """
    out_dir = Path(out_dir)
    resume_path = Path(resume_path) if resume_path is not None else None
    outputs = list(RUN_OUTPUTS)
    if resume_path is not None and resume_path.resolve().parent == out_dir.resolve() and resume_path.name in outputs:
        outputs.remove(resume_path.name)  # e.g. --resume <out>/best.pt --overwrite: keep what is resumed
    same = False
    if resume_ckpt is not None:
        mine = resume_ckpt.get("run_name")
        others = []
        for name in ("checkpoint.pt", "best.pt"):
            path = out_dir / name
            if not path.is_file() or (resume_path is not None and path.resolve() == resume_path.resolve()):
                continue
            if not _same_run(resume_ckpt, path):
                others.append(name)
        same = not others
        if same and overwrite:
            raise RunFolderError(f"{out_dir}: --overwrite would delete the run that --resume continues ({mine}); "
                                 "pass only one of them")
        if others and not overwrite:
            raise RunFolderError(f"{out_dir}: holds another pretraining run ({', '.join(others)}) than the one "
                                 f"--resume continues ({mine}); pass --overwrite to replace it, or choose another --out")
    # --resume auto is a way on only where there is a checkpoint to continue
    hint = "--resume auto" if checkpoint_path(out_dir).is_file() else None
    return claim_run_folder(out_dir, outputs, resume=same, overwrite=overwrite, what="pretraining run",
                            resume_flag=hint)


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


# --------------------------------------------------------------------------- data


class PatchDataset(Dataset):
    """Training patches over one or more ``PatchSampler``s: ``(uint8 S×S×3, bool S×S)`` tensors.

    The jitter of item ``i`` in epoch ``e`` comes from ``default_rng((seed, e, i))``, so the data do
    not depend on the number of workers or ranks. ``augment=False`` gives the paper's plain crop.
    """

    def __init__(self, samplers: list[PatchSampler], seed: int, augment: bool = True) -> None:
        self.samplers = samplers
        self.seed = seed
        self.augment = augment
        self.epoch = 0
        self.offsets = np.cumsum([0] + [len(s) for s in samplers])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[PatchSampler, int]:
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.samplers[k], index - int(self.offsets[k])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        sampler, local = self.locate(index)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.augment else None
        patch, mask = sampler.sample(local, rng)
        return torch.from_numpy(patch), torch.from_numpy(mask)


class ResumableSampler(Sampler[int]):
    """A ``DistributedSampler`` (one replica when not distributed) that can skip finished batches."""

    def __init__(self, n: int, world: int, rank: int, seed: int, batch_size: int) -> None:
        self.base = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.batch_size = batch_size
        self.skip_batches = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.skip_batches = skip_batches

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.base)[self.skip_batches * self.batch_size:])

    def __len__(self) -> int:
        return max(len(self.base) - self.skip_batches * self.batch_size, 0)

    @property
    def batches_per_epoch(self) -> int:
        return len(self.base) // self.batch_size


def _is_default_synthetic(root: str) -> bool:
    return Path(root).resolve() == paths.SYNTH_DIR.resolve()


def open_dataset(dc: DataConfig, progress: bool = True) -> VideoDataset:
    """A dataset from config; the synthetic default is generated when absent (``ensure_synthetic``)."""
    if _is_default_synthetic(dc.root):
        from bmvtrack.data.synth import ensure_synthetic

        ensure_synthetic(paths.SYNTH_DIR, layout="davis2017", progress=progress)
    return VideoDataset.from_config(dc)


def prior_from_dict(d: dict[str, Any]) -> MotionPrior:
    """A ``MotionPrior`` from its ``to_dict()`` form (as stored in checkpoints)."""
    return MotionPrior(mean=d["mean"], cov=d["cov"], count=int(d.get("count", 0)),
                       quantiles=d.get("quantiles", {}), source=d.get("source", ""),
                       box_method=d.get("box_method", "minarearect"), eps_std=d.get("eps_std"))


def _evenly_spaced(n: int, k: int) -> np.ndarray:
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


# --------------------------------------------------------------------------- distributed


@dataclass
class DistContext:
    """Rank, local rank and world size of this process; ``owns_group``: we initialised it."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. writes a file), the others after it."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    return torch.device(name)


def init_distributed(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), resolve_device(device_name)
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(device_name, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistContext(rank=rank, local_rank=local, world=world, owns_group=owns), device


# --------------------------------------------------------------------------- RNG state


def rng_state() -> dict[str, Any]:
    """torch (and CUDA), numpy (global bit generator) and Python ``random`` states, plain types only."""
    np_state = np.random.get_state(legacy=False)
    bit = dict(np_state["state"])
    bit = {k: (v.tolist() if isinstance(v, np.ndarray) else int(v)) for k, v in bit.items()}
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"bit_generator": str(np_state["bit_generator"]), "state": bit,
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "python": [py[0], list(py[1]), py[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    bit = {k: (np.asarray(v, dtype=np.uint32) if isinstance(v, list) else v) for k, v in npst["state"].items()}
    np.random.set_state({"bit_generator": npst["bit_generator"], "state": bit,
                         "has_gauss": npst["has_gauss"], "gauss": npst["gauss"]})
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --------------------------------------------------------------------------- results and errors


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient stopped the run; the message names the last good checkpoint."""


class _NonFinite(Exception):
    pass


@dataclass
class PretrainResult:
    """What a run did: where its files are, how far it got, and its last metrics."""

    checkpoint: Path | None
    best: Path | None
    run_dir: Path | None
    step: int
    epoch: float
    stop_reason: Literal["completed", "max_steps", "time_budget"]
    wall_s: float
    train: dict[str, float]
    val: dict[str, float]
    best_val: float | None
    params: dict[str, int]
    wandb_id: str | None
    images_per_s: float


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """One pretraining run (new or resumed). ``fit()`` trains; ``train_step`` is one optimiser step."""

    def __init__(self, cfg: PretrainConfig, resume: str | Path | None = None, command: str | None = None,
                 progress: bool = True, overwrite: bool = False) -> None:
        self.t0 = time.perf_counter()
        self.cfg = cfg
        self.progress = progress
        self.overwrite = overwrite
        self.folder: RunFolder | None = None
        self.ctx, self.device = init_distributed(cfg.device)
        try:
            self._setup(resume, command)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- setup

    def say(self, msg: str) -> None:
        if self.ctx.is_main:
            tqdm.write(msg)

    def _setup(self, resume: str | Path | None, command: str | None) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.resume_path = Path(resume) if resume is not None else None
        ckpt = load_checkpoint(self.resume_path, kind="bmvae") if self.resume_path else None
        if ckpt is not None:
            self._check_model_config(ckpt)
        # the output folder before anything is written (or minutes are spent preparing data):
        # locked against a second writer, and never holding another run that this one would replace
        if ctx.is_main:
            self.folder = claim_out_dir(cfg.out_dir, ckpt, self.resume_path, self.overwrite)
            if self.folder.removed:
                self.say(f"--overwrite: removed the previous run's {', '.join(p.name for p in self.folder.removed)} "
                         f"from {cfg.out_dir}")
            if self.folder.removed_tmp:
                self.say(f"removed {len(self.folder.removed_tmp)} temporary file(s) left by an interrupted write")

        # data: rank 0 first (it may generate the synthetic default)
        with ctx.main_first():
            train_sets = [open_dataset(dc, progress=self.progress and ctx.is_main) for dc in [cfg.data, *cfg.extra_data]]
        size = cfg.model.patch_size
        self.train_samplers = [PatchSampler(ds, size, cfg.augment, cfg.box_method) for ds in train_sets]
        self.dataset = PatchDataset(self.train_samplers, cfg.seed)
        self.sampler = ResumableSampler(len(self.dataset), ctx.world, ctx.rank, cfg.seed, cfg.batch_size)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"training set has {len(self.dataset)} patches ({len(self.dataset) // ctx.world} per process), "
                f"fewer than batch_size={cfg.batch_size}"
            )
        cuda = self.device.type == "cuda"
        # Its own generator: a DataLoader iterator otherwise draws its worker base seed from the
        # global torch RNG, and a resumed run (which starts a fresh iterator mid-epoch) would drift.
        self.loader = DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=self.sampler,
                                 num_workers=cfg.num_workers, drop_last=True, pin_memory=cuda,
                                 generator=torch.Generator().manual_seed(cfg.seed + 7919 * ctx.rank))

        # validation patches: deterministic paper crops of the held-out split, rank 0 only
        self.val_patches = self.val_masks = None
        if cfg.val_split is not None and ctx.is_main:
            val_ds = open_dataset(dataclasses.replace(cfg.data, split=cfg.val_split), progress=False)
            overlap = {t.sequence for t in val_ds.tracks()} & {t.sequence for t in train_sets[0].tracks()}
            if overlap:
                self.say(f"warning: validation split '{cfg.val_split}' shares {len(overlap)} sequences with the "
                         f"training data ({sorted(overlap)[:3]} ...): val metrics are not held-out")
            vs = PatchSampler(val_ds, size, cfg.augment, cfg.box_method)
            idx = _evenly_spaced(len(vs), cfg.val_max_patches)
            pairs = [vs.sample(int(i)) for i in idx]
            self.val_patches = np.stack([p for p, _ in pairs])
            self.val_masks = np.stack([m for _, m in pairs])

        # prior: the checkpoint's when resuming, else the file, else measured on the training data
        if ckpt is not None:
            self.prior = prior_from_dict(ckpt["prior"])
            self.prior_note = f"from the checkpoint ({self.prior.source})"
        else:
            with ctx.main_first():
                self.prior, self.prior_note = self._resolve_prior(train_sets)

        # model, optimiser, schedule
        if ckpt is None:
            seed_everything(cfg.seed)
        self.net = build_model(cfg.model, self.prior.mean, self.prior.cov, self.prior.sample_std).to(self.device)
        # foreach: one fused kernel per op over all tensors (3× faster than the per-tensor loop on CPU)
        self.optimizer = torch.optim.RAdam(self.net.parameters(), lr=cfg.lr_min, weight_decay=cfg.weight_decay,
                                           foreach=True)
        self.scheduler = torch.optim.lr_scheduler.CyclicLR(
            self.optimizer, base_lr=cfg.lr_min, max_lr=cfg.lr_max, step_size_up=max(cfg.cycle_steps // 2, 1),
            mode=cfg.cycle_mode, cycle_momentum=False,
        )
        self.step = self.epoch = self.epoch_step = 0
        self.best_val: float | None = None
        self.last_val: dict[str, float] = {}
        self.wandb_id: str | None = None
        self.run_name = run_name(COMMAND, cfg.tag)
        self.run_id = uuid.uuid4().hex  # os.urandom: no seeded RNG is touched
        if ckpt is not None:
            self._load_state(ckpt)
        elif ctx.rank > 0:  # same initial weights (DDP also broadcasts rank 0's), own bottleneck noise
            seed_everything(hash((cfg.seed, ctx.rank)) % 2**31)
        self.model: nn.Module = self.net
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.net, device_ids=[self.device.index] if cuda else None)
        self.params = count_parameters(self.net)

        # files and logging (rank 0)
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_path = checkpoint_path(self.out_dir)
        self.best_path = self.out_dir / "best.pt"
        self.run_dir = self.out_dir / self.run_name
        self.last_saved_step: int | None = self.step if ckpt is not None else None
        self.logger: RunLogger | None = None
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            self._record_command(command)
            config = to_dict(cfg)
            config["params"] = self.params
            config["world_size"] = ctx.world
            self.logger = RunLogger(self.run_dir, self.run_name, COMMAND, config=config, wandb_cfg=cfg.wandb,
                                    resume_id=self.wandb_id)
            self.wandb_id = self.logger.run_id
            self.say(self._describe())

    def _describe(self) -> str:
        cfg, p = self.cfg, self.params
        n_val = 0 if self.val_patches is None else len(self.val_patches)
        lines = [
            (f"{'resuming' if self.resume_path else 'new run'} {self.run_name} -> {self.run_dir}"
             + (f" (from {self.resume_path}, step {self.step})" if self.resume_path else "")),
            (f"model: {cfg.model.arch} {cfg.model.patch_size}px, bottleneck {cfg.model.bottleneck}, β={cfg.model.beta}, "
             f"{p['total'] / 1e6:.3f} M parameters (encoder {p['encoder'] / 1e6:.3f} M, decoder {p['decoder'] / 1e6:.3f} M)"),
            (f"data: {len(self.dataset)} training patches from {len(self.train_samplers)} dataset(s), "
             f"{n_val} validation patches; {self.steps_per_epoch} steps/epoch × batch {cfg.batch_size}"
             + (f" × {self.ctx.world} processes" if self.ctx.distributed else "")),
            f"prior: {self.prior_note}",
            (f"device {self.device}, torch threads {torch.get_num_threads()}, lr {cfg.lr_min:g}..{cfg.lr_max:g} "
             f"(cycle {cfg.cycle_steps} steps), budget {cfg.time_budget_min:g} min"),
        ]
        return "\n".join(lines)

    def _record_command(self, command: str | None) -> None:
        path = self.run_dir / "command.txt"
        old = path.read_text() if path.is_file() else ""
        cmd = command or " ".join([Path(sys.executable).name, *sys.argv])
        line = f"# {time.strftime('%Y-%m-%d %H:%M:%S')} cwd={os.getcwd()} step={self.step}\n{cmd}\n"
        atomic_write_text(path, old + line)

    def _resolve_prior(self, train_sets: list[VideoDataset]) -> tuple[MotionPrior, str]:
        cfg = self.cfg
        if cfg.prior == "paper":
            return MotionPrior.paper(), "the paper's (appendix 2.2), as configured"
        path = Path(cfg.prior)
        if path.is_file():
            prior = MotionPrior.load(path)
            return prior, f"{path} ({prior.source})"
        if not self.ctx.is_main:  # rank 0 wrote it before we got here
            prior = MotionPrior.load(path)
            return prior, f"{path} ({prior.source})"
        measured = [tm for ds in train_sets for tm in measure_dataset(ds, cfg.box_method, progress=False)]
        roots = ", ".join(f"{dc.root} (split {dc.split or 'all'})" for dc in [cfg.data, *cfg.extra_data])
        prior = fit_prior(measured, f"measured by pretrain_vae on {roots}, {len(measured)} tracks", cfg.box_method)
        prior.save(path)
        n = len(motion_samples(measured))
        msg = (f"no prior file at {path}: measured the motion prior on the training data "
               f"({len(measured)} tracks, {n} frame pairs) and saved it to {path}")
        self.say(msg)
        return prior, f"{path} (measured now on the training data)"

    def _check_model_config(self, ckpt: dict[str, Any]) -> None:
        path = self.resume_path
        saved = ckpt.get("model_config")
        if not isinstance(saved, dict):
            raise CheckpointError(f"{path}: checkpoint holds no model_config")
        want = to_dict(self.cfg.model)
        diff = {k: (saved.get(k), want[k]) for k in ARCH_KEYS if saved.get(k) != want[k]}
        if diff:
            desc = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
            raise CheckpointError(f"{path}: cannot resume, the checkpoint's network differs from the configured one ({desc})")
        other = {k: (saved.get(k), want[k]) for k in want if k not in ARCH_KEYS and saved.get(k) != want[k]}
        if other:
            self.say("note: resuming with changed model settings: "
                     + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in other.items()))

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        path = self.resume_path
        try:
            self.net.load_state_dict(ckpt["model"], strict=True)
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: checkpoint state does not fit the configured run ({first[:300]})") from None
        self.step = int(ckpt["step"])
        self.epoch = int(ckpt["epoch"])
        self.epoch_step = int(ckpt.get("epoch_step", 0))
        if self.epoch_step >= self.steps_per_epoch:  # the data changed size: start the next epoch
            self.epoch, self.epoch_step = self.epoch + 1, 0
        self.best_val = ckpt.get("best_val")
        self.last_val = dict(ckpt.get("val") or {})
        self.wandb_id = ckpt.get("wandb_id")
        self.run_name = ckpt.get("run_name") or self.run_name
        self.run_id = ckpt.get("run_id") or self.run_id
        if self.ctx.rank == 0 and ckpt.get("rng"):
            set_rng_state(ckpt["rng"])
        else:
            seed_everything(hash((self.cfg.seed, self.ctx.rank, self.step)) % 2**31)

    # ---------------------------------------------------------------- one step

    def train_step(self, patches: Tensor, masks: Tensor, stop_flag: float = 0.0) -> dict[str, float]:
        """One optimiser step on a uint8 NHWC batch; returns the (all-reduced) loss parts.

        ``stop_flag`` (rank 0) travels with the loss all-reduce so that every rank agrees to stop.
        Raises ``_NonFinite`` (nothing is stepped) when the loss or the gradient is not finite.
        """
        x = patches_to_tensor(patches, self.device)
        y = masks.to(self.device, non_blocking=True).long()
        self.model.train()
        out = self.model(x)
        parts = loss_from_config(out, y, self.cfg.model)
        loss = parts["total"]
        stats = torch.stack([parts[k].detach().float().reshape(()) for k in STAT_KEYS]
                            + [torch.tensor(stop_flag, device=loss.device)])
        if self.ctx.distributed:
            dist.all_reduce(stats)
            stats[:-1] /= self.ctx.world
        values = stats.tolist()
        result = dict(zip(STAT_KEYS, values[:-1]))
        result["stop"] = values[-1]
        if not all(math.isfinite(v) for v in values[:-1]):
            raise _NonFinite("non-finite loss (" + ", ".join(f"{k}={v:.4g}" for k, v in zip(STAT_KEYS, values)) + ")")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        gnorm = float(torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip))
        if not math.isfinite(gnorm):
            raise _NonFinite(f"non-finite gradient norm ({gnorm}) with loss {result['total']:.4g}")
        self.optimizer.step()
        self.scheduler.step()
        result["grad_norm"] = gnorm
        return result

    # ---------------------------------------------------------------- validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Deterministic masks (z = μ′, eval mode) of the validation patches: losses, J, Mahalanobis."""
        assert self.val_patches is not None and self.val_masks is not None
        net, cfg = self.net, self.cfg
        was_training = net.training
        net.eval()
        sums: dict[str, float] = {k: 0.0 for k in STAT_KEYS}
        ious: list[float] = []
        maha: list[float] = []
        mean_p, cov_p = self.prior.mean, self.prior.cov
        n = len(self.val_patches)
        try:
            for i in range(0, n, cfg.batch_size):
                x = patches_to_tensor(self.val_patches[i:i + cfg.batch_size], self.device)
                y = torch.from_numpy(self.val_masks[i:i + cfg.batch_size]).to(self.device).long()
                out = net(x, sample=False)
                parts = loss_from_config(out, y, cfg.model)
                b = x.shape[0]
                for k in STAT_KEYS:
                    sums[k] += float(parts[k]) * b
                pred = out["logits"].argmax(1) != 0
                gt = y != 0
                inter = (pred & gt).sum((1, 2)).double()
                union = (pred | gt).sum((1, 2)).double()
                ious += torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).tolist()
                mu = out["mu"].double().cpu().numpy()
                cov = out["cov"].double().cpu().numpy()
                maha += [mahalanobis_gaussians(mean_p, cov_p, mu[j], cov[j]) for j in range(b)]
        finally:
            net.train(was_training)
        val = {f"val/{'loss' if k == 'total' else k}": v / n for k, v in sums.items()}
        val["val/J"] = float(np.mean(ious))
        val["val/mahalanobis"] = float(np.mean(maha))
        return val

    @torch.no_grad()
    def sample_grid(self, path: Path) -> Path | None:
        """PNG: input patches, ground truth, prediction (white = hit, red = false positive, blue = miss)."""
        if self.val_patches is None or self.cfg.sample_masks <= 0:
            return None
        idx = _evenly_spaced(len(self.val_patches), self.cfg.sample_masks)
        patches, masks = self.val_patches[idx], self.val_masks[idx]
        was_training = self.net.training
        self.net.eval()
        try:
            logits = self.net(patches_to_tensor(patches, self.device), sample=False)["logits"]
        finally:
            self.net.train(was_training)
        pred = (logits.argmax(1) != 0).cpu().numpy()
        gt = masks.astype(bool)
        gt_rgb = np.repeat(gt[..., None], 3, -1).astype(np.uint8) * 255
        pr = np.zeros_like(gt_rgb)
        pr[pred & gt] = (255, 255, 255)
        pr[pred & ~gt] = (230, 40, 40)
        pr[~pred & gt] = (40, 90, 230)
        rows = [np.concatenate(list(r), axis=1) for r in (patches, gt_rgb, pr)]
        grid = np.concatenate(rows, axis=0)
        scale = max(1, 96 // patches.shape[1])
        if scale > 1:
            grid = grid.repeat(scale, 0).repeat(scale, 1)
        from PIL import Image

        atomic_save(path, lambda buf: Image.fromarray(grid).save(buf, format="PNG"))
        return path

    # ---------------------------------------------------------------- checkpoints

    def payload(self) -> dict[str, Any]:
        """The checkpoint (see the module docstring for the keys); plain types and tensors only."""
        return {
            "kind": "bmvae",
            "version": CHECKPOINT_VERSION,
            "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "model_config": to_dict(self.cfg.model),
            "prior": self.prior.to_dict(),
            "config": to_dict(self.cfg),
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "best_val": self.best_val,
            "val": dict(self.last_val),
            "wandb_id": self.wandb_id,
            "run_name": self.run_name,
            "run_id": self.run_id,
            "world_size": self.ctx.world,
            "params": dict(self.params),
        }

    def save(self, best: bool = False) -> None:
        """Write ``checkpoint.pt`` (and ``best.pt``) atomically; rank 0 only; refuses non-finite weights."""
        if not self.ctx.is_main:
            return
        bad = [n for n, p in self.net.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:
            raise _NonFinite(f"non-finite weights in {bad[:3]}")
        payload = self.payload()
        save_checkpoint(self.ckpt_path, payload)
        if best:
            save_checkpoint(self.best_path, payload)
        self.last_saved_step = self.step

    # ---------------------------------------------------------------- the loop

    def _validate_and_log(self, epoch_end: bool) -> float:
        """Validation, sample grid, best.pt bookkeeping; returns the seconds it took (rank 0)."""
        t = time.perf_counter()
        if not self.ctx.is_main or self.val_patches is None:
            return 0.0
        val = self.validate()
        self.last_val = val
        improved = self.best_val is None or val["val/J"] > self.best_val
        if improved:
            self.best_val = val["val/J"]
        assert self.logger is not None
        self.logger.log({**val, "val/epoch": self.epoch + self.epoch_step / self.steps_per_epoch}, step=self.step)
        grid = self.sample_grid(self.run_dir / "samples" / f"step_{self.step:07d}.png")
        if grid is not None:
            self.logger.log_image("val/samples", grid, step=self.step,
                                  caption="rows: input, ground truth, prediction (white hit, red false positive, blue miss)")
        self.say(f"step {self.step} (epoch {self.epoch + self.epoch_step / self.steps_per_epoch:.2f}"
                 f"{'' if epoch_end else ', partial'}): val loss {val['val/loss']:.4f}, J {val['val/J']:.4f}, "
                 f"KL {val['val/kl']:.4f}, Mahalanobis {val['val/mahalanobis']:.4g}"
                 + (" (best)" if improved else ""))
        self._pending_best = improved
        return time.perf_counter() - t

    def fit(self) -> PretrainResult:
        """Train until the epochs, ``max_steps`` or the time budget run out; then close the run."""
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> PretrainResult:
        cfg, ctx = self.cfg, self.ctx
        budget = cfg.time_budget_min * 60.0
        total = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        bar = tqdm(total=total, initial=min(self.step, total), desc="pretrain", unit="step", dynamic_ncols=True,
                   disable=not (self.progress and ctx.is_main), file=sys.stderr)
        step_ema: float | None = None
        val_s: float | None = None
        save_s = 1.0
        window: dict[str, float] = {}
        window_n = 0
        window_t = time.perf_counter()
        last_train: dict[str, float] = {}
        last_val_step = -1
        stop_reason: Literal["completed", "max_steps", "time_budget"] = "completed"
        self._pending_best = False
        n_val_batches = 0 if self.val_patches is None else math.ceil(len(self.val_patches) / cfg.batch_size)
        images = 0
        train_time = 0.0

        def reserve() -> float:
            est_val = val_s if val_s is not None else n_val_batches * (step_ema or 1.0) * 0.5
            return est_val + save_s + 5.0

        try:
            stop = False
            while self.epoch < cfg.epochs and not stop:
                if cfg.max_steps and self.step >= cfg.max_steps:
                    stop_reason = "max_steps"
                    break
                self.dataset.epoch = self.epoch
                self.sampler.set_epoch(self.epoch, self.epoch_step)
                for patches, masks in self.loader:
                    ts = time.perf_counter()
                    flag = 0.0
                    if ctx.is_main and budget > 0:
                        elapsed = ts - self.t0
                        if elapsed + 2 * (step_ema or 0.0) + reserve() > budget:
                            flag = 1.0
                    try:
                        stats = self.train_step(patches, masks, flag)
                    except _NonFinite as exc:
                        self._diverged(str(exc))
                    self.step += 1
                    self.epoch_step += 1
                    dt = time.perf_counter() - ts
                    step_ema = dt if step_ema is None else 0.9 * step_ema + 0.1 * dt
                    images += patches.shape[0] * ctx.world
                    train_time += dt
                    for k in (*STAT_KEYS, "grad_norm"):
                        window[k] = window.get(k, 0.0) + stats[k]
                    window_n += 1
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        now = time.perf_counter()
                        last_train = self._log_train(window, window_n, now - window_t)
                        bar.set_postfix(loss=f"{last_train['train/loss']:.3f}", J=f"{last_train['train/jaccard']:.3f}",
                                        lr=f"{last_train['train/lr']:.2e}", ep=self.epoch)
                        window, window_n, window_t = {}, 0, now
                    if stats["stop"] > 0:
                        stop, stop_reason = True, "time_budget"
                    elif cfg.max_steps and self.step >= cfg.max_steps:
                        stop, stop_reason = True, "max_steps"
                    if stop:
                        break
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        t = time.perf_counter()
                        self._save_checked(best=False)
                        save_s = time.perf_counter() - t
                else:  # the epoch ran to its end
                    self.epoch += 1
                    self.epoch_step = 0
                    val_s = self._validate_and_log(epoch_end=True)
                    last_val_step = self.step
                    t = time.perf_counter()
                    self._save_checked(best=self._pending_best)
                    save_s = time.perf_counter() - t
                    ctx.barrier()
            if window_n:
                last_train = self._log_train(window, window_n, time.perf_counter() - window_t)
            if self.epoch_step >= self.steps_per_epoch:  # stopped on the last batch of an epoch
                self.epoch, self.epoch_step = self.epoch + 1, 0
            if last_val_step != self.step:
                self._validate_and_log(epoch_end=self.epoch_step == 0)
                self._save_checked(best=self._pending_best)
            ctx.barrier()
        finally:
            bar.close()
        wall = time.perf_counter() - self.t0
        ips = images / train_time if train_time > 0 else 0.0
        if ctx.is_main:
            assert self.logger is not None
            curves = plot_loss_curves(self.run_dir)
            if curves is not None:
                self.logger.log_image("curves/losses", curves, step=self.step,
                                      caption="total, construction and KL loss (train and val), as in the paper's Figs 11–12")
            summary = {"stop_reason": stop_reason, "wall_s": wall, "step": self.step, "images_per_s": ips,
                       "params": self.params["total"], "best_val_J": self.best_val, **last_train, **self.last_val}
            self.logger.summary(summary)
            self.say(f"stopped ({stop_reason}) at step {self.step}, epoch {self.epoch + self.epoch_step / self.steps_per_epoch:.2f}, "
                     f"after {wall:.0f} s; checkpoint {self.ckpt_path}")
        return PretrainResult(
            checkpoint=self.ckpt_path if ctx.is_main else None,
            best=self.best_path if ctx.is_main and self.best_val is not None else None,
            run_dir=self.run_dir if ctx.is_main else None,
            step=self.step, epoch=self.epoch + self.epoch_step / self.steps_per_epoch, stop_reason=stop_reason,
            wall_s=wall, train=last_train, val=dict(self.last_val), best_val=self.best_val, params=self.params,
            wandb_id=self.wandb_id, images_per_s=ips,
        )

    def _save_checked(self, best: bool) -> None:
        try:
            self.save(best=best)
        except _NonFinite as exc:
            self._diverged(str(exc))
        self._pending_best = False

    def _log_train(self, window: dict[str, float], n: int, seconds: float) -> dict[str, float]:
        row = {f"train/{'loss' if k == 'total' else k}": v / n for k, v in window.items()}
        row["train/lr"] = float(self.scheduler.get_last_lr()[0])
        row["train/epoch"] = self.epoch + self.epoch_step / self.steps_per_epoch
        row["train/images_per_s"] = n * self.cfg.batch_size * self.ctx.world / max(seconds, 1e-9)
        if self.logger is not None:
            self.logger.log(row, step=self.step)
        return row

    def _diverged(self, what: str) -> None:
        where = (f"the last good checkpoint is {self.ckpt_path} (step {self.last_saved_step})"
                 if self.last_saved_step is not None else "no checkpoint was written by this run")
        msg = f"{what} at step {self.step + 1}: stopping the run; {where}"
        if self.logger is not None:
            self.logger.log({"train/diverged": 1.0}, step=self.step)
            self.logger.summary({"stop_reason": "diverged", "diverged_at_step": self.step + 1})
        raise TrainingDiverged(msg)

    def close(self) -> None:
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.finish()
            self.logger = None
        folder = getattr(self, "folder", None)
        if folder is not None:
            folder.release()
            self.folder = None
        if getattr(self, "ctx", None) is not None and self.ctx.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.ctx.owns_group = False


def train(cfg: PretrainConfig, resume: str | Path | None = None, command: str | None = None,
          progress: bool = True, overwrite: bool = False) -> PretrainResult:
    """Run one pretraining (new, or resumed from the checkpoint ``resume``); see ``Trainer``.

    ``cfg.out_dir`` is claimed first (``claim_out_dir``): a folder holding another run is refused
    with ``RunFolderError`` unless ``overwrite`` (its checkpoints and run folders are removed).
    """
    return Trainer(cfg, resume=resume, command=command, progress=progress, overwrite=overwrite).fit()


# --------------------------------------------------------------------------- loss curves


def _dedup(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key``; a step logged twice (a resumed run) keeps its last value."""
    seen: dict[int, float] = {}
    for r in rows:
        if key in r and r.get("step") is not None and r[key] is not None:
            seen[int(r["step"])] = float(r[key])
    steps = np.array(sorted(seen), dtype=float)
    return steps, np.array([seen[int(s)] for s in steps], dtype=float)


def plot_loss_curves(run_dir: str | Path) -> Path | None:
    """``loss_curves.png``: total, construction and KL loss over steps, train and val (Figs 11–12)."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not any("train/loss" in r for r in rows):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (title, tk, vk) in zip(axes, (("total loss", "train/loss", "val/loss"),
                                          ("construction loss", "train/cons", "val/cons"),
                                          ("KL divergence", "train/kl", "val/kl"))):
        s, v = _dedup(rows, tk)
        ax.plot(s, v, lw=0.8, alpha=0.5, color="C0", label="train")
        if len(v) >= 5:
            k = max(len(v) // 20, 1)
            smooth = np.convolve(np.pad(v, (k, k), mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
            ax.plot(s, smooth, lw=1.6, color="C0", label="train (smoothed)")
        s2, v2 = _dedup(rows, vk)
        if len(v2):
            ax.plot(s2, v2, "o-", ms=3, color="C1", label="val")
        allv = np.concatenate([v, v2])
        if len(allv) and (allv > 0).all() and allv.max() / max(allv.min(), 1e-12) > 20:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{run_dir.name}: loss curves", fontsize=10)
    fig.tight_layout()
    out = run_dir / "loss_curves.png"
    atomic_save(out, lambda buf: fig.savefig(buf, format="png", dpi=90))
    plt.close(fig)
    return out


from bmvtrack.pretrain_vae.command import main as main  # noqa: E402  (the command line over this library)
