"""Distributed pretraining (launched by ``torchrun``; ``WORLD_SIZE > 1`` in the environment).

gloo on CPU, nccl on CUDA, a ``DistributedSampler``, the model wrapped in
``DistributedDataParallel``; rank 0 alone validates, logs and saves. ``batch_size`` is per process
(the effective batch is ``batch_size × world_size``): the paper's "batch" bottleneck computes Σ′
over the *local* batch, so each process keeps the paper's 32 samples per Σ′ rather than a fraction
of it. BatchNorm statistics are also per process (no SyncBatchNorm), as usual for DDP.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bmvtrack.config import ConfigError


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

    def leave(self) -> None:
        """Destroy the process group when this process created it (``init_distributed``)."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The configured device; plain ``cuda`` means this process's GPU (``local_rank``) under torchrun."""
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
