"""Segment an object-centred crop with a pretrained βMVAE / βMVUnet and fit a rotated box to the mask.

Shared by the VAE evaluation (``bmvtrack.evaluate_vae``) and the segmentation tracker baseline
(``bmvtrack.agents.baselines.segmentation_tracker``), so both place crops, read the network and fit boxes the
same way:

- ``load_segmenter``: checkpoint → eval-mode network and its ``ModelConfig`` (errors name the file).
- ``predict_patches``: uint8 patches → foreground probabilities (1 − P(background)), deterministic
  (z = μ′, the posterior mean) unless ``sample=True`` (eq. 6 draws).
- ``segment_crop``: crop the frame around a box (the paper's padding), predict, paste the patch
  probabilities back into a frame-sized map.
- ``box_from_prob``: threshold the map and fit a rotated box to the kept mask components: all of
  them, the largest, or (``keep="overlap"``, the tracker's default) those touching the previous box.
- ``track_step``: one step of the segmentation tracker (segment at the previous box, fit the box).

A "model" here is anything called as ``model(x, sample=..., generator=...)`` that returns a dict
with ``logits`` (B×C×H×W, class 0 = background) and has ``cfg.patch_size``; tests substitute
oracle models through that interface.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch import nn

from bmvtrack.checkpoint import load_checkpoint, model_entries, network_mismatch
from bmvtrack.data.patches import CropWindow, crop_image, crop_window, paste_patch
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import BoxMethod, RBox, canonicalize, fill_rbox, rbox_corners, rbox_from_mask  # noqa: F401  (fill_rbox re-exported)

Keep = Literal["all", "largest", "overlap"]
KEEP_CHOICES = ("overlap", "all", "largest")
PRIOR_KEYS = ("encoder.bottleneck.prior_mean", "encoder.bottleneck.prior_cov", "encoder.bottleneck.prior_std")


# ------------------------------------------------------------------------------------ loading


def load_segmenter(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelConfig]:
    """The full βMVAE / βMVUnet of a pretraining checkpoint, in eval mode on ``device``, and its config.

    Every failure is a one-line ``CheckpointError`` that names the file: missing or truncated
    file, another kind of checkpoint, a malformed ``model_config``, no prior buffers, or weights
    that do not fit the architecture the config describes (another architecture or width).
    """
    path = Path(checkpoint_path)
    ckpt = load_checkpoint(path, kind="bmvae")
    cfg, state = model_entries(ckpt, path)
    missing_prior = [k for k in PRIOR_KEYS[:2] if k not in state]
    if missing_prior:  # an encoder-only or foreign state dict: list what is missing
        raise network_mismatch(path, cfg, state)
    try:
        model = build_model(cfg, state[PRIOR_KEYS[0]], state[PRIOR_KEYS[1]], state.get(PRIOR_KEYS[2]))
    except (ValueError, RuntimeError, TypeError) as exc:
        raise network_mismatch(path, cfg, state, cause=exc) from None
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:  # torch's text is many lines: say it in one
        raise network_mismatch(path, cfg, state, expected=model.state_dict(), cause=exc) from None
    model.requires_grad_(False)
    return model.to(device).eval(), cfg


# --------------------------------------------------------------------------------- prediction


def patch_size_of(model: Any) -> int:
    """Side of the square patch the model is fed (``model.cfg.patch_size``)."""
    return int(model.cfg.patch_size)


def model_device(model: Any) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for parameter-less stand-ins)."""
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return torch.device("cpu")


def foreground_prob(logits: torch.Tensor) -> torch.Tensor:
    """P(object) = 1 − P(background) per pixel (class 0 is background; any other class is object)."""
    return 1.0 - torch.softmax(logits.float(), dim=1)[:, 0]


