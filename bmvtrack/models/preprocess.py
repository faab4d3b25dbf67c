"""Turning uint8 RGB patches into network input, the same way in pretraining and in the environment."""
from __future__ import annotations

import numpy as np
import torch

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def patches_to_tensor(patches: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float32, per-channel standardised (ImageNet statistics)."""
    x = torch.as_tensor(np.ascontiguousarray(patches) if isinstance(patches, np.ndarray) else patches)
    x = x.to(device=device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
