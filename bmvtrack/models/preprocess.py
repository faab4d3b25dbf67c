"""Turning uint8 patches into network input, the same way in pretraining, evaluation and tracking.

A patch is RGB (3 channels) or, for the motion posterior, a pair (7 channels: reference RGB, the
reference mask as 0/255, search RGB). RGB is standardised with ImageNet statistics, the mask
mapped to [-1, 1].
"""
from __future__ import annotations

import numpy as np
import torch

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def patches_to_tensor(patches: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, H, W, C) uint8 → (B, C, H, W) float32; C is 3 (RGB) or 7 (a pair)."""
    x = torch.as_tensor(np.ascontiguousarray(patches) if isinstance(patches, np.ndarray) else patches)
    x = x.to(device=device).permute(0, 3, 1, 2).float().div_(255.0)
    c = x.shape[1]
    if c not in (3, 7):
        raise ValueError(f"patches must have 3 (RGB) or 7 (pair) channels, got {c}")
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    if c == 3:
        return (x - mean) / std
    return torch.cat([(x[:, :3] - mean) / std, x[:, 3:4] * 2.0 - 1.0, (x[:, 4:] - mean) / std], dim=1)
