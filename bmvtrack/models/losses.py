"""The βMVAE loss (eqs. 2–3): weighted cross-entropy + (1 − soft Jaccard) + β·KL.

Why class weights from the batch: object-centred patches are mostly background or mostly object
depending on the crop; inverse-frequency weights stop either class from dominating the CE.
``mask_loss="bce_dice"`` (ours) replaces the mask term by the textbook U-Net's, binary
cross-entropy on the object's logit margin + (1 − soft Dice), so that the two losses can be compared
on the same network and loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from bmvtrack.models.config import ModelConfig


def _as_index_target(target: Tensor) -> Tensor:
    """B×H×W integer class map from B×H×W or B×1×H×W (integer, bool or 0/1 float) masks."""
    if target.dim() == 4:
        if target.shape[1] != 1:
            raise ValueError(f"target must be B×H×W or B×1×H×W, got {tuple(target.shape)}")
        target = target[:, 0]
    if target.dim() != 3:
        raise ValueError(f"target must be B×H×W or B×1×H×W, got {tuple(target.shape)}")
    if target.is_floating_point():
        target = target.round()
    return target.long()


def class_weights_from_batch(target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Inverse class frequencies of the batch, normalised so that present classes average 1.

    Classes absent from the batch get weight 0 (they have no pixels to weigh).
    """
    valid = target != ignore_index
    labels = target[valid]
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"target has labels outside [0, {num_classes}) other than ignore_index={ignore_index}"
        )
    counts = torch.bincount(labels.flatten(), minlength=num_classes).to(torch.float32)
    present = counts > 0
    if not bool(present.any()):
        return torch.zeros(num_classes, device=target.device)
    freq = counts / counts.sum()
    inv = torch.where(present, 1.0 / freq.clamp_min(1e-12), torch.zeros_like(freq))
    return inv * (present.sum() / inv.sum())


def soft_jaccard(
    logits: Tensor, target: Tensor, ignore_index: int = 255, smooth: float = 1.0
) -> Tensor:
    """Mean over the batch of the soft Jaccard index of the object (every class but 0, background).

    Per image: (Σ p·t + s) / (Σ p + Σ t − Σ p·t + s), p = 1 − P(background), ignored pixels out.
    """
    target = _as_index_target(target)
    prob_fg = 1.0 - torch.softmax(logits, dim=1)[:, 0]
    valid = (target != ignore_index).to(prob_fg.dtype)
    t = ((target != 0) & (target != ignore_index)).to(prob_fg.dtype)
    p = prob_fg * valid
    inter = (p * t).sum(dim=(-2, -1))
    union = p.sum(dim=(-2, -1)) + t.sum(dim=(-2, -1)) - inter
    return ((inter + smooth) / (union + smooth)).mean()


def _bce_dice(logits: Tensor, target: Tensor, ignore_index: int, smooth: float) -> tuple[Tensor, Tensor]:
    """BCE of the object's logit margin (logsumexp of the object classes − background's) and the
    batch mean of the soft Dice index per image (smoothed by ``smooth``), ignored pixels out."""
    margin = torch.logsumexp(logits[:, 1:], dim=1) - logits[:, 0]
    valid = (target != ignore_index).to(margin.dtype)
    t = ((target != 0) & (target != ignore_index)).to(margin.dtype)
    bce = (F.binary_cross_entropy_with_logits(margin, t, reduction="none") * valid).sum() / valid.sum().clamp_min(1.0)
    p = torch.sigmoid(margin) * valid
    dice = (2 * (p * t).sum(dim=(-2, -1)) + smooth) / (p.sum(dim=(-2, -1)) + t.sum(dim=(-2, -1)) + smooth)
    return bce, dice.mean()


