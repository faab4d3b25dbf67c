"""βMVAE and βMVUnet: ResNet-18 basic-block encoder, multivariational bottleneck, upsampling decoder

Layout (input H×W, both divisible by 32; w = base_width, d = decoder_width):

```
encoder  stem 7×7/2 (w, H/2) → maxpool → layer1 (w, H/4) → layer2 (2w, H/8) → layer3 (4w, H/16)
         → layer4 (8w, H/32) → [extra stage, stride 1 (extra_width, H/32)] → global avg pool → F
bottleneck  μ′ head, Σ′ head (F → parts×K) → posterior, eq. 6 → z (B × parts × K)
decoder  z → linear → z_channels × H/32 × W/32 → [extra stage (8d)] → top stage (8d)
         → up ×2 (4d, H/16) → up (2d, H/8) → up (d, H/4) → up (d, H/2) → up (d, H) → outc 1×1
```

βMVUnet concatenates every encoder stage's output (stem, layer1–4, extra) into the decoder stage
of the same resolution (a U-Net); βMVAE's decoder sees only z. The extra stage keeps stride 1 so
that any patch divisible by 32 works (a stride-2 stage would need 64). Leaky ReLU throughout.

``stem: unet`` (ours) replaces the 7×7/2 convolution and the max-pool by two 3×3 convolutions at
full resolution (w, H) and two at half (w, H/2), a max-pool between: the decoder's last stage then
gets a full-resolution skip, so mask boundaries come from full-resolution features instead of
being upsampled from H/2 (the ResNet stem's one 7×7 layer). On the DAVIS folds it did not raise J&F
in the paper's training loop; in the textbook U-Net's (Adam, cosine decay, no KL) it did.
"""

from __future__ import annotations

import math

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bmvtrack.models.bottleneck import MultiVariationalBottleneck, PriorArray
from bmvtrack.models.config import ModelConfig


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    groups = 8 if channels % 8 == 0 else 1
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 convs + shortcut); a 1×1 projection when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str, slope: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, cout)
        self.act = nn.LeakyReLU(slope, inplace=True)
        self.shortcut: nn.Module
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


def spatial_soft_argmax(maps: Tensor) -> Tensor:
    """Expected (x, y) in [-1, 1] of each channel's spatial softmax: B×C×H×W → B×2C."""
    b, c, h, w = maps.shape
    weights = torch.softmax(maps.reshape(b, c, h * w), dim=-1).view(b, c, h, w)
    xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=maps.dtype)
    ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=maps.dtype)
    return torch.cat([(weights.sum(-2) * xs).sum(-1), (weights.sum(-1) * ys).sum(-1)], dim=1)


