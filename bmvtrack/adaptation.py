"""First-frame adaptation: fine-tune a copy of the segmenter on the one frame a track starts from.

Why: trained on 24 real sequences, the βMVUnet generalises poorly to unseen objects: on
DAVIS dev-val the box fitted to its mask, from a crop at the previous annotated box, overlaps the
next annotated box by 0.44–0.49 mean rotated IoU, where not moving at all scores 0.90. A tracker
knows the object on frame 0, so, as OSVOS does for masks and MDNet-style trackers for boxes, a few
dozen gradient steps on augmented crops of that frame teach the network *this* object and *this*
background before tracking starts.

The label is what the caller has: the annotation mask (the semi-supervised video-segmentation
protocol) or the rotated box (the box-tracking protocol, the same information CSRT gets). From a
box there are two labels. The filled box (``label="box"``) teaches box-shaped masks and so
over-segments compact shapes. The default, ``label="pseudo"``, is the network's own mask inside
the box plus the box's centre half (``core``): object there, background outside the box, no loss
on the rest of the box. It teaches mostly what is *not* the object (look-alikes, shore, water)
and keeps the network's own idea of the object's shape; the centre keeps a network that finds
only part of the object from shrinking onto that part.
The base model is never modified; BatchNorm statistics stay frozen (a batch cut from one frame
would replace them with that frame's). ``params="decoder"`` trains only the decoder and the output
convolution, so the encoder's outputs — the RL state — stay exactly those the agent was trained on.

A motion-posterior network (``model.input: pair``) is adapted the same way on pairs made from the one
frame: frame 0 at a jittered box beside frame 0 warped by a motion drawn from the network's own
box-relative prior, so both its motion head (the NLL of the drawn motion) and its decoder (the
pseudo label, warped alike) learn this object. Its pairs jitter the box as its pretraining does
(``AdaptConfig.pair_augment``: the centre, hardly the size, which a box alone does not show).
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

import numpy as np
import torch
from torch import nn

from bmvtrack.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bmvtrack.io import per_track_file
from bmvtrack.data.pair_sampler import draw_warp, make_pair, pair_crops
from bmvtrack.data.patch_sampler import AugmentConfig, augmented_patch
from bmvtrack.models.losses import construction_loss, motion_nll
from bmvtrack.models.preprocess import patches_to_tensor
from bmvtrack.motion import RBox
from bmvtrack.segmentation import fill_rbox, foreground_prob, segment_crop

AdaptParams = Literal["all", "decoder"]
BoxLabel = Literal["box", "pseudo"]
IGNORE = 255  # label value without loss (construction_loss's ignore_index)


@dataclass
class AdaptConfig:
    """How a segmenter is fine-tuned on a track's first frame (``steps=0`` turns it off)."""

    steps: int = 60  # Adam steps; 60 × 16 patches is ~15 s on 2 CPU cores for the 2 M-parameter default
    lr: float = 1.0e-4
    batch_size: int = 16
    params: AdaptParams = "all"  # all weights, or the decoder and output layer only (encoder outputs unchanged)
    label: BoxLabel = "pseudo"  # from a box: the network's own mask inside it, or the filled box (adapt_to_box)
    core: float = 0.5  # pseudo label: the box shrunk to this fraction of its sides is object as well
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # a motion network's pairs: the box off-centre as in its pretraining (configs/pretrain_motion_davis.yaml)
    pair_augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(jitter_shift=0.1, jitter_scale=0.03))
    # a motion network's warps: the prior's covariance scaled by this squared (its pretraining's pairs.warp_scale)
    warp_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or not self.lr > 0 or not self.warp_scale > 0:
            raise ValueError(f"adaptation needs steps ≥ 0, batch_size ≥ 1, lr > 0 and warp_scale > 0, got {self}")
        if self.params not in ("all", "decoder"):
            raise ValueError(f"adaptation params must be 'all' or 'decoder', got {self.params!r}")
        if not 0.0 <= self.core <= 1.0:
            raise ValueError(f"adaptation core must be in [0, 1], got {self.core}")
        if self.label not in ("box", "pseudo"):
            raise ValueError(f"adaptation label must be 'box' or 'pseudo', got {self.label!r}")