def construction_loss(
    logits: Tensor,
    target: Tensor,
    ignore_index: int = 255,
    jaccard_smooth: float = 1.0,
    class_weights: str = "batch",
    mask_loss: str = "ce_jaccard",
) -> dict[str, Tensor]:
    """Eq. 3: ``cons = ce + (1 − jaccard)``; returns cons, ce, jaccard (index), jaccard_loss.

    ``class_weights="batch"`` is the paper's inverse batch frequency; ``"none"`` is plain CE,
    which over-segments less when the object is the minority of the patch. ``mask_loss="bce_dice"``:
    ``cons = bce + (1 − dice)`` (``ce`` is then the BCE; ``jaccard`` is still reported, and ``dice``).
    """
    target = _as_index_target(target)
    if logits.shape[-2:] != target.shape[-2:] or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match"
        )
    if class_weights not in ("batch", "none"):
        raise ValueError(f"class_weights must be 'batch' or 'none', got {class_weights!r}")
    if mask_loss not in ("ce_jaccard", "bce_dice"):
        raise ValueError(f"mask_loss must be 'ce_jaccard' or 'bce_dice', got {mask_loss!r}")
    if mask_loss == "bce_dice":
        if class_weights != "none":
            raise ValueError("mask_loss 'bce_dice' has no class weights: use class_weights='none'")
        bce, dice = _bce_dice(logits, target, ignore_index, jaccard_smooth)
        jac = soft_jaccard(logits, target, ignore_index, jaccard_smooth).detach()
        return {"cons": bce + (1.0 - dice), "ce": bce, "dice": dice, "jaccard": jac, "jaccard_loss": 1.0 - jac}
    weights = (
        class_weights_from_batch(target, logits.shape[1], ignore_index).to(logits.dtype)
        if class_weights == "batch"
        else None
    )
    if bool((target != ignore_index).any()):
        ce = F.cross_entropy(logits, target, weight=weights, ignore_index=ignore_index)
    else:
        ce = logits.sum() * 0.0
    jac = soft_jaccard(logits, target, ignore_index, jaccard_smooth)
    jac_loss = 1.0 - jac
    return {"cons": ce + jac_loss, "ce": ce, "jaccard": jac, "jaccard_loss": jac_loss}


def beta_mv_loss(
    out: dict[str, Tensor],
    target: Tensor,
    beta: float = 5.0,
    ignore_index: int = 255,
    jaccard_smooth: float = 1.0,
    class_weights: str = "batch",
    mask_loss: str = "ce_jaccard",
) -> dict[str, Tensor]:
    """Eq. 2: ``total = cons + β·kl`` from a model output dict (``logits``, ``kl``).

    All components are returned (total, cons, ce, jaccard, jaccard_loss, kl) for logging; only
    ``total`` carries the gradient that should be stepped.
    """
    parts = construction_loss(out["logits"], target, ignore_index, jaccard_smooth, class_weights, mask_loss)
    kl = out["kl"]
    parts["kl"] = kl
    parts["total"] = parts["cons"] + beta * kl
    return parts


def motion_nll(mu: Tensor, scale_tril: Tensor, motion: Tensor) -> Tensor:
    """Per-sample negative log-likelihood of ``motion`` (B×P) under N(μ′, LLᵀ) (B×P, B×P×P)."""
    diff = (motion - mu).unsqueeze(-1)
    white = torch.linalg.solve_triangular(scale_tril, diff, upper=False).squeeze(-1)
    logdet = torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (white**2).sum(-1) + logdet + 0.5 * mu.shape[-1] * math.log(2 * math.pi)


def loss_from_config(
    out: dict[str, Tensor], target: Tensor, cfg: ModelConfig, ignore_index: int = 255,
    motion: Tensor | None = None,
) -> dict[str, Tensor]:
    """``beta_mv_loss`` with β, the CE class weighting and the mask loss of the model config; with ``motion``
    (the true box-relative motion of each pair, ``input: pair``) plus ``motion_weight`` times its
    NLL under the posterior (reported as ``nll``)."""
    parts = beta_mv_loss(
        out, target, beta=cfg.beta, ignore_index=ignore_index, class_weights=cfg.class_weights,
        mask_loss=cfg.mask_loss,
    )
    if motion is None:
        parts["nll"] = torch.zeros((), device=parts["total"].device)
    else:
        parts["nll"] = motion_nll(out["mu"], out["scale_tril"], motion.to(out["mu"].dtype)).mean()
        parts["total"] = parts["total"] + cfg.motion_weight * parts["nll"]
    return parts
