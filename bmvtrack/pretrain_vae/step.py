"""The network being trained, its optimiser and schedule, and one optimiser step.

RAdam (or Adam) with the cyclical learning rate (triangular, ``lr_min`` … ``lr_max``; or one cosine decay), loss
``loss_from_config`` (weighted CE + (1 − soft Jaccard) + β·KL, eqs. 2–3, or the ``mask_loss`` configured). A non-finite loss or
gradient raises ``NonFinite`` before anything is stepped, so the weights stay the last good ones.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bmvtrack.models import build_model, loss_from_config
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import MotionPrior
from bmvtrack.pretrain_vae.config import PretrainConfig
from bmvtrack.pretrain_vae.distributed import DistContext

STAT_KEYS = ("total", "cons", "ce", "jaccard", "kl", "nll")


def _schedule_words(cosine_steps: object) -> str:
    return "a cyclical learning rate" if cosine_steps is None else f"a cosine decay over {cosine_steps} steps"


class NonFinite(Exception):
    """A non-finite loss, gradient or weight: the run must stop without saving this state."""


class Optimisation:
    """The βMVUnet / βMVAE (``net``; ``model`` is what is called, DDP-wrapped when distributed),
    RAdam or Adam and the LR schedule (cyclical, or one cosine decay); ``train_step`` is one optimiser step."""

    def __init__(self, cfg: PretrainConfig, prior: MotionPrior, device: torch.device, ctx: DistContext) -> None:
        self.cfg, self.device, self.ctx = cfg, device, ctx
        self.net = build_model(cfg.model, prior.mean, prior.cov, prior.sample_std).to(device)
        # foreach: one fused kernel per op over all tensors (3× faster than the per-tensor loop on CPU)
        cosine = cfg.lr_schedule == "cosine"  # starts at lr_max; the cycle at lr_min
        optimizer = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.RAdam
        self.optimizer = optimizer(self.net.parameters(), lr=cfg.lr_max if cosine else cfg.lr_min,
                                   weight_decay=cfg.weight_decay, foreach=True)
        self.scheduler: torch.optim.lr_scheduler.LRScheduler
        if cosine:
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.max_steps,
                                                                        eta_min=cfg.lr_min)
        else:
            self.scheduler = torch.optim.lr_scheduler.CyclicLR(
                self.optimizer, base_lr=cfg.lr_min, max_lr=cfg.lr_max, step_size_up=max(cfg.cycle_steps // 2, 1),
                mode=cfg.cycle_mode, cycle_momentum=False,
            )
        self.model: nn.Module = self.net

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Weights, optimiser and schedule from a checkpoint (torch's errors when they do not fit).

        A cosine decay resumes only over its own horizon: past ``T_max`` the cosine rises again; an
        optimiser only from its own kind's state (Adam's moments are not RAdam's)."""
        saved_optimizer = (ckpt.get("config") or {}).get("optimizer", "radam")
        if saved_optimizer != self.cfg.optimizer:
            raise ValueError(f"the checkpoint's optimiser is {saved_optimizer}, the config's {self.cfg.optimizer}")
        saved_horizon = ckpt["scheduler"].get("T_max")
        want = self.cfg.max_steps if self.cfg.lr_schedule == "cosine" else None
        if saved_horizon != want:
            raise ValueError(f"the checkpoint's schedule is {_schedule_words(saved_horizon)}, "
                             f"the config's {_schedule_words(want)}")
        self.net.load_state_dict(ckpt["model"], strict=True)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])

    def distribute(self) -> None:
        """Wrap the net in DistributedDataParallel when distributed; after any resumed state is
        loaded, since DDP broadcasts rank 0's weights to the others."""
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            cuda = self.device.type == "cuda"
            self.model = DistributedDataParallel(self.net, device_ids=[self.device.index] if cuda else None)

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def train_step(self, patches: Tensor, masks: Tensor, stop_flag: float = 0.0,
                   motion: Tensor | None = None) -> dict[str, float]:
        """One optimiser step on a uint8 NHWC batch; returns the (all-reduced) loss parts.

        ``motion`` (B×5): the true box-relative motion of each pair (``input: pair`` models).

        ``stop_flag`` (rank 0) travels with the loss all-reduce so that every rank agrees to stop.
        Raises ``NonFinite`` (nothing is stepped) when the loss or the gradient is not finite.
        """
        x = patches_to_tensor(patches, self.device)
        y = masks.to(self.device, non_blocking=True).long()
        self.model.train()
        out = self.model(x)
        parts = loss_from_config(out, y, self.cfg.model,
                                 motion=None if motion is None else motion.to(self.device))
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
            raise NonFinite("non-finite loss (" + ", ".join(f"{k}={v:.4g}" for k, v in zip(STAT_KEYS, values)) + ")")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        gnorm = float(torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip))
        if not math.isfinite(gnorm):
            raise NonFinite(f"non-finite gradient norm ({gnorm}) with loss {result['total']:.4g}")
        self.optimizer.step()
        self.scheduler.step()
        result["grad_norm"] = gnorm
        return result
