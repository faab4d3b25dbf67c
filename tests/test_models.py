"""βMVAE / βMVUnet networks, the βMVAE loss, the frozen encoder, and the paper-scale configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bmvtrack.config import ConfigError, from_dict, load_config
from bmvtrack.models import (
    BetaMVAE,
    BetaMVEncoder,
    BetaMVUnet,
    ModelConfig,
    beta_mv_loss,
    build_encoder,
    build_model,
    class_weights_from_batch,
    construction_loss,
    count_parameters,
    loss_from_config,
    soft_jaccard,
)

from bmvtrack.motion import PAPER_COV as PRIOR_COV  # the paper's prior (appendix 2.2) and Table 1
from bmvtrack.motion import PAPER_MEAN as PRIOR_MEAN
from bmvtrack.motion import PAPER_TABLE1_STD as TABLE1_STD

CONFIGS = Path(__file__).resolve().parents[1] / "configs"



def tiny_cfg(**kw: object) -> ModelConfig:
    base: dict[str, object] = {
        "patch_size": 32,
        "base_width": 8,
        "decoder_width": 8,
        "z_channels": 8,
    }
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def tiny_model(**kw: object) -> torch.nn.Module:
    return build_model(tiny_cfg(**kw), PRIOR_MEAN, PRIOR_COV, TABLE1_STD)


# ------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("arch", ["mvae", "mvunet"])
@pytest.mark.parametrize("bottleneck", ["batch", "cholesky"])
@pytest.mark.parametrize("hw", [(32, 32), (64, 64), (32, 64)])
@pytest.mark.parametrize("stem", ["resnet", "unet"])
def test_logits_have_the_input_size(arch: str, bottleneck: str, hw: tuple[int, int], stem: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(arch=arch, bottleneck=bottleneck, stem=stem)
    assert isinstance(model, BetaMVUnet if arch == "mvunet" else BetaMVAE)
    x = torch.randn(3, 3, *hw)
    out = model(x, sample=True)
    assert out["logits"].shape == (3, 2, *hw)
    assert out["mu"].shape == (3, 5)
    assert out["cov"].shape == out["scale_tril"].shape == (3, 5, 5)
    assert out["z"].shape == (3, 5, 10)
    assert out["features"].shape == (3, model.cfg.feature_dim)
    assert out["kl"].dim() == 0 and torch.isfinite(out["kl"])
    assert torch.isfinite(out["logits"]).all()


def test_unet_stem_gives_the_decoder_a_full_resolution_skip_that_it_uses() -> None:
    torch.manual_seed(0)
    model = tiny_model(stem="unet")
    full: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        full.append(output)

    model.encoder.backbone.full.register_forward_hook(keep)
    x = torch.randn(2, 3, 64, 32)
    model(x)["logits"][:, 1].sum().backward()
    assert full[0].shape == (2, 8, 64, 32)  # base_width channels at the input's resolution
    assert full[0].grad is not None and full[0].grad.abs().sum() > 0
    # the ResNet stem has no such stage: its finest skip is at half resolution
    _, skips = tiny_model().encoder.backbone(x)
    assert skips[6] is None and skips[0].shape[-2:] == (32, 16)


def test_input_size_must_be_divisible_by_32() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.randn(2, 3, 48, 48))
    with pytest.raises(ConfigError):
        ModelConfig(patch_size=100)


def test_eval_is_deterministic_and_training_samples() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a["logits"], b["logits"])
    torch.testing.assert_close(a["z"], a["mu"][..., None].expand(4, 5, 10))
    with torch.no_grad():
        s1 = model(x, sample=True, generator=torch.Generator().manual_seed(1))
        s2 = model(x, sample=True, generator=torch.Generator().manual_seed(2))
        s1b = model(x, sample=True, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(s1["z"], s2["z"])
    torch.testing.assert_close(s1["z"], s1b["z"])


# -------------------------------------------------------------------------------------- losses
def test_class_weights_are_normalised_inverse_frequencies() -> None:
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[:, :2, :2] = 1  # a quarter object
    target[0, 3, 3] = 255  # ignored pixel does not count
    w = class_weights_from_batch(target, 2)
    freq = torch.tensor([23 / 31, 8 / 31])
    expected = (1 / freq) / (1 / freq).sum() * 2
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(
        class_weights_from_batch(torch.zeros(1, 4, 4, dtype=torch.long), 3),
        torch.tensor([1.0, 0, 0]),
    )


def test_unweighted_ce_option_is_plain_cross_entropy_and_weighs_the_minority_less() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :2, :2] = 1  # the object is the minority class
    logits = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = construction_loss(logits, target, class_weights="none")["ce"]
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(logits, target))
    miss_object = torch.stack([torch.full((1, 8, 8), 3.0), torch.zeros(1, 8, 8)], 1)  # all background
    assert (construction_loss(miss_object, target, class_weights="batch")["ce"]
            > construction_loss(miss_object, target, class_weights="none")["ce"])
    with pytest.raises(ValueError, match="class_weights"):
        construction_loss(logits, target, class_weights="median")


def test_construction_loss_components() -> None:
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    perfect = torch.stack([(target == 0).float(), (target == 1).float()], 1) * 40 - 20
    parts = construction_loss(perfect, target)
    assert parts["ce"].item() < 1e-6
    assert abs(parts["jaccard"].item() - 1.0) < 1e-6
    assert parts["cons"].item() < 1e-5
    wrong = -perfect
    bad = construction_loss(wrong, target)
    assert bad["jaccard"].item() < 0.1 and bad["ce"].item() > 10
    # float masks of shape B×1×H×W are accepted; soft Jaccard of 66 classes uses 1 − P(background)
    torch.testing.assert_close(soft_jaccard(perfect, target[:, None].float()), parts["jaccard"])
    out = {"logits": wrong, "kl": torch.tensor(0.3)}
    total = beta_mv_loss(out, target, beta=5.0)
    torch.testing.assert_close(total["total"], bad["cons"] + 1.5)
    assert set(total) >= {"total", "cons", "ce", "jaccard", "kl"}


def test_bce_dice_mask_loss_is_the_textbook_unets_and_leaves_ignored_pixels_out() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:6, 1:5] = 1
    logits = torch.randn(2, 2, 8, 8, generator=g)
    parts = construction_loss(logits, target, class_weights="none", mask_loss="bce_dice")
    margin, t = logits[:, 1] - logits[:, 0], target.float()
    p = torch.sigmoid(margin)
    dice = (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(margin, t)
    torch.testing.assert_close(parts["cons"], bce + 1 - dice.mean())
    torch.testing.assert_close(parts["jaccard"], soft_jaccard(logits, target))
    perfect = torch.stack([(target == 0).float(), (target == 1).float()], 1) * 40 - 20
    assert construction_loss(perfect, target, class_weights="none", mask_loss="bce_dice")["cons"] < 1e-5
    # an ignored pixel (255) changes nothing, however wrong the logits are there
    ignored = target.clone()
    ignored[:, 0, 0] = 255
    wild = logits.clone()
    wild[:, :, 0, 0] = torch.tensor([-50.0, 50.0])
    a = construction_loss(logits, ignored, class_weights="none", mask_loss="bce_dice")["cons"]
    b = construction_loss(wild, ignored, class_weights="none", mask_loss="bce_dice")["cons"]
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="bce_dice.*class_weights='none'"):
        construction_loss(logits, target, class_weights="batch", mask_loss="bce_dice")
    with pytest.raises(ConfigError, match="bce_dice"):
        ModelConfig(mask_loss="bce_dice")
    cfg = ModelConfig(mask_loss="bce_dice", class_weights="none", beta=0.0)
    out = {"logits": logits, "kl": torch.tensor(0.0)}
    torch.testing.assert_close(loss_from_config(out, target, cfg)["total"], parts["cons"])


# ---------------------------------------------------------------------------- tiny training task
def disk_batch(
    gen: torch.Generator, n: int = 8, size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright disk at a random place and radius on noise; target = the disk."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    cx = torch.randint(8, size - 8, (n, 1, 1), generator=gen).float()
    cy = torch.randint(8, size - 8, (n, 1, 1), generator=gen).float()
    r = torch.randint(4, 8, (n, 1, 1), generator=gen).float()
    mask = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r**2).long()
    img = 0.3 * torch.randn(n, 3, size, size, generator=gen) + mask[:, None].float()
    return img, mask


@pytest.mark.parametrize("arch,bottleneck,stem", [("mvunet", "cholesky", "resnet"), ("mvunet", "batch", "resnet"),
                                                  ("mvunet", "cholesky", "unet")])
def test_a_few_steps_on_a_synthetic_task_reduce_the_loss(arch: str, bottleneck: str, stem: str) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = tiny_model(arch=arch, bottleneck=bottleneck, batch_cov_reduce="rms", stem=stem)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x_val, y_val = disk_batch(torch.Generator().manual_seed(99))

    def val_metrics() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            parts = construction_loss(model(x_val)["logits"], y_val)
        model.train()
        return parts["cons"].item(), parts["jaccard"].item()

    cons_before, jac_before = val_metrics()
    for _ in range(60):
        x, y = disk_batch(gen)
        loss = beta_mv_loss(model(x), y, beta=model.cfg.beta)
        opt.zero_grad()
        loss["total"].backward()
        opt.step()
    cons_after, jac_after = val_metrics()
    # measured over seeds 0-2: cons 1.6 → 0.25-0.71, soft Jaccard 0.09 → 0.39-0.78
    assert cons_after < 0.5 * cons_before, (cons_before, cons_after)
    assert jac_after > 0.3 > jac_before, (jac_before, jac_after)
    assert torch.isfinite(loss["kl"])


# ------------------------------------------------------------------------------ frozen encoder
@pytest.mark.parametrize("bottleneck", ["batch", "cholesky"])
def test_encoder_loads_alone_from_the_full_state_dict_and_is_frozen(bottleneck: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_cfg(bottleneck=bottleneck)
    model = build_model(cfg, PRIOR_MEAN, PRIOR_COV, TABLE1_STD)
    # a training step so that weights and BatchNorm statistics differ from a fresh build
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = disk_batch(torch.Generator().manual_seed(1), n=4)
    beta_mv_loss(model(x), y)["total"].backward()
    opt.step()
    model.eval()
    # the prior travels in the state dict: an encoder built from it needs no prior arguments
    state = {k: v.clone() for k, v in model.state_dict().items()}
    enc = build_encoder(cfg, state)
    assert isinstance(enc, BetaMVEncoder)
    assert not enc.training
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()  # a parent switching to train mode must not unfreeze BatchNorm
    assert not enc.training and all(not m.training for m in enc.modules())
    with torch.no_grad():
        ref = model.encode(x)
        got = enc(x)
    for key in ("mu", "cov", "scale_tril", "features"):
        torch.testing.assert_close(got[key], ref[key])
    counts = count_parameters(enc)
    assert (
        counts["trainable"] == 0
        and counts["total"] == counts["encoder"] + counts["mu_head"] + counts["cov_head"]
    )
    with pytest.raises(RuntimeError):  # a config that does not match the checkpoint fails loudly
        build_encoder(tiny_cfg(bottleneck=bottleneck, base_width=16), state)


# ------------------------------------------------------------------------- configs and sizes
def test_yaml_configs_load_strictly() -> None:
    for name in ("model_small.yaml", "model_paper_mvae.yaml", "model_paper_mvunet.yaml"):
        cfg = load_config(ModelConfig, CONFIGS / name)
        assert cfg.num_parts == 5
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(ModelConfig, {"base_widht": 8})
    with pytest.raises(ConfigError):
        from_dict(ModelConfig, {"bottleneck": "diagonal"})


def _count(cfg: ModelConfig) -> dict[str, int]:
    with torch.device("meta"):  # no memory, no init cost: only shapes are needed to count
        model = build_model(cfg, PRIOR_MEAN, PRIOR_COV, TABLE1_STD)
    return count_parameters(model)


def test_small_config_is_a_few_million_parameters() -> None:
    counts = _count(load_config(ModelConfig, CONFIGS / "model_small.yaml"))
    assert 1e6 <= counts["total"] <= 3e6
    assert counts["total"] == sum(
        counts[k] for k in ("encoder", "decoder", "outc", "mu_head", "cov_head")
    )


def test_paper_mvae_matches_table2() -> None:
    cfg = load_config(ModelConfig, CONFIGS / "model_paper_mvae.yaml")
    c = _count(cfg)
    assert cfg.arch == "mvae" and cfg.patch_size == 256 and cfg.num_classes == 66
    assert c["encoder"] == pytest.approx(11.2e6, rel=0.01)
    assert c["decoder"] == pytest.approx(8.6e6, rel=0.01)
    assert c["mu_head"] == pytest.approx(128e3, rel=0.01)
    assert c["cov_head"] == pytest.approx(128e3, rel=0.01)
    assert c["total"] == pytest.approx(20e6, rel=0.02)


def test_paper_mvunet_matches_table2_scale() -> None:
    cfg = load_config(ModelConfig, CONFIGS / "model_paper_mvunet.yaml")
    c = _count(cfg)
    assert cfg.arch == "mvunet" and cfg.extra_stage and cfg.patch_size == 256
    assert c["encoder"] == pytest.approx(286.84e6, rel=0.01)
    assert c["decoder"] == pytest.approx(28.05e6, rel=0.01)
    # documented mismatch: the 2816-wide pooled feature makes the heads 704 K, not 256 K
    assert c["mu_head"] == 2816 * 250 + 250


@pytest.mark.slow
def test_paper_mvae_forward_at_256() -> None:
    """A real (not meta) paper-scale βMVAE runs at 256×256."""
    cfg = load_config(ModelConfig, CONFIGS / "model_paper_mvae.yaml")
    model = build_model(cfg, PRIOR_MEAN, PRIOR_COV, TABLE1_STD).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 256, 256))
    assert out["logits"].shape == (2, 66, 256, 256)
