"""The multivariational bottleneck: closed-form KL, the paper's batch Σ′, eq. 6, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from bmvtrack.models.bottleneck import (
    MultiVariationalBottleneck,
    batch_population_cov,
    gaussian_kl,
    prepare_prior,
)

from bmvtrack.motion import PAPER_COV as PRIOR_COV  # the paper's prior (appendix 2.2) and Table 1
from bmvtrack.motion import PAPER_MEAN as PRIOR_MEAN
from bmvtrack.motion import PAPER_TABLE1_STD as TABLE1_STD



def random_spd(gen: torch.Generator, *batch: int, d: int = 5) -> torch.Tensor:
    a = torch.randn(*batch, d, d, generator=gen, dtype=torch.float64)
    return a @ a.transpose(-2, -1) + 0.1 * torch.eye(d, dtype=torch.float64)


def make_bottleneck(kind: str, feature_dim: int = 16, **kw: object) -> MultiVariationalBottleneck:
    return MultiVariationalBottleneck(
        feature_dim,
        5,
        10,
        kind,
        PRIOR_MEAN,
        PRIOR_COV,
        TABLE1_STD,
        **kw,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------- KL
def test_kl_is_zero_when_posterior_equals_prior() -> None:
    mu = torch.as_tensor(PRIOR_MEAN)
    cov = torch.as_tensor(PRIOR_COV)
    assert gaussian_kl(mu, cov, mu, cov).abs().item() < 1e-10
    batched = gaussian_kl(mu.expand(4, 5), cov.expand(4, 5, 5), mu, cov)
    assert batched.shape == (4,)
    assert batched.abs().max().item() < 1e-10
    chol = torch.linalg.cholesky(cov)
    assert (
        gaussian_kl(mu, None, mu, None, scale_tril_q=chol, scale_tril_p=chol).abs().item() < 1e-10
    )


def test_kl_matches_torch_distributions_on_random_spd() -> None:
    gen = torch.Generator().manual_seed(1)
    mu_q = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    mu_p = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    cov_q = random_spd(gen, 7)
    cov_p = random_spd(gen, 7)
    ours = gaussian_kl(mu_q, cov_q, mu_p, cov_p)
    ref = kl_divergence(MultivariateNormal(mu_q, cov_q), MultivariateNormal(mu_p, cov_p))
    assert ours.shape == (7,)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
    assert (ours > 0).all()
    # scale_tril form and broadcasting of one prior against a batch of posteriors
    lq = torch.linalg.cholesky(cov_q)
    one_p = gaussian_kl(mu_q, None, mu_p[0], cov_p[0], scale_tril_q=lq)
    ref_one = kl_divergence(
        MultivariateNormal(mu_q, scale_tril=lq), MultivariateNormal(mu_p[0], cov_p[0])
    )
    torch.testing.assert_close(one_p, ref_one, rtol=1e-9, atol=1e-9)


def test_kl_needs_exactly_one_covariance_form() -> None:
    mu = torch.zeros(5)
    eye = torch.eye(5)
    with pytest.raises(ValueError):
        gaussian_kl(mu, None, mu, eye)
    with pytest.raises(ValueError):
        gaussian_kl(mu, eye, mu, eye, scale_tril_q=eye)


def test_prior_must_be_positive_definite() -> None:
    bad = PRIOR_COV.copy()
    bad[0, 0] = -1.0
    with pytest.raises(ValueError, match="positive definite"):
        prepare_prior(PRIOR_MEAN, bad)
    _, _, std, _ = prepare_prior(PRIOR_MEAN, PRIOR_COV)
    np.testing.assert_allclose(std, np.sqrt(np.diag(PRIOR_COV)))


# ---------------------------------------------------------------- the paper's batch covariance
def test_batch_covariance_is_the_covariance_of_the_batch_norms() -> None:
    gen = torch.Generator().manual_seed(2)
    s = torch.randn(6, 5, 10, generator=gen, dtype=torch.float64)
    cov, chol = batch_population_cov(s, eps=1e-4)
    norms = np.linalg.norm(s.numpy(), axis=0)  # 5 × 10: five variables, ten observations
    expected = np.cov(norms) + 1e-4 * np.eye(5)
    np.testing.assert_allclose(cov.numpy(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(chol @ chol.T, cov)
    rms, _ = batch_population_cov(s, eps=1e-4, reduce="rms")
    np.testing.assert_allclose(
        rms.numpy(), np.cov(norms / np.sqrt(6)) + 1e-4 * np.eye(5), rtol=1e-10
    )


@pytest.mark.parametrize(
    "case", ["batch_of_one", "identical_samples", "constant_head", "rank_deficient"]
)
def test_batch_covariance_is_symmetric_pd_and_finite(case: str) -> None:
    gen = torch.Generator().manual_seed(3)
    if case == "batch_of_one":
        s = torch.randn(1, 5, 10, generator=gen)
    elif case == "identical_samples":
        s = torch.randn(1, 5, 10, generator=gen).expand(8, 5, 10)
    elif case == "constant_head":
        s = torch.zeros(4, 5, 10)
    else:  # all five variables the same: covariance of rank 1
        s = torch.randn(4, 1, 10, generator=gen).expand(4, 5, 10)
    cov, chol = batch_population_cov(s, eps=1e-4)
    assert torch.isfinite(cov).all() and torch.isfinite(chol).all()
    torch.testing.assert_close(cov, cov.T)
    assert torch.linalg.eigvalsh(cov).min().item() > 0
    torch.testing.assert_close(chol @ chol.T, cov)


def test_batch_bottleneck_works_for_batch_of_one() -> None:
    bn = make_bottleneck("batch")
    out = bn(torch.randn(1, 16), sample=True)
    assert out["z"].shape == (1, 5, 10)
    assert torch.isfinite(out["kl"]) and torch.isfinite(out["z"]).all()


# ------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("kind", ["batch", "cholesky"])
def test_gradients_reach_the_covariance_head(kind: str) -> None:
    """Fails if Σ′ were computed outside autograd (numpy, .detach(), no_grad)."""
    torch.manual_seed(0)
    bn = make_bottleneck(kind)
    feats = torch.randn(6, 16)
    out = bn(feats, sample=True)
    out["kl"].backward()
    grad = bn.cov_head.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum().item() > 0
    # the covariance also reaches the decoder's input: z depends on Σ′ through eq. 6
    bn.zero_grad()
    out = bn(feats, sample=True)
    out["z"].pow(2).sum().backward()
    assert bn.cov_head.weight.grad is not None and bn.cov_head.weight.grad.abs().sum().item() > 0


# ------------------------------------------------------------------------- eq. 6 reparameterisation
def test_eq6_is_the_papers_linear_map_of_prior_draws() -> None:
    torch.manual_seed(0)
    bn = make_bottleneck("batch")
    post = bn.posterior(torch.randn(4, 16))
    eps = bn.draw_prior(4, generator=torch.Generator().manual_seed(5))
    z = bn.reparameterise(post, eps)
    sigma_q = torch.sqrt(torch.diagonal(post["cov"][0]))
    sigma_p = torch.as_tensor(TABLE1_STD, dtype=torch.float32)
    mu_p = torch.as_tensor(PRIOR_MEAN, dtype=torch.float32)
    for i in range(5):
        a = sigma_q[i] / sigma_p[i]
        b = post["mu"][:, i] - mu_p[i] * a
        torch.testing.assert_close(z[:, i, :], a * eps[:, i, :] + b[:, None])


@pytest.mark.parametrize("kind", ["batch", "cholesky"])
def test_eq6_samples_have_posterior_mean_and_std(kind: str) -> None:
    torch.manual_seed(0)
    bn = make_bottleneck(kind)
    with torch.no_grad():
        post = bn.posterior(torch.randn(3, 16))
        gen = torch.Generator().manual_seed(6)
        draws = torch.stack(
            [bn.reparameterise(post, bn.draw_prior(3, generator=gen)) for _ in range(800)]
        )
    # draws: N × B × P × K; each of the K columns is a draw of the 5 variables
    samples = draws.permute(1, 0, 3, 2).reshape(3, -1, 5)  # B × (N·K) × P
    mean = samples.mean(dim=1)
    std = samples.std(dim=1)
    sigma = torch.sqrt(torch.diagonal(post["cov"], dim1=-2, dim2=-1))
    n = samples.shape[1]
    assert (mean - post["mu"]).abs().max().item() < 5 * sigma.max().item() / np.sqrt(n)
    torch.testing.assert_close(std, sigma, rtol=0.03, atol=1e-4)
    if kind == "cholesky":  # the correlations of Σ′ are carried into z as well
        emp_cov = torch.stack([torch.cov(samples[b].T) for b in range(3)])
        torch.testing.assert_close(emp_cov, post["cov"], rtol=0.1, atol=0.02)
    # deterministic pass: ε = prior mean gives z = μ′ exactly
    with torch.no_grad():
        out = bn(torch.randn(3, 16), sample=False)
    torch.testing.assert_close(out["z"], out["mu"][..., None].expand(3, 5, 10))


def test_neuron_offset_keeps_the_part_mean() -> None:
    torch.manual_seed(0)
    bn = make_bottleneck("cholesky", z_mean="neuron")
    with torch.no_grad():
        out = bn(torch.randn(2, 16), sample=False)
    torch.testing.assert_close(out["z"], out["mu_neurons"])
    torch.testing.assert_close(out["z"].mean(-1), out["mu"])


def test_cholesky_head_starts_near_the_prior() -> None:
    torch.manual_seed(0)
    bn = make_bottleneck("cholesky")
    with torch.no_grad():
        out = bn(torch.zeros(2, 16), sample=False)
    l = out["scale_tril"]
    assert torch.equal(l, torch.tril(l))
    assert (torch.diagonal(l, dim1=-2, dim2=-1) > 0).all()
    torch.testing.assert_close(
        out["cov"][0], torch.as_tensor(PRIOR_COV, dtype=torch.float32), atol=1e-4, rtol=1e-3
    )
    assert out["kl"].item() < 1e-3


def test_kl_direction_option() -> None:
    torch.manual_seed(0)
    feats = torch.randn(4, 16)
    q_p = make_bottleneck("cholesky")
    p_q = make_bottleneck("cholesky", kl_direction="p_q")
    p_q.load_state_dict(q_p.state_dict())
    a, b = q_p.posterior(feats), p_q.posterior(feats)
    prior_l = torch.linalg.cholesky(torch.as_tensor(PRIOR_COV, dtype=torch.float32))
    mu_p = torch.as_tensor(PRIOR_MEAN, dtype=torch.float32)
    expected = gaussian_kl(
        mu_p, None, a["mu"], None, scale_tril_q=prior_l, scale_tril_p=a["scale_tril"]
    ).mean()
    torch.testing.assert_close(b["kl"], expected)
    assert not torch.allclose(a["kl"], b["kl"])


def test_initial_kl_is_small_against_a_correlated_prior():
    """head_init_prior: the first posterior sits near the prior, so β·KL does not swamp early training."""
    from bmvtrack.models import ModelConfig, build_model
    from bmvtrack.motion import MotionPrior

    cov = np.array([[0.01264, 0.00148, 0.00129, -0.00402, -0.00317],  # DAVIS dev-train (README)
                    [0.00148, 0.01298, -0.00045, -0.00082, -0.00737],
                    [0.00129, -0.00045, 0.01994, 0.00673, -0.01766],
                    [-0.00402, -0.00082, 0.00673, 0.00558, -0.00430],
                    [-0.00317, -0.00737, -0.01766, -0.00430, 0.02542]])
    prior = MotionPrior(np.array([1.0078, 1.0065, 0.0150, 0.0086, -0.0117]), cov)
    torch.manual_seed(0)
    model = build_model(ModelConfig(patch_size=32, base_width=8, decoder_width=8, z_channels=8),
                        prior.mean, prior.cov, prior.sample_std)
    with torch.no_grad():
        kl = float(model(torch.randn(4, 3, 32, 32), sample=True)["kl"])
    assert kl < 5.0