@torch.no_grad()
def predict_patches(
    model: Any,
    patches: np.ndarray,
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """Foreground probabilities (B×S×S float32) of uint8 RGB patches (B×S×S×3), and the raw output dict.

    ``sample=False`` is the deterministic posterior-mean pass (z = μ′); ``sample=True`` draws z with
    eq. 6 (``generator`` makes it reproducible). Output tensors are moved to the CPU.
    """
    if patches.ndim != 4 or patches.shape[-1] != 3:
        raise ValueError(f"patches must be B×S×S×3 uint8, got shape {patches.shape}")
    x = patches_to_tensor(patches, device=model_device(model))
    out = model(x, sample=sample, generator=generator)
    prob = foreground_prob(out["logits"]).cpu().numpy().astype(np.float32)
    return prob, {k: v.detach().cpu() for k, v in out.items() if isinstance(v, torch.Tensor)}


def segment_window(model: Any, frame: np.ndarray, window: CropWindow) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """Deterministic pass on one crop window: (patch probabilities S×S, output dict)."""
    prob, out = predict_patches(model, crop_image(frame, window)[None])
    return prob[0], out


def segment_crop(
    model: Any, frame: np.ndarray, box: RBox, context: float = 0.25, clip: bool = True
) -> tuple[np.ndarray, CropWindow]:
    """Segment the crop around ``box`` (padded by ``context·(w+h)`` per side) deterministically.

    Returns the foreground probability map pasted back into the frame (float32 H×W, 0 outside the
    crop) and the crop window used.
    """
    window = crop_window(box, frame.shape[:2], patch_size_of(model), context, clip)
    patch_prob, _ = segment_window(model, frame, window)
    return paste_patch(patch_prob, window, frame.shape[:2]).astype(np.float32), window


# ------------------------------------------------------------------------------------ boxes


def mask_from_prob(prob: np.ndarray, threshold: float = 0.5, keep: Keep = "all",
                   anchor: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask ``prob > threshold`` with the 8-connected components that ``keep`` selects.

    ``"all"``: every component. ``"largest"``: the largest only. ``"overlap"``: the components that
    touch ``anchor`` (a boolean map of the previous box, same shape), so a look-alike or a large
    neighbour at the crop's edge does not pull the box off the target, while the pieces of a split
    object inside the box all stay; when none touches, all are kept (the object may
    have moved out of the previous box).
    """
    mask = np.asarray(prob) > threshold
    if keep not in KEEP_CHOICES:
        raise ValueError(f"keep must be one of {KEEP_CHOICES}, got {keep!r}")
    if keep == "all" or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    if keep == "largest":
        return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if anchor is None or anchor.shape != mask.shape:
        raise ValueError(f"keep='overlap' needs an anchor map of shape {mask.shape}")
    touching = np.unique(labels[anchor & mask])
    return np.isin(labels, touching) if len(touching) else mask


def box_from_prob(
    prob: np.ndarray,
    threshold: float = 0.5,
    method: BoxMethod = "minarearect",
    keep: Keep = "all",
    reference_angle: float | None = None,
    anchor: np.ndarray | None = None,
) -> RBox | None:
    """Rotated box of the thresholded map (None when nothing is above the threshold).

    ``keep`` and ``anchor`` choose the mask components the box is fitted to (``mask_from_prob``).
    The angle follows the project's convention (closest to ``reference_angle`` when given, else in
    [-45°, 45°)).
    """
    box = rbox_from_mask(mask_from_prob(prob, threshold, keep, anchor).astype(np.uint8), method)
    return None if box is None else canonicalize(box, reference_angle)


def box_in_window(
    patch_prob: np.ndarray,
    window: CropWindow,
    frame_hw: tuple[int, int],
    previous: RBox,
    threshold: float = 0.5,
    method: BoxMethod = "minarearect",
    keep: Keep = "overlap",
) -> RBox | None:
    """The tracker's next box: the patch's probabilities pasted back at frame resolution, thresholded,
    the components ``keep`` selects (``"overlap"``: those touching ``previous``), a rotated box fitted.

    Only the frame region under the crop window is pasted (nothing outside it can be foreground), so
    the cost does not grow with the frame size. Shared by the segmentation tracker and the RL state's
    motion cue, which therefore propose the same box.
    """
    h, w = frame_hw
    rx0, ry0 = max(int(np.floor(window.x0)), 0), max(int(np.floor(window.y0)), 0)
    rx1, ry1 = min(int(np.ceil(window.x1)), w), min(int(np.ceil(window.y1)), h)
    if rx1 <= rx0 or ry1 <= ry0:
        return None
    local = CropWindow(window.x0 - rx0, window.y0 - ry0, window.x1 - rx0, window.y1 - ry0, window.size)
    prob = paste_patch(patch_prob, local, (ry1 - ry0, rx1 - rx0))
    shifted = RBox(previous.cx - rx0, previous.cy - ry0, previous.w, previous.h, previous.angle)
    anchor = fill_rbox(shifted, prob.shape) if keep == "overlap" else None
    box = box_from_prob(prob, threshold, method, keep, reference_angle=previous.angle, anchor=anchor)
    return None if box is None else RBox(box.cx + rx0, box.cy + ry0, box.w, box.h, box.angle)


@dataclass
class StepResult:
    """One tracker step: the crop window, the fitted box (None = empty mask), the network's S×S
    map ``patch_prob`` and its raw output dict (posterior μ′, Σ′, ...).

    ``prob``, the map pasted into the whole frame, is made only when asked for (visualisation):
    the box needs the window region alone (``box_in_window``), and a full-frame paste per step
    would cost more than the box fit at 480p.
    """

    window: CropWindow
    box: RBox | None
    patch_prob: np.ndarray
    output: dict[str, torch.Tensor]
    frame_hw: tuple[int, int]

    @property
    def prob(self) -> np.ndarray:
        """The frame-sized (H×W float32) probability map, 0 outside the crop window."""
        return paste_patch(self.patch_prob, self.window, self.frame_hw).astype(np.float32)


def track_step(
    model: Any,
    frame: np.ndarray,
    box: RBox,
    threshold: float = 0.5,
    context: float = 0.25,
    box_method: BoxMethod = "minarearect",
    keep: Keep = "overlap",
    clip: bool = True,
) -> StepResult:
    """Segment the search crop at ``box`` and fit the new box to the predicted mask (``keep``: see ``mask_from_prob``)."""
    hw = frame.shape[:2]
    window = crop_window(box, hw, patch_size_of(model), context, clip)
    patch_prob, out = segment_window(model, frame, window)
    new = box_in_window(patch_prob, window, hw, box, threshold, box_method, keep)
    return StepResult(window, new, patch_prob, out, hw)