class TemplateMatcher(nn.Module):
    """Where the reference box's content is in the search crop (ours, for the motion posterior).

    A small shared conv tower (stride 4) embeds the reference and search RGB crops; the middle half
    of the reference map — the box, since the crop window is the box padded by about half its size —
    is the template; its normalised correlation with the search map, softmaxed with a learned
    temperature, gives the expected peak position (x, y in [-1, 1]; (0, 0) = the box stayed put)
    and the peak's sharpness. A network regressing motion from pooled features has to learn this
    matching from scratch; given it, it starts from a template tracker.
    """

    def __init__(self, width: int, slope: float) -> None:
        super().__init__()
        self.tower = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.LeakyReLU(slope, inplace=True),
            nn.Conv2d(width, width, 3, 1, 1), nn.LeakyReLU(slope, inplace=True),
            nn.Conv2d(width, width, 3, 2, 1),
        )
        self.log_temperature = nn.Parameter(torch.tensor(math.log(100.0)))  # untrained features already peak

    def forward(self, x: Tensor) -> Tensor:
        ref, search = self.tower(x[:, :3]), self.tower(x[:, 4:7])
        centre = search.mean(dim=(-2, -1), keepdim=True)  # normalised cross-correlation: no flat response
        ref, search = ref - centre, search - centre
        b, c, h, w = ref.shape
        t0, t1, s0, s1 = h // 4, h - h // 4, w // 4, w - w // 4
        template = ref[:, :, t0:t1, s0:s1]
        template = template / template.flatten(1).norm(dim=1).clamp_min(1e-6).view(b, 1, 1, 1)
        th, tw = template.shape[-2:]
        resp = F.conv2d(search.reshape(1, b * c, h, w), template, padding=(th // 2, tw // 2), groups=b)
        # (h + 1) × (w + 1) positions for an even template: the middle one is "no motion", exactly
        resp = resp.view(b, 1, resp.shape[-2], resp.shape[-1])
        energy = F.avg_pool2d(search.pow(2).sum(1, keepdim=True), (th, tw), stride=1,
                              padding=(th // 2, tw // 2), count_include_pad=True)
        resp = resp / (energy * th * tw).sqrt().clamp_min(1e-6)  # cosine similarity per position
        logits = resp * self.log_temperature.exp()
        pos = spatial_soft_argmax(logits)
        sharp = torch.softmax(logits.flatten(1), dim=1).max(dim=1, keepdim=True).values
        return torch.cat([pos, sharp], dim=1)


def _stage(cin: int, cout: int, blocks: int, stride: int, cfg: ModelConfig) -> nn.Sequential:
    layers = [BasicBlock(cin, cout, stride, cfg.norm, cfg.leaky_slope)]
    layers += [BasicBlock(cout, cout, 1, cfg.norm, cfg.leaky_slope) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _conv_pair(cin: int, cout: int, cfg: ModelConfig) -> nn.Sequential:
    """Two 3×3 convolutions, each normalised and Leaky-ReLU'd (a U-Net stage)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1, bias=False), _norm(cfg.norm, cout),
        nn.LeakyReLU(cfg.leaky_slope, inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _norm(cfg.norm, cout),
        nn.LeakyReLU(cfg.leaky_slope, inplace=True),
    )


class ResNetBackbone(nn.Module):
    """ResNet-18 convolutional trunk (no fc), optionally with the βMVUnet extra stage.

    Returns the pooled feature and the U-Net skips: seven entries, by decoder stage — stem (H/2),
    layer1–4, extra (or None), full resolution (or None; ``stem: unet`` only).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w1, w2, w3, w4 = cfg.encoder_widths
        self.full: nn.Sequential | None = None
        if cfg.stem == "unet":
            self.full = _conv_pair(cfg.in_channels, w1, cfg)
            self.stem = nn.Sequential(nn.MaxPool2d(2), _conv_pair(w1, w1, cfg))
            self.pool = nn.MaxPool2d(2)
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(cfg.in_channels, w1, 7, 2, 3, bias=False),
                _norm(cfg.norm, w1),
                nn.LeakyReLU(cfg.leaky_slope, inplace=True),
            )
            self.pool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _stage(w1, w1, 2, 1, cfg)
        self.layer2 = _stage(w1, w2, 2, 2, cfg)
        self.layer3 = _stage(w2, w3, 2, 2, cfg)
        self.layer4 = _stage(w3, w4, 2, 2, cfg)
        self.extra = (
            _stage(w4, cfg.extra_channels, cfg.extra_blocks, 1, cfg) if cfg.extra_stage else None
        )
        # where things are (ours, for the motion posterior): pooling forgets position, soft-argmax keeps it
        self.keypoints = nn.Conv2d(w2, cfg.keypoints, 3, 1, 1) if cfg.keypoints else None
        self.matcher = TemplateMatcher(cfg.correlation, cfg.leaky_slope) if cfg.correlation else None
        self.skip_channels: list[int] = [w1, w1, w2, w3, w4, cfg.extra_channels if cfg.extra_stage else 0,
                                         w1 if self.full is not None else 0]
        self.feature_dim = cfg.feature_dim

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor | None]]:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(
                f"input height and width must be divisible by 32, got {tuple(x.shape[-2:])}"
            )
        full = self.full(x) if self.full is not None else None
        s0 = self.stem(x if full is None else full)
        s1 = self.layer1(self.pool(s0))
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        s4 = self.layer4(s3)
        bottom = self.extra(s4) if self.extra is not None else None
        skips: list[Tensor | None] = [s0, s1, s2, s3, s4, bottom, full]
        features = (s4 if bottom is None else bottom).mean(dim=(-2, -1))
        if self.keypoints is not None:
            features = torch.cat([features, spatial_soft_argmax(self.keypoints(s2))], dim=1)
        if self.matcher is not None:
            features = torch.cat([features, self.matcher(x)], dim=1)
        return features, skips


class BetaMVEncoder(nn.Module):
    """Encoder + bottleneck: patch → pooled feature → posterior N(μ′, Σ′) (and z when sampling).

    This is the part the RL environment keeps (frozen, see ``build_encoder``).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        prior_mean: PriorArray,
        prior_cov: PriorArray,
        prior_std: PriorArray | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNetBackbone(cfg)
        self.bottleneck = MultiVariationalBottleneck(
            feature_dim=cfg.feature_dim,
            num_parts=cfg.num_parts,
            part_size=cfg.part_size,
            kind=cfg.bottleneck,
            prior_mean=prior_mean,
            prior_cov=prior_cov,
            prior_std=prior_std,
            cov_eps=cfg.cov_eps,
            batch_cov_reduce=cfg.batch_cov_reduce,
            z_mean=cfg.z_mean,
            kl_direction=cfg.kl_direction,
            init_prior=cfg.head_init_prior,
        )
        self._frozen = False

    def run(
        self, x: Tensor, sample: bool, generator: torch.Generator | None = None
    ) -> tuple[dict[str, Tensor], list[Tensor | None]]:
        """Posterior dict (with ``features`` and ``z``) and the stage outputs for the decoder."""
        features, skips = self.backbone(x)
        out = self.bottleneck(features, sample=sample, generator=generator)
        out["features"] = features
        return out, skips

    def forward(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``mu`` (B×P), ``cov`` / ``scale_tril`` (B×P×P), ``features`` (B×F), ``z``, ``kl``."""
        out, _ = self.run(x, sample=sample, generator=generator)
        return out

    def freeze(self) -> BetaMVEncoder:
        """No gradients, eval mode, and stay in eval mode even when a parent calls ``.train()``.

        Why: an RL policy that wraps this module switches its children to train mode; BatchNorm
        statistics of the pretrained encoder must not drift with RL batches.
        """
        self.requires_grad_(False)
        self._frozen = True
        return self.train(False)

    def train(self, mode: bool = True) -> BetaMVEncoder:
        return super().train(False if self._frozen else mode)


class _UpStage(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int, blocks: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.blocks = _stage(cin + skip, cout, blocks, 1, cfg)

    def forward(self, x: Tensor, skip: Tensor | None, size: tuple[int, int]) -> Tensor:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.blocks(x)


class Decoder(nn.Module):
    """ResNet-18-style upsampling decoder from z (B × parts × K), with optional U-Net skips."""

    def __init__(self, cfg: ModelConfig, skip_channels: list[int] | None) -> None:
        super().__init__()
        d = cfg.decoder_width
        self.unet = skip_channels is not None
        self.bottom = cfg.patch_size // 32
        self.z_channels = cfg.z_channels
        self.z_proj = nn.Linear(cfg.latent_dim, cfg.z_channels * self.bottom * self.bottom)
        sk = skip_channels if skip_channels is not None else [0] * 7
        c = cfg.z_channels
        self.extra: nn.Sequential | None = None
        if cfg.extra_stage:
            self.extra = _stage(c + sk[5], 8 * d, cfg.extra_blocks, 1, cfg)
            c = 8 * d
        self.top = _stage(c + sk[4], 8 * d, 1, 1, cfg)
        plan = [(4 * d, sk[3], 2), (2 * d, sk[2], 2), (d, sk[1], 2), (d, sk[0], 1), (d, sk[6], 1)]
        ups = []
        c = 8 * d
        for cout, skip, blocks in plan:
            ups.append(_UpStage(c, skip, cout, blocks, cfg))
            c = cout
        self.ups = nn.ModuleList(ups)
        self.out_channels = c

    def forward(self, z: Tensor, skips: list[Tensor | None], out_size: tuple[int, int]) -> Tensor:
        """Feature map at the input's resolution (B × decoder_width × H × W)."""
        b = z.shape[0]
        h, w = out_size
        x = self.z_proj(z.reshape(b, -1)).view(b, self.z_channels, self.bottom, self.bottom)
        bottom = (h // 32, w // 32)
        if x.shape[-2:] != bottom:  # patch size other than the configured one: resample the z map
            x = F.interpolate(x, size=bottom, mode="bilinear", align_corners=False)
        if self.extra is not None:
            x = self.extra(torch.cat([x, skips[5]], 1) if self.unet else x)
        x = self.top(torch.cat([x, skips[4]], 1) if self.unet else x)
        sizes = [(h // 16, w // 16), (h // 8, w // 8), (h // 4, w // 4), (h // 2, w // 2), (h, w)]
        skip_maps = [skips[3], skips[2], skips[1], skips[0], skips[6]]
        for up, size, skip in zip(self.ups, sizes, skip_maps, strict=True):
            x = up(x, skip if self.unet else None, size)
        return x


class BetaMVNet(nn.Module):
    """Common body of βMVAE and βMVUnet; ``unet`` decides whether the decoder gets skips."""

    unet: bool = False

    def __init__(
        self,
        cfg: ModelConfig,
        prior_mean: PriorArray,
        prior_cov: PriorArray,
        prior_std: PriorArray | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = BetaMVEncoder(cfg, prior_mean, prior_cov, prior_std)
        self.decoder = Decoder(cfg, self.encoder.backbone.skip_channels if self.unet else None)
        self.outc = nn.Conv2d(self.decoder.out_channels, cfg.num_classes, 1)

    def encode(self, x: Tensor, sample: bool = False) -> dict[str, Tensor]:
        """Encoder-only pass: ``mu``, ``cov``, ``scale_tril``, ``features`` (and ``z``, ``kl``)."""
        return self.encoder(x, sample=sample)

    def forward(
        self, x: Tensor, sample: bool | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Full pass. ``sample=None`` samples in training mode and uses z = μ′ in eval mode.

        Returns ``logits`` (B×C×H×W), ``mu`` (B×P), ``cov`` and ``scale_tril`` (B×P×P), ``z``
        (B×P×K), ``features`` (B×F), ``kl`` (scalar KL of the posterior to the prior, in the
        configured direction), ``mu_q`` / ``scale_tril_q`` (the posterior the KL was taken of)
        and ``mu_neurons``.
        """
        if sample is None:
            sample = self.training
        out, skips = self.encoder.run(x, sample=sample, generator=generator)
        feat = self.decoder(out["z"], skips, (x.shape[-2], x.shape[-1]))
        out["logits"] = self.outc(feat)
        return out


class BetaMVAE(BetaMVNet):
    """βMVAE: the decoder reconstructs the mask from z alone (no skips)."""

    unet = False


class BetaMVUnet(BetaMVNet):
    """βMVUnet: U-Net skips from every encoder stage into the decoder, plus the extra stage."""

    unet = True


def build_model(
    cfg: ModelConfig,
    prior_mean: PriorArray,
    prior_cov: PriorArray,
    prior_std: PriorArray | None = None,
) -> BetaMVNet:
    """The network named by ``cfg.arch``; the prior (5-vector, 5×5, Table-1 stds) is buffered."""
    cls = BetaMVUnet if cfg.arch == "mvunet" else BetaMVAE
    return cls(cfg, prior_mean, prior_cov, prior_std)


def encoder_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The encoder's entries of a full-model state dict (prefix ``encoder.`` removed).

    A state dict that has no ``encoder.`` keys is taken to be an encoder's own and returned as is.
    """
    enc = {k[len("encoder.") :]: v for k, v in state_dict.items() if k.startswith("encoder.")}
    return enc if enc else dict(state_dict)


def build_encoder(cfg: ModelConfig, state_dict: Mapping[str, Tensor]) -> BetaMVEncoder:
    """Frozen, eval-mode encoder loaded from a full-model (or encoder-only) state dict.

    The prior comes from the checkpoint's buffers, so the encoder is judged against the prior it
    was trained with. Loading is strict: a config that does not match the checkpoint fails here.
    """
    sd = encoder_state_dict(state_dict)
    try:
        mean = sd["bottleneck.prior_mean"]
        cov = sd["bottleneck.prior_cov"]
        std = sd["bottleneck.prior_std"]
    except KeyError as exc:
        raise KeyError(
            f"state dict has no encoder prior buffer {exc}; is it a βMVAE/βMVUnet checkpoint?"
        ) from None
    enc = BetaMVEncoder(cfg, mean, cov, std)
    enc.load_state_dict(sd, strict=True)
    return enc.freeze()


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Parameters per part, as in the paper's Table 2: encoder, decoder, outc, mu_head, cov_head.

    ``decoder`` includes the linear projection of z to the first spatial map; ``cov_head``
    includes the Cholesky read-out when present. Also ``total`` and ``trainable``.
    """
    enc = module.encoder if isinstance(module, BetaMVNet) else module
    if not isinstance(enc, BetaMVEncoder):
        raise TypeError(
            f"count_parameters expects a βMVAE/βMVUnet or its encoder, got {type(module).__name__}"
        )
    bn = enc.bottleneck
    counts = {
        "encoder": _numel(enc.backbone),
        "mu_head": _numel(bn.mu_head),
        "cov_head": _numel(bn.cov_head) + _numel(bn.tril_head),
    }
    if isinstance(module, BetaMVNet):
        counts["decoder"] = _numel(module.decoder)
        counts["outc"] = _numel(module.outc)
    counts["total"] = _numel(module)
    counts["trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts
