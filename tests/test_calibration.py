"""Calibration metrics of Gaussian predictions: coverage of χ² ellipsoids, NLL, posterior against prior."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2, multivariate_normal

from bmvtrack.calibration import calibration, compare_to_prior, coverage, gaussian_nll, mahalanobis_sq, mse_skill

D = 5


def _random_spd(rng: np.random.Generator, n: int, d: int = D) -> np.ndarray:
    a = rng.normal(size=(n, d, d))
    return a @ np.swapaxes(a, 1, 2) / d + 0.1 * np.eye(d)


def _draw(rng: np.random.Generator, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """One sample of N(mean_i, cov_i) per row."""
    eps = rng.normal(size=mean.shape)
    return mean + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), eps)


def _tolerance(p: float, n: int) -> float:
    return 4.0 * np.sqrt(p * (1 - p) / n)  # 4 binomial standard deviations


def test_samples_of_the_gaussians_themselves_are_covered_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    n = 20000
    mean, cov = rng.normal(size=(n, D)), _random_spd(rng, n)
    x = _draw(rng, mean, cov)
    c = calibration(x, mean, cov)
    for p in (0.5, 0.9):
        assert abs(c.coverage[p] - p) < _tolerance(p, n), c
    assert abs(c.mean_d2 - D) < 4 * np.sqrt(2 * D / n)  # χ²(5): mean 5, variance 10
    # one global Gaussian, too
    g_mean, g_cov = rng.normal(size=D), _random_spd(rng, 1)[0]
    xg = rng.multivariate_normal(g_mean, g_cov, size=n)
    cg = calibration(xg, g_mean, g_cov, levels=(0.5, 0.9, 0.99))
    for p in (0.5, 0.9, 0.99):
        assert abs(cg.coverage[p] - p) < _tolerance(p, n), cg


def test_a_too_narrow_covariance_covers_less_and_costs_nll():
    rng = np.random.default_rng(1)
    n = 5000
    mean, cov = rng.normal(size=(n, D)), _random_spd(rng, n)
    x = _draw(rng, mean, cov)
    right, narrow, wide = calibration(x, mean, cov), calibration(x, mean, cov / 4), calibration(x, mean, cov * 4)
    for p in (0.5, 0.9):
        assert narrow.coverage[p] < right.coverage[p] - 0.2
        assert wide.coverage[p] > right.coverage[p]
    assert narrow.nll > right.nll + 1.0 and wide.nll > right.nll + 1.0  # the truth minimises expected NLL
    # Σ/4 doubles every distance: d² is 4× the calibrated one
    assert np.allclose(mahalanobis_sq(x, mean, cov / 4), 4 * mahalanobis_sq(x, mean, cov))


def test_nll_and_distance_equal_scipy():
    rng = np.random.default_rng(2)
    n = 40
    mean, cov = rng.normal(size=(n, D)), _random_spd(rng, n)
    x = rng.normal(size=(n, D)) * 2
    logpdf = np.array([multivariate_normal.logpdf(x[i], mean[i], cov[i]) for i in range(n)])
    assert np.allclose(gaussian_nll(x, mean, cov), -logpdf)
    assert calibration(x, mean, cov).nll == pytest.approx(-logpdf.mean(), rel=1e-10)
    d2 = np.array([(x[i] - mean[i]) @ np.linalg.solve(cov[i], x[i] - mean[i]) for i in range(n)])
    assert np.allclose(mahalanobis_sq(x, mean, cov), d2)
    # a global Gaussian, and a shared mean with per-sample covariances
    assert calibration(x, mean[0], cov[0]).nll == pytest.approx(-multivariate_normal.logpdf(x, mean[0], cov[0]).mean())
    shared = np.array([multivariate_normal.logpdf(x[i], mean[0], cov[i]) for i in range(n)])
    assert np.allclose(gaussian_nll(x, mean[0], cov), -shared)


def test_coverage_thresholds_are_chi2_quantiles():
    t50, t90 = chi2.ppf(0.5, D), chi2.ppf(0.9, D)
    d2 = np.array([t50 - 1e-9, t50 + 1e-9, t90 - 1e-9, t90 + 1e-9])
    assert coverage(d2, D) == {0.5: 0.25, 0.9: 0.75}


def test_posterior_against_the_global_prior():
    """x = μ_i + noise with μ_i ~ N(0, A): the posterior N(μ_i, Σ) and the marginal prior N(0, A + Σ)
    are both calibrated, and the posterior, knowing μ_i, has the lower NLL."""
    rng = np.random.default_rng(3)
    n = 20000
    a, s = _random_spd(rng, 2)
    mu = rng.multivariate_normal(np.zeros(D), a, size=n)
    x = mu + rng.multivariate_normal(np.zeros(D), s, size=n)
    cmp = compare_to_prior(x, mu, np.broadcast_to(s, (n, D, D)), np.zeros(D), a + s)
    for p in (0.5, 0.9):
        assert abs(cmp.posterior.coverage[p] - p) < _tolerance(p, n)
        assert abs(cmp.prior.coverage[p] - p) < _tolerance(p, n)
    expected_gain = 0.5 * (np.linalg.slogdet(a + s)[1] - np.linalg.slogdet(s)[1])  # same mean d² (= D) on both
    assert cmp.nll_gain == pytest.approx(expected_gain, abs=0.1) and cmp.nll_gain > 0.5
    d = cmp.to_dict()
    assert set(d) == {"posterior", "prior", "nll_gain", "mse", "prior_mse", "skill"}
    assert set(d["prior"]["coverage"]) == {"0.5", "0.9"}
    # knowing μ_i leaves the noise: per component, skill 1 − S_ii / (A_ii + S_ii)
    expected_skill = 1.0 - np.diag(s) / np.diag(a + s)
    np.testing.assert_allclose(cmp.skill, expected_skill, atol=0.03)
    # an over-confident posterior loses to the prior
    bad = compare_to_prior(x, mu, np.broadcast_to(s / 50, (n, D, D)), np.zeros(D), a + s)
    assert bad.nll_gain < 0 and bad.posterior.coverage[0.9] < 0.2


def test_mse_skill_is_zero_for_the_prior_mean_and_negative_for_noisy_means():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4000, D)) * np.arange(1, D + 1)
    prior_mean = np.zeros(D)
    mse, prior_mse, skill = mse_skill(x, np.broadcast_to(prior_mean, x.shape), prior_mean)
    np.testing.assert_allclose(skill, 0.0, atol=1e-12)
    np.testing.assert_allclose(prior_mse, np.arange(1, D + 1) ** 2, rtol=0.1)
    # means that know the first component exactly and add noise of the same size to the others
    means = x.copy()
    means[:, 1:] = rng.normal(size=(4000, D - 1)) * np.arange(2, D + 1)
    _, _, skill = mse_skill(x, means, prior_mean)
    assert skill[0] == pytest.approx(1.0) and np.all((skill[1:] > -1.2) & (skill[1:] < -0.8))
    # a component with no variance has no skill to report
    x[:, 2] = 0.0
    assert np.isnan(mse_skill(x, means, prior_mean)[2][2])
    with pytest.raises(ValueError, match="per-sample means"):
        mse_skill(x, x[:, :2], prior_mean)


def test_bad_input_is_refused():
    x, m, c = np.zeros((3, D)), np.zeros((3, D)), np.broadcast_to(np.eye(D), (3, D, D)).copy()
    c[1, 0, 0] = -1.0
    with pytest.raises(ValueError, match="sample 1 is not positive definite"):
        calibration(x, m, c)
    c = np.broadcast_to(np.eye(D), (3, D, D)).copy()
    c[2, 0, 1] = 0.5
    with pytest.raises(ValueError, match="sample 2 is not symmetric"):
        mahalanobis_sq(x, m, c)
    with pytest.raises(ValueError, match="mean must have shape"):
        gaussian_nll(x, np.zeros(4), np.eye(D))
    with pytest.raises(ValueError, match="cov must have shape"):
        gaussian_nll(x, m, np.eye(4))
    with pytest.raises(ValueError, match="non-finite"):
        gaussian_nll(np.full((3, D), np.nan), m, np.eye(D))
    with pytest.raises(ValueError, match="the prior is one Gaussian"):
        compare_to_prior(x, m, np.eye(D), m, np.eye(D))
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        coverage(np.ones(3), D, levels=(0.5, 1.0))
