"""Calibration of Gaussian predictions of a d-dimensional value (e.g. the 5-D motion G_t).

For Gaussians N(μ_i, Σ_i) — one per sample, or one shared by all (a global prior) — and the true
values x_i:

- ``mahalanobis_sq``: d²_i = (x_i − μ_i)ᵀ Σ_i⁻¹ (x_i − μ_i). If x_i ~ N(μ_i, Σ_i), d²_i ~ χ²(d).
- ``coverage``: the fraction of x_i inside the p-ellipsoid {d² ≤ χ²_d⁻¹(p)}, for each p in
  ``levels`` (default 50 % and 90 %). A calibrated prediction covers p; an over-confident one
  (Σ too narrow) covers less, an under-confident one more.
- ``gaussian_nll``: the negative log-density −log N(x_i; μ_i, Σ_i) in nats (full multivariate
  normal: ½(d² + log det Σ + d log 2π)), per sample; ``calibration`` reports its mean.
- ``compare_to_prior``: the same figures for a per-sample posterior and for the global prior on
  the same x, and the posterior's gain (prior NLL − posterior NLL: positive when the posterior
  predicts the truth better).
- ``mse_skill``: per component, the mean squared error of the posterior means and of the prior's one
  mean, and the skill score 1 − MSE(μ_i) / MSE(μ) of forecast verification: 1 for exact means, 0 for
  means no better than the prior's, negative where the per-sample means are worse than ignoring the
  input. The NLL mixes every component and the covariance; this says which component a posterior
  actually predicts.

Shapes: ``x`` (n, d); ``mean`` (n, d) or (d,); ``cov`` (n, d, d) or (d, d). Every covariance must be
symmetric positive definite (checked by its Cholesky factor; a failure names the sample). Pure
numpy/scipy: this module imports nothing of the project.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import chi2

LEVELS = (0.5, 0.9)


def _arrays(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` (n, d), ``mean`` (n, d) or (d,), ``cov`` (n, d, d) or (d, d) as float64, shapes checked."""
    x = np.asarray(x, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (n, d) with n >= 1, got {x.shape}")
    n, d = x.shape
    if mean.shape not in ((d,), (n, d)):
        raise ValueError(f"mean must have shape ({d},) or ({n}, {d}) for x of shape {x.shape}, got {mean.shape}")
    if cov.shape not in ((d, d), (n, d, d)):
        raise ValueError(f"cov must have shape ({d}, {d}) or ({n}, {d}, {d}) for x of shape {x.shape}, got {cov.shape}")
    for name, a in (("x", x), ("mean", mean), ("cov", cov)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} holds non-finite values")
    return x, mean, cov


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a (d, d) or (n, d, d) covariance; ValueError naming the sample when not SPD."""
    asym = ~np.isclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-6, atol=1e-12).all(axis=(-1, -2))
    if np.any(asym):  # Cholesky would read the lower triangle alone and hide it
        where = f" of sample {int(np.flatnonzero(asym)[0])}" if cov.ndim == 3 else ""
        raise ValueError(f"covariance{where} is not symmetric")
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        if cov.ndim == 3:
            for i, c in enumerate(cov):
                try:
                    np.linalg.cholesky(c)
                except np.linalg.LinAlgError:
                    raise ValueError(f"covariance of sample {i} is not positive definite") from None
        raise ValueError("covariance is not positive definite") from None


def _whitened(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L⁻¹(x − μ) per sample (n, d), and log det Σ per sample (n,) or shared (scalar array)."""
    chol = _cholesky(cov)
    r = x - mean
    z = np.linalg.solve(chol, r.T).T if chol.ndim == 2 else np.linalg.solve(chol, r[..., None])[..., 0]
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    return z, logdet


def mahalanobis_sq(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each x_i from N(μ_i, Σ_i): shape (n,)."""
    z, _ = _whitened(*_arrays(x, mean, cov))
    return np.einsum("nd,nd->n", z, z)


def gaussian_nll(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """−log N(x_i; μ_i, Σ_i) in nats, per sample: shape (n,)."""
    x, mean, cov = _arrays(x, mean, cov)
    z, logdet = _whitened(x, mean, cov)
    d = x.shape[1]
    return 0.5 * (np.einsum("nd,nd->n", z, z) + logdet + d * math.log(2.0 * math.pi))


def coverage(d2: np.ndarray, dim: int, levels: Sequence[float] = LEVELS) -> dict[float, float]:
    """Fraction of the squared distances ``d2`` inside each p-ellipsoid (d² ≤ χ²_dim⁻¹(p))."""
    d2 = np.asarray(d2, dtype=np.float64).reshape(-1)
    if d2.size == 0:
        raise ValueError("coverage of no samples")
    out = {}
    for p in levels:
        if not 0.0 < p < 1.0:
            raise ValueError(f"coverage level must be in (0, 1), got {p}")
        out[float(p)] = float(np.mean(d2 <= chi2.ppf(p, dim)))
    return out


@dataclass(frozen=True)
class Calibration:
    """Calibration figures of Gaussian predictions on n true values of dimension d."""

    n: int
    dim: int
    coverage: dict[float, float]  # level p -> fraction of true values inside the p-ellipsoid
    nll: float  # mean −log-density (nats)
    mean_d2: float  # mean squared Mahalanobis distance (d when calibrated)

    def to_dict(self) -> dict:
        return {"n": self.n, "dim": self.dim, "nll": self.nll, "mean_d2": self.mean_d2,
                "coverage": {f"{p:g}": c for p, c in self.coverage.items()}}


def calibration(x: np.ndarray, mean: np.ndarray, cov: np.ndarray, levels: Sequence[float] = LEVELS) -> Calibration:
    """Coverage at ``levels``, mean NLL and mean d² of N(μ_i, Σ_i) (or one shared N(μ, Σ)) on ``x``."""
    x, mean, cov = _arrays(x, mean, cov)
    z, logdet = _whitened(x, mean, cov)
    n, d = x.shape
    d2 = np.einsum("nd,nd->n", z, z)
    nll = 0.5 * (d2 + logdet + d * math.log(2.0 * math.pi))
    return Calibration(n=n, dim=d, coverage=coverage(d2, d, levels), nll=float(nll.mean()), mean_d2=float(d2.mean()))


def mse_skill(x: np.ndarray, post_mean: np.ndarray, prior_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per component (d,): MSE of the per-sample means, MSE of the prior mean, skill 1 − their ratio
    (NaN for a component the prior mean predicts exactly)."""
    x = np.asarray(x, dtype=np.float64)
    post_mean = np.asarray(post_mean, dtype=np.float64)
    prior_mean = np.asarray(prior_mean, dtype=np.float64)
    if x.ndim != 2 or post_mean.shape != x.shape or prior_mean.shape != (x.shape[1],):
        raise ValueError(f"mse_skill needs x (n, d), per-sample means (n, d) and one prior mean (d,); got "
                         f"{x.shape}, {post_mean.shape}, {prior_mean.shape}")
    mse = np.mean((x - post_mean) ** 2, axis=0)
    prior_mse = np.mean((x - prior_mean) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        skill = np.where(prior_mse > 0, 1.0 - mse / np.where(prior_mse > 0, prior_mse, 1.0), np.nan)
    return mse, prior_mse, skill


@dataclass(frozen=True)
class PriorComparison:
    """A per-sample posterior and the global prior, on the same true values; with per-sample means
    also the per-component MSE of both means (``mse_skill``)."""

    posterior: Calibration
    prior: Calibration
    mse: tuple[float, ...] = ()  # per component, of the posterior means
    prior_mse: tuple[float, ...] = ()  # per component, of the prior mean
    skill: tuple[float, ...] = ()  # per component, 1 − mse / prior_mse (NaN where prior_mse is 0)

    @property
    def nll_gain(self) -> float:
        """Prior NLL − posterior NLL (nats per sample): > 0 when the posterior predicts the truth better."""
        return self.prior.nll - self.posterior.nll

    def to_dict(self) -> dict:
        return {"posterior": self.posterior.to_dict(), "prior": self.prior.to_dict(), "nll_gain": self.nll_gain,
                "mse": list(self.mse), "prior_mse": list(self.prior_mse), "skill": list(self.skill)}


def compare_to_prior(x: np.ndarray, post_mean: np.ndarray, post_cov: np.ndarray, prior_mean: np.ndarray,
                     prior_cov: np.ndarray, levels: Sequence[float] = LEVELS) -> PriorComparison:
    """``calibration`` of the posterior N(μ_i, Σ_i) and of the prior N(μ, Σ) on the same ``x``, and
    ``mse_skill`` of the posterior means when they are per sample."""
    x = np.asarray(x, dtype=np.float64)
    prior_mean = np.asarray(prior_mean, dtype=np.float64)
    prior_cov = np.asarray(prior_cov, dtype=np.float64)
    if x.ndim == 2 and (prior_mean.shape != (x.shape[1],) or prior_cov.shape != (x.shape[1],) * 2):
        raise ValueError(f"the prior is one Gaussian: mean ({x.shape[1]},), cov ({x.shape[1]}, {x.shape[1]}); "
                         f"got {prior_mean.shape}, {prior_cov.shape}")
    post = calibration(x, post_mean, post_cov, levels)
    prior = calibration(x, prior_mean, prior_cov, levels)
    if np.ndim(post_mean) != 2:
        return PriorComparison(post, prior)
    mse, prior_mse, skill = mse_skill(x, post_mean, prior_mean)
    return PriorComparison(post, prior, *(tuple(map(float, a)) for a in (mse, prior_mse, skill)))