def _trainable(model: nn.Module, params: AdaptParams) -> list[nn.Parameter]:
    if params == "all":
        return list(model.parameters())
    if not (hasattr(model, "decoder") and hasattr(model, "outc")):
        raise ValueError("params='decoder' needs a βMVAE/βMVUnet with a decoder and an output layer")
    return list(model.decoder.parameters()) + list(model.outc.parameters())


def adapt_segmenter(model: nn.Module, frame: np.ndarray, label: np.ndarray, box: RBox,
                    cfg: AdaptConfig | None = None) -> nn.Module:
    """A copy of ``model`` fine-tuned on crops of ``frame`` around ``box`` with ``label``.

    ``label`` is H×W: bool (object / background) or uint8 class indices with 255 = no loss.

    Loss: the network's pretraining construction loss (e.g. CE + 1 − soft Jaccard) on the
    deterministic pass (z = μ′, the pass the trackers use). Returns the copy in eval mode with
    gradients off; ``model`` is untouched. Deterministic for a given ``cfg.seed`` on the CPU.
    """
    cfg = cfg or AdaptConfig()
    size = int(model.cfg.patch_size)
    class_weights = getattr(model.cfg, "class_weights", "batch")
    mask_loss = getattr(model.cfg, "mask_loss", "ce_jaccard")
    if label.dtype != np.uint8:
        label = label.astype(bool)

    def batch_loss(tuned: nn.Module, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
        pairs = [augmented_patch(frame, label, box, size, cfg.augment, rng) for _ in range(cfg.batch_size)]
        x = patches_to_tensor(np.stack([p for p, _ in pairs]), device=device)
        y = torch.from_numpy(np.stack([m for _, m in pairs])).long().to(device)
        return construction_loss(tuned(x, sample=False)["logits"], y, class_weights=class_weights,
                                 mask_loss=mask_loss)["cons"]

    return _fine_tune(model, frame, label, cfg, batch_loss)


def _fine_tune(model: nn.Module, frame: np.ndarray, label: np.ndarray, cfg: AdaptConfig,
               batch_loss: Callable[[nn.Module, np.random.Generator, torch.device], torch.Tensor]) -> nn.Module:
    """A copy of ``model`` after ``cfg.steps`` Adam steps on ``batch_loss`` (``cfg.params`` trained,
    BatchNorm statistics frozen), in eval mode with gradients off."""
    if label.shape != frame.shape[:2]:
        raise ValueError(f"label {label.shape} and frame {frame.shape[:2]} differ in size")
    tuned = copy.deepcopy(model)
    tuned.eval()  # BatchNorm keeps its running statistics
    if cfg.steps == 0:
        return tuned
    tuned.requires_grad_(False)
    params = _trainable(tuned, cfg.params)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    device = next(tuned.parameters()).device
    rng = np.random.default_rng(cfg.seed)
    for _ in range(cfg.steps):
        loss = batch_loss(tuned, rng, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    tuned.requires_grad_(False)
    return tuned


def pseudo_label(model: nn.Module, frame: np.ndarray, box: RBox, core: float,
                 threshold: float = 0.5) -> np.ndarray:
    """uint8 H×W label from the network's own mask: 1 where it sees object inside ``box`` (and on
    the box's centre part, ``core`` of its sides), 0 outside the box, ``IGNORE`` on the rest of the
    box. Falls back to the filled box when that leaves no object pixel at all. A motion network's
    mask is that of the pair (frame, frame) at ``box``: no motion."""
    prob = _pair_prob(model, frame, box) if _is_pair(model) else segment_crop(model, frame, box)[0]
    hw = frame.shape[:2]
    inside = fill_rbox(box, hw)
    label = np.full(inside.shape, IGNORE, np.uint8)
    label[~inside] = 0
    own = inside & (prob > threshold)
    if core > 0:
        own |= fill_rbox(RBox(box.cx, box.cy, box.w * core, box.h * core, box.angle), hw)
    label[own if own.any() else inside] = 1
    return label


def _is_pair(model: nn.Module) -> bool:
    return getattr(getattr(model, "cfg", None), "input", "crop") == "pair"


@torch.no_grad()
def _pair_prob(model: nn.Module, frame: np.ndarray, box: RBox, context: float = 0.25) -> np.ndarray:
    """A motion network's P(object) of ``frame`` paired with itself at ``box``, pasted into the frame."""
    import cv2

    h, w = frame.shape[:2]
    x, crop = pair_crops(frame, fill_rbox(box, (h, w)), frame, box, int(model.cfg.patch_size), context)
    prob = foreground_prob(model(patches_to_tensor(x[None], next(model.parameters()).device),
                                 sample=False)["logits"])[0].cpu().numpy()
    return cv2.warpAffine(prob, cv2.invertAffineTransform(crop), (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def network_prior(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The mean and covariance of the box-relative prior a motion network was trained with (its buffers)."""
    buffers = {k.rsplit(".", 1)[-1]: v for k, v in model.state_dict().items() if "prior_" in k}
    return buffers["prior_mean"].double().cpu().numpy(), buffers["prior_cov"].double().cpu().numpy()


def adapt_motion_net(model: nn.Module, frame: np.ndarray, label: np.ndarray, box: RBox,
                     cfg: AdaptConfig | None = None) -> nn.Module:
    """A copy of the motion network ``model`` fine-tuned on pairs of ``frame`` and its own warps.

    Each pair: ``frame`` at ``box`` jittered (``cfg.pair_augment``) beside ``frame`` warped by a motion
    drawn from the network's box-relative prior (covariance × ``cfg.warp_scale``²); targets: the drawn
    motion (Gaussian NLL under N(μ′, Σ′)) and ``label`` through the warp (the construction loss; ``label`` as in
    ``adapt_segmenter``). ``model`` is untouched; BatchNorm statistics stay frozen.
    """
    cfg = cfg or AdaptConfig()
    aug = cfg.pair_augment
    mcfg = model.cfg
    mean, cov = network_prior(model)
    chol = cfg.warp_scale * np.linalg.cholesky(cov)
    label = label.astype(np.uint8)

    def batch_loss(tuned: nn.Module, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
        items = []
        for _ in range(cfg.batch_size):
            target, warp = draw_warp(box, mean, chol, aug.context, rng)
            items.append(make_pair(frame, label, box, frame, label, target, int(mcfg.patch_size), aug,
                                   mcfg.reference, rng, warp))
        x = patches_to_tensor(np.stack([x for x, _, _ in items]), device=device)
        y = torch.from_numpy(np.stack([y for _, y, _ in items])).long().to(device)
        r = torch.from_numpy(np.stack([r for _, _, r in items])).to(device)
        out = tuned(x, sample=False)
        nll = motion_nll(out["mu"], out["scale_tril"], r.to(out["mu"].dtype)).mean()
        cons = construction_loss(out["logits"], y, class_weights=getattr(mcfg, "class_weights", "batch"),
                                 mask_loss=getattr(mcfg, "mask_loss", "ce_jaccard"))["cons"]
        return cons + float(mcfg.motion_weight) * nll

    return _fine_tune(model, frame, label, cfg, batch_loss)


def adapt_to_box(model: nn.Module, frame: np.ndarray, box: RBox, cfg: AdaptConfig) -> nn.Module:
    """The box-tracking protocol: adapt on frame 0 knowing only its rotated ``box``.

    The label is the filled box or the network's own mask inside it (``cfg.label``). A motion
    network (``model.input: pair``) goes to ``adapt_motion_net``, any other to ``adapt_segmenter``.
    ``cfg.steps == 0`` returns ``model`` itself (no copy).
    """
    if cfg.steps == 0:
        return model
    if cfg.label == "pseudo":
        label = pseudo_label(model, frame, box, cfg.core)
    else:
        label = fill_rbox(box, frame.shape[:2])
    return adapt_network(model, frame, label, box, cfg)


def adapt_network(model: nn.Module, frame: np.ndarray, label: np.ndarray, box: RBox, cfg: AdaptConfig) -> nn.Module:
    """``adapt_motion_net`` for a motion network (``model.input: pair``), else ``adapt_segmenter``."""
    return (adapt_motion_net if _is_pair(model) else adapt_segmenter)(model, frame, label, box, cfg)


class SharedAdaptation:
    """One adapted copy per (frame 0, box), shared by trackers with the same base network and config.

    Why: evaluating several agents of one encoder would adapt every track once per agent (20 s
    each). Evaluation runs track by track, so by default only the latest copy is kept; ``keep``
    more serve a second pass over the same tracks (the perturbation protocol). ``get`` also returns
    how long the copy took to make when it is reused, so a tracker can still count it in its fps.
    """

    def __init__(self, cfg: AdaptConfig, keep: int = 1) -> None:
        self.cfg, self.keep = cfg, max(int(keep), 1)
        self._made: OrderedDict[tuple, tuple[nn.Module, float]] = OrderedDict()

    def get(self, model: nn.Module, frame: np.ndarray, box: RBox) -> tuple[nn.Module, float]:
        """(adapted copy, seconds it took if it was made before and is reused here, else 0)."""
        key = (hashlib.sha1(np.ascontiguousarray(frame).tobytes()).hexdigest(), frame.shape,
               tuple(np.round(box.as_array(), 6)))
        if key in self._made:
            self._made.move_to_end(key)
            return self._made[key]
        t0 = time.perf_counter()
        net = adapt_to_box(model, frame, box, self.cfg)
        self._made[key] = (net, time.perf_counter() - t0)
        while len(self._made) > self.keep:
            self._made.popitem(last=False)
        return net, 0.0


class AdaptedModels:
    """Per-track adapted copies of one network (``adapt_to_box`` on the track's first frame and box).

    Why: an agent trained on the adapted state needs its track's copy at every reset, and one
    adaptation costs about a thousand tracked frames (benchmarks/bench_adapt.py), so each copy is
    made once per track and, with ``cache_dir``, kept on disk for later runs and seeds. The folder
    must be specific to the base network and ``cfg`` (``cache_folder``). A cached file that cannot
    be read is reported and remade, never trusted.
    """

    def __init__(self, model: nn.Module, cfg: AdaptConfig, cache_dir: str | Path | None = None) -> None:
        if cfg.steps <= 0:
            raise ValueError("AdaptedModels needs cfg.steps > 0")
        self.model, self.cfg = model, cfg
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._models: dict[str, nn.Module] = {}

    def _file(self, key: str, name: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return per_track_file(self.cache_dir, name, key, ".pt")

    def get(self, key: str, name: str, first: Callable[[], tuple[np.ndarray, RBox]]) -> nn.Module:
        """The adapted copy for track ``key`` (``first()`` gives frame 0 and its box when it must be made)."""
        if key in self._models:
            return self._models[key]
        path = self._file(key, name)
        tuned = None
        if path is not None and path.is_file():
            try:
                tuned = copy.deepcopy(self.model)
                tuned.load_state_dict(load_checkpoint(path, kind="adapted")["model"])
            except (CheckpointError, KeyError, RuntimeError) as exc:
                print(f"{path}: unusable adapted copy ({str(exc)[:200]}); adapting again", file=sys.stderr)
                tuned = None
        if tuned is None:
            frame, box = first()
            tuned = adapt_to_box(self.model, frame, box, self.cfg)
            if path is not None:
                save_checkpoint(path, {"kind": "adapted", "track": key, "model": tuned.state_dict()})
        tuned.requires_grad_(False).eval()
        self._models[key] = tuned
        return tuned

    def prepare(self, tracks: Iterable[tuple[str, str, Callable[[], tuple[np.ndarray, RBox]]]]) -> None:
        """Make (or load) the copy of every ``(key, name, first)`` now, with a progress bar."""
        from tqdm.auto import tqdm

        items = list(tracks)
        for key, name, first in tqdm(items, desc="first-frame adaptation", unit="track", disable=not items):
            self.get(key, name, first)


def cache_folder(root: str | Path, checkpoint: str | Path, cfg: AdaptConfig) -> Path:
    """``root``/<hash of the checkpoint file's bytes and of ``cfg``>: adapted copies of one network."""
    h = hashlib.sha256()
    with open(checkpoint, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps(asdict(cfg), sort_keys=True).encode())
    return Path(root) / h.hexdigest()[:16]
