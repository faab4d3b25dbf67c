"""The training data of a pretraining run: patches, their sampler, and the datasets they come from.

Training patches come from ``PatchSampler`` over the training datasets (``data`` plus optional
``extra_data``), with fresh box jitter, flips and colour noise every epoch. The jitter of a
training patch is drawn from a generator seeded by ``(seed, epoch, index)``, so it does not depend
on how patches are split across workers or ranks; the shuffling order is the
``DistributedSampler`` permutation of ``(seed, epoch)``, and a resumed run skips the batches of the
current epoch it has already done.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from bmvtrack import paths
from bmvtrack.config import ConfigError
from bmvtrack.data.pair_sampler import PairSampler
from bmvtrack.data.patch_sampler import PatchSampler
from bmvtrack.data.readers import DataConfig, VideoDataset
from bmvtrack.motion import MotionPrior
from bmvtrack.pretrain_vae.config import PretrainConfig
from bmvtrack.pretrain_vae.distributed import DistContext


class PatchDataset(Dataset):
    """Training items over one or more samplers: ``(uint8 S×S×3, bool S×S)`` tensors from
    ``PatchSampler``s, ``(uint8 S×S×7, bool S×S, float32 5)`` from ``PairSampler``s (``input: pair``).

    The jitter of item ``i`` in epoch ``e`` comes from ``default_rng((seed, e, i))``, so the data do
    not depend on the number of workers or ranks. ``augment=False`` gives the paper's plain crop.
    """

    def __init__(self, samplers: list[PatchSampler] | list[PairSampler], seed: int, augment: bool = True) -> None:
        self.samplers = samplers
        self.seed = seed
        self.augment = augment
        self.epoch = 0
        self.offsets = np.cumsum([0] + [len(s) for s in samplers])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[PatchSampler | PairSampler, int]:
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.samplers[k], index - int(self.offsets[k])

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        sampler, local = self.locate(index)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.augment else None
        return tuple(torch.from_numpy(a) for a in sampler.sample(local, rng))


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


def make_sampler(cfg: PretrainConfig, ds: VideoDataset, rollouts: bool = False) -> PatchSampler | PairSampler:
    """Patches for a single-crop model, pairs for a motion posterior (``model.input``); ``rollouts``:
    this is ``cfg.data``'s training set, the one ``pairs.rollouts`` were run on."""
    if cfg.model.input == "pair":
        pairs = cfg.pairs if rollouts else replace(cfg.pairs, rollouts=[])
        return PairSampler(ds, cfg.model.patch_size, cfg.augment, cfg.box_method, pairs,
                           reference=cfg.model.reference)
    return PatchSampler(ds, cfg.model.patch_size, cfg.augment, cfg.box_method)


def _is_default_synthetic(root: str) -> bool:
    return Path(root).resolve() == paths.SYNTH_DIR.resolve()


def open_dataset(dc: DataConfig, progress: bool = True) -> VideoDataset:
    """A dataset from config; the synthetic default is generated when absent (``default_synthetic``)."""
    if _is_default_synthetic(dc.root):
        from bmvtrack.data.synth import default_synthetic

        default_synthetic(progress=progress)
    return VideoDataset.from_config(dc)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k`` is 0 or at least ``n``)."""
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


@dataclass
class TrainingData:
    """What a run trains on: its datasets, their patch samplers and the resumable loader over them."""

    sets: list[VideoDataset]
    samplers: list[PatchSampler] | list[PairSampler]
    dataset: PatchDataset
    sampler: ResumableSampler
    loader: DataLoader

    @classmethod
    def open(cls, cfg: PretrainConfig, ctx: DistContext, device: torch.device, progress: bool = True) -> TrainingData:
        """Open ``cfg.data`` and ``cfg.extra_data`` (rank 0 first: it may generate the synthetic default)."""
        with ctx.main_first():
            sets = [open_dataset(dc, progress=progress and ctx.is_main) for dc in [cfg.data, *cfg.extra_data]]
        samplers = [make_sampler(cfg, ds, rollouts=i == 0) for i, ds in enumerate(sets)]
        dataset = PatchDataset(samplers, cfg.seed)
        sampler = ResumableSampler(len(dataset), ctx.world, ctx.rank, cfg.seed, cfg.batch_size)
        if sampler.batches_per_epoch == 0:
            raise ConfigError(
                f"training set has {len(dataset)} patches ({len(dataset) // ctx.world} per process), "
                f"fewer than batch_size={cfg.batch_size}"
            )
        # Its own generator: a DataLoader iterator otherwise draws its worker base seed from the
        # global torch RNG, and a resumed run (which starts a fresh iterator mid-epoch) would drift.
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                            num_workers=cfg.num_workers, drop_last=True, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed + 7919 * ctx.rank))
        return cls(sets, samplers, dataset, sampler, loader)

    def use_prior(self, prior: MotionPrior) -> None:
        """Pair samplers draw the motion of warped pairs from the run's (box-relative) prior."""
        for s in self.samplers:
            if isinstance(s, PairSampler):
                s.use_prior(prior.mean, prior.cov)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.batches_per_epoch

    def start_epoch(self, epoch: int, done_steps: int = 0) -> None:
        """Point the jitter and the shuffling at ``epoch``, skipping its first ``done_steps`` batches."""
        self.dataset.epoch = epoch
        self.sampler.set_epoch(epoch, done_steps)
