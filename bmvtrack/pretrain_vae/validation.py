"""Validation of a pretraining run: the deterministic paper crops of the held-out split
(``val_split``), cut once and kept in memory, their losses, J and Mahalanobis distance to the
prior, and the per-epoch sample-mask grid."""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bmvtrack.data.readers import VideoDataset
from bmvtrack.io import atomic_save
from bmvtrack.metrics import mahalanobis_gaussians
from bmvtrack.models import loss_from_config
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import RELATIVE_NAMES, MotionPrior
from bmvtrack.pretrain_vae.config import PretrainConfig
from bmvtrack.calibration import compare_to_prior
from bmvtrack.pretrain_vae.data import evenly_spaced, make_sampler, open_dataset
from bmvtrack.pretrain_vae.step import STAT_KEYS


@contextlib.contextmanager
def _eval_mode(net: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm's running statistics) for the block; the previous mode after it."""
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


@dataclass
class ValidationSet:
    """The validation patches (uint8 N×S×S×3, or ×7 pairs) and their masks (N×S×S); for pairs
    (``model.input: pair``) also the true box-relative motions (N×5)."""

    patches: np.ndarray
    masks: np.ndarray
    motions: np.ndarray | None = None

    @classmethod
    def cut(cls, cfg: PretrainConfig, train_set: VideoDataset, say: Callable[[str], None]) -> ValidationSet:
        """The paper's plain crops of ``cfg.val_split`` (at most ``val_max_patches``, evenly spaced);
        says so when that split shares sequences with the training data."""
        assert cfg.val_split is not None
        val_ds = open_dataset(dataclasses.replace(cfg.data, split=cfg.val_split), progress=False)
        overlap = {t.sequence for t in val_ds.tracks()} & {t.sequence for t in train_set.tracks()}
        if overlap:
            say(f"warning: validation split '{cfg.val_split}' shares {len(overlap)} sequences with the "
                f"training data ({sorted(overlap)[:3]} ...): val metrics are not held-out")
        vs = make_sampler(cfg, val_ds)
        idx = evenly_spaced(len(vs), cfg.val_max_patches)
        items = [vs.sample(int(i)) for i in idx]
        motions = np.stack([it[2] for it in items]) if cfg.model.input == "pair" else None
        return cls(np.stack([it[0] for it in items]), np.stack([it[1] for it in items]), motions)

    def __len__(self) -> int:
        return len(self.patches)

    @torch.no_grad()
    def evaluate(self, net: nn.Module, prior: MotionPrior, cfg: PretrainConfig, device: torch.device) -> dict[str, float]:
        """Deterministic masks (z = μ′, eval mode) of the validation patches: losses, J, Mahalanobis;
        for pairs also the calibration of the motion posterior against the prior (``bmvtrack.calibration``)."""
        sums: dict[str, float] = {k: 0.0 for k in STAT_KEYS}
        ious: list[float] = []
        maha: list[float] = []
        mus: list[np.ndarray] = []
        covs: list[np.ndarray] = []
        mean_p, cov_p = prior.mean, prior.cov
        n = len(self.patches)
        with _eval_mode(net):
            for i in range(0, n, cfg.batch_size):
                x = patches_to_tensor(self.patches[i:i + cfg.batch_size], device)
                y = torch.from_numpy(self.masks[i:i + cfg.batch_size]).to(device).long()
                motion = None if self.motions is None else torch.from_numpy(self.motions[i:i + cfg.batch_size])
                out = net(x, sample=False)
                parts = loss_from_config(out, y, cfg.model, motion=None if motion is None else motion.to(device))
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
                mus.append(mu)
                covs.append(cov)
        val = {f"val/{'loss' if k == 'total' else k}": v / n for k, v in sums.items()}
        val["val/J"] = float(np.mean(ious))
        val["val/mahalanobis"] = float(np.mean(maha))
        if self.motions is not None:
            cmp = compare_to_prior(self.motions, np.concatenate(mus), np.concatenate(covs), mean_p, cov_p)
            val["val/cover50"] = cmp.posterior.coverage[0.5]
            val["val/cover90"] = cmp.posterior.coverage[0.9]
            val["val/prior_nll"] = cmp.prior.nll
            val["val/prior_cover90"] = cmp.prior.coverage[0.9]
            # which components μ′ predicts better than the prior's one mean (1 exact, 0 no better)
            val.update({f"val/skill_{name}": v for name, v in zip(RELATIVE_NAMES, cmp.skill, strict=True)})
        return val

    @torch.no_grad()
    def sample_grid(self, net: nn.Module, device: torch.device, count: int, path: Path) -> Path | None:
        """PNG of ``count`` patches: input, ground truth, prediction (white = hit, red = false
        positive, blue = miss); None when ``count`` is 0."""
        if count <= 0:
            return None
        idx = evenly_spaced(len(self.patches), count)
        patches, masks = self.patches[idx], self.masks[idx]
        with _eval_mode(net):
            logits = net(patches_to_tensor(patches, device), sample=False)["logits"]
        pred = (logits.argmax(1) != 0).cpu().numpy()
        gt = masks.astype(bool)
        gt_rgb = np.repeat(gt[..., None], 3, -1).astype(np.uint8) * 255
        pr = np.zeros_like(gt_rgb)
        pr[pred & gt] = (255, 255, 255)
        pr[pred & ~gt] = (230, 40, 40)
        pr[~pred & gt] = (40, 90, 230)
        shown = patches[..., -3:]  # a pair shows its search crop, the one the mask is of
        rows = [np.concatenate(list(r), axis=1) for r in (shown, gt_rgb, pr)]
        grid = np.concatenate(rows, axis=0)
        scale = max(1, 96 // patches.shape[1])
        if scale > 1:
            grid = grid.repeat(scale, 0).repeat(scale, 1)
        from PIL import Image

        atomic_save(path, lambda buf: Image.fromarray(grid).save(buf, format="PNG"))
        return path
