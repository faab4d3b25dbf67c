"""Configuration of the βMVAE / βMVUnet networks.

Why a dataclass of its own: the same network is built by pretraining, evaluation and the RL
environment (frozen encoder), so its shape must come from one typed, strictly-checked place.
The defaults are the small CPU model (βMVUnet, about 2 M parameters at 96×96); the paper-scale
networks are ``configs/model_paper_mvae.yaml`` and ``configs/model_paper_mvunet.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bmvtrack.config import ConfigError


@dataclass
class ModelConfig:
    """Shape and bottleneck of a βMVAE / βMVUnet (read with ``bmvtrack.config.load_config``)."""

    arch: Literal["mvae", "mvunet"] = "mvunet"  # mvae: plain auto-encoder; mvunet: U-Net skips
    # patch: one object-centred crop (paper); pair: the motion posterior (ours) — reference crop,
    # its mask and the next frame's crop through the same window (in_channels 7); the bottleneck's
    # N(μ′, Σ′) is then over the box-relative motion between the two and is trained by its NLL
    input: Literal["patch", "pair"] = "patch"
    in_channels: int = 3  # channels of the input patch (RGB; 7 for input: pair)
    # input pair: the reference channel is the object's mask at t (when tracking: the previous decoded
    # mask) or the box the tracker holds, filled in (no feedback from the decoder's masks into the motion)
    reference: Literal["mask", "box"] = "mask"
    keypoints: int = 0  # spatial soft-argmax keypoints of the H/8 map added to the pooled feature (0 = none)
    motion_weight: float = 1.0  # weight of the motion NLL in the loss (input: pair)
    # input pair: width of a siamese template matcher (0 = none) whose peak — where the reference box's
    # features best match the search crop — joins the pooled feature (3 numbers: x, y, sharpness)
    correlation: int = 0
    num_classes: int = 2  # output classes; 0 = background, the rest object (paper: 66)
    patch_size: int = 96  # square input side in pixels, divisible by 32 (paper: 256)
    base_width: int = 16  # encoder ResNet-18 stage widths = base_width × (1, 2, 4, 8) (paper: 64)
    # resnet: 7×7/2 conv + max-pool (ResNet-18, the paper); unet (ours): two 3×3 convs at full and at
    # half resolution, a full-resolution skip into the decoder (DAVIS folds: J&F gained in the U-Net's loop only)
    stem: Literal["resnet", "unet"] = "resnet"
    decoder_width: int = 16  # decoder stage widths = decoder_width × (8, 4, 2, 1, 1, 1)
    extra_stage: bool = True  # βMVUnet's extra stride-1 stage at the bottom of encoder and decoder
    extra_width: int = 0  # width of the encoder's extra stage; 0 = 8 × base_width
    extra_blocks: int = 1  # basic blocks in the extra stage (encoder and decoder each)
    z_channels: int = 32  # channels of the H/32 map that z (parts × K) is linearly projected to
    num_parts: int = 5  # latent variables (Δs_x, Δs_y, sinθ, Δx, Δy)
    part_size: int = 10  # K, neurons per variable per head (paper text 10; Fig. 4 / Table 2: 50)
    bottleneck: Literal["batch", "cholesky"] = "cholesky"  # batch: paper's Σ′; cholesky: per sample
    batch_cov_reduce: Literal["norm", "rms"] = "norm"  # batch Σ′: norm over batch (paper) or RMS
    z_mean: Literal["part", "neuron"] = "part"  # eq. 6 offset: part mean μ′_i (paper) or μ′ neuron
    beta: float = 5.0  # weight of the KL term in the loss (paper: 5)
    class_weights: Literal["batch", "none"] = "batch"  # CE weights: inverse batch frequency (paper) or none
    # the mask term: ce_jaccard = CE + (1 − soft Jaccard) (eq. 3, the paper); bce_dice (ours) = BCE on the
    # object's logit margin + (1 − soft Dice), the textbook U-Net's loss (class_weights none only)
    mask_loss: Literal["ce_jaccard", "bce_dice"] = "ce_jaccard"
    kl_direction: Literal["q_p", "p_q"] = (
        "q_p"  # q_p: KL(q‖prior) (eq. 2); p_q: KL(prior‖q) (Alg 1)
    )
    cov_eps: float = 1e-4  # ε: +εI on the batch Σ′; √ε floors the Cholesky diagonal
    norm: Literal["batch", "group"] = "batch"  # BatchNorm (ResNet) or GroupNorm (batch-size free)
    leaky_slope: float = 0.01  # negative slope of the Leaky ReLU used everywhere (paper)
    head_init_prior: bool = True  # initialise the heads so the first posterior is near the prior

    def __post_init__(self) -> None:
        """Reject shapes the networks cannot build, naming the key."""
        if self.patch_size <= 0 or self.patch_size % 32 != 0:
            raise ConfigError(
                f"model config: patch_size must be a positive multiple of 32, got {self.patch_size}"
            )
        for key in (
            "in_channels",
            "base_width",
            "decoder_width",
            "z_channels",
            "num_parts",
            "part_size",
        ):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model config: {key} must be positive, got {getattr(self, key)}")
        if self.input == "pair" and self.in_channels != 7:
            raise ConfigError(f"model config: input pair needs in_channels 7 (reference RGB, its mask, "
                              f"search RGB), got {self.in_channels}")
        if self.input == "pair" and self.bottleneck != "cholesky":
            raise ConfigError("model config: input pair needs bottleneck cholesky (a posterior per pair)")
        if self.keypoints < 0 or self.motion_weight < 0 or self.correlation < 0:
            raise ConfigError("model config: keypoints, correlation and motion_weight must be >= 0")
        if self.correlation and self.input != "pair":
            raise ConfigError("model config: correlation needs input pair (it matches the reference in the search crop)")
        if self.num_classes < 2:
            raise ConfigError(f"model config: num_classes must be >= 2, got {self.num_classes}")
        if self.extra_width < 0 or self.extra_blocks < 1:
            raise ConfigError("model config: extra_width must be >= 0 and extra_blocks >= 1")
        if self.cov_eps <= 0:
            raise ConfigError(f"model config: cov_eps must be > 0, got {self.cov_eps}")
        if self.mask_loss == "bce_dice" and self.class_weights != "none":
            raise ConfigError("model config: mask_loss bce_dice has no class weights (set class_weights: none)")
        if self.norm == "group" and (self.base_width % 8 or self.decoder_width % 8):
            raise ConfigError(
                "model config: norm=group needs base_width and decoder_width divisible by 8"
            )

    @property
    def encoder_widths(self) -> tuple[int, int, int, int]:
        """Widths of the four ResNet-18 stages."""
        w = self.base_width
        return (w, 2 * w, 4 * w, 8 * w)

    @property
    def extra_channels(self) -> int:
        """Width of the extra stage (resolved from ``extra_width``)."""
        return self.extra_width or 8 * self.base_width

    @property
    def feature_dim(self) -> int:
        """Length F of the pooled encoder feature that the μ′ and Σ′ heads read."""
        pooled = self.extra_channels if self.extra_stage else 8 * self.base_width
        return pooled + 2 * self.keypoints + (3 if self.correlation else 0)

    @property
    def latent_dim(self) -> int:
        """Neurons per head: num_parts × K."""
        return self.num_parts * self.part_size
