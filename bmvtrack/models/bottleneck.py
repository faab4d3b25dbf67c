"""The multivariational bottleneck: posterior heads, eq. 6 reparameterisation, closed-form KL.

Two ways to get the posterior N(μ′, Σ′) over the five motion variables from the pooled encoder
feature, selected by ``ModelConfig.bottleneck``:

- ``"batch"`` (the paper, §4.2): μ′ and Σ′ heads of ``num_parts × K`` neurons each. μ′ of a sample
  is the mean of each part. Σ′ is a property of the *batch*: the L2 norm of every Σ′ neuron over
  the batch gives five variables observed K times, and their 5×5 covariance is Σ′ (symmetric PSD
  by construction, +εI so it is positive definite). The KL is taken between the batch posterior
  N(mean over batch of μ′, Σ′) and the prior.
- ``"cholesky"`` (ours): the Σ′ head's ``num_parts × K`` neurons are read out linearly into a
  lower-triangular L per sample (diagonal through softplus + √ε, strictly-lower entries free), so
  each patch has its own full-covariance posterior N(μ′, LLᵀ) — what the RL state needs.

Everything is torch, so gradients reach both heads (the paper's Σ′ has to be differentiable to be
trained by the KL term at all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

PriorArray = np.ndarray | Tensor | Sequence[float] | Sequence[Sequence[float]]
"""A prior statistic: numpy, torch or nested lists (e.g. ``MotionPrior.mean``, ``.cov``)."""


def gaussian_kl(
    mu_q: Tensor,
    cov_q: Tensor | None,
    mu_p: Tensor,
    cov_p: Tensor | None,
    *,
    scale_tril_q: Tensor | None = None,
    scale_tril_p: Tensor | None = None,
) -> Tensor:
    """KL(N(mu_q, Σ_q) ‖ N(mu_p, Σ_p)) in closed form, batched over leading dimensions.

    Why Cholesky solves instead of an inverse: Σ′ can be badly conditioned early in training, and
    triangular solves are both stabler and cheaper. Give each covariance either as ``cov_*`` (SPD,
    factorised here) or as its lower Cholesky factor ``scale_tril_*``. Leading (batch) dimensions
    broadcast. Returns a tensor of the broadcast batch shape (a 0-d tensor for single Gaussians).
    """
    lq = _tril_from(cov_q, scale_tril_q, "q")
    lp = _tril_from(cov_p, scale_tril_p, "p")
    d = mu_q.shape[-1]
    batch = torch.broadcast_shapes(mu_q.shape[:-1], mu_p.shape[:-1], lq.shape[:-2], lp.shape[:-2])
    lp_b = lp.expand(*batch, d, d)
    lq_b = lq.expand(*batch, d, d)
    # tr(Σp⁻¹ Σq) = ‖Lp⁻¹ Lq‖_F²
    m = torch.linalg.solve_triangular(lp_b, lq_b, upper=False)
    trace = m.pow(2).sum(dim=(-2, -1))
    diff = (mu_p - mu_q).expand(*batch, d).unsqueeze(-1)
    y = torch.linalg.solve_triangular(lp_b, diff, upper=False)
    maha = y.pow(2).sum(dim=(-2, -1))
    logdet_p = 2.0 * torch.log(torch.diagonal(lp_b, dim1=-2, dim2=-1)).sum(-1)
    logdet_q = 2.0 * torch.log(torch.diagonal(lq_b, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (trace + maha - d + logdet_p - logdet_q)


def _tril_from(cov: Tensor | None, scale_tril: Tensor | None, name: str) -> Tensor:
    if (cov is None) == (scale_tril is None):
        raise ValueError(f"gaussian_kl: give exactly one of cov_{name} and scale_tril_{name}")
    if scale_tril is not None:
        return scale_tril
    assert cov is not None
    return torch.linalg.cholesky(cov)


def regularise_cov(cov: Tensor, eps: float, max_tries: int = 8) -> tuple[Tensor, Tensor]:
    """Symmetrise, add εI, and grow the jitter ×10 until the Cholesky factorisation succeeds.

    Why: the paper's batch covariance is only positive *semi*-definite (rank ≤ K − 1, and 0 when
    the Σ′ head is constant), but the KL and eq. 6 need a positive-definite Σ′. Returns the
    regularised covariance and its lower Cholesky factor; both stay differentiable.
    """
    if not torch.isfinite(cov).all():
        raise FloatingPointError("posterior covariance has non-finite entries")
    d = cov.shape[-1]
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    sym = 0.5 * (cov + cov.transpose(-2, -1))
    jitter = eps
    for _ in range(max_tries):
        reg = sym + jitter * eye
        chol, info = torch.linalg.cholesky_ex(reg)
        if not bool((info > 0).any()):
            return reg, chol
        jitter *= 10.0
    raise FloatingPointError(f"covariance not positive definite even with jitter {jitter / 10:g}")


def batch_population_cov(
    s: Tensor, eps: float, reduce: Literal["norm", "rms"] = "norm"
) -> tuple[Tensor, Tensor]:
    """The paper's Σ′ from the Σ′ head output ``s`` (B × P × K): one regularised P × P per batch.

    The norm of every neuron along the batch axis gives P variables observed K times; their sample
    covariance (divisor K − 1) is symmetric PSD. ``reduce="rms"`` divides the norm by √B so that
    Σ′ does not grow with the batch size (the paper's plain norm does). Returns (cov, scale_tril).
    """
    if s.dim() != 3:
        raise ValueError(f"expected Σ′ head output of shape B×P×K, got {tuple(s.shape)}")
    n = torch.linalg.vector_norm(s, dim=0)  # P × K
    if reduce == "rms":
        n = n / math.sqrt(s.shape[0])
    k = n.shape[-1]
    centred = n - n.mean(dim=-1, keepdim=True)
    cov = centred @ centred.transpose(-2, -1) / max(k - 1, 1)
    return regularise_cov(cov, eps)


def _inverse_softplus(y: np.ndarray) -> np.ndarray:
    return np.where(y > 20.0, y, np.log(np.expm1(np.maximum(y, 1e-12))))


def prepare_prior(
    prior_mean: PriorArray, prior_cov: PriorArray, prior_std: PriorArray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check the motion prior and return (mean, cov, std, chol(cov)) as float64 arrays.

    Why here: a non-SPD prior silently breaks every KL; say so at construction. ``prior_std`` are
    the per-variable standard deviations eq. 6 draws ε with (the paper's Table 1); when omitted
    they are √diag(Σ).
    """
    mean = np.asarray(_to_numpy(prior_mean), dtype=np.float64).reshape(-1)
    cov = np.asarray(_to_numpy(prior_cov), dtype=np.float64)
    d = mean.shape[0]
    if cov.shape != (d, d):
        raise ValueError(f"prior_cov must be {d}×{d} to match prior_mean, got {cov.shape}")
    if not np.allclose(cov, cov.T, atol=1e-8):
        raise ValueError("prior_cov is not symmetric")
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"prior_cov is not positive definite (eigenvalues {np.linalg.eigvalsh(cov)})"
        ) from None
    std = (
        np.sqrt(np.diag(cov))
        if prior_std is None
        else np.asarray(_to_numpy(prior_std), dtype=np.float64).reshape(-1)
    )
    if std.shape != (d,) or not (std > 0).all():
        raise ValueError(f"prior_std must be {d} positive numbers, got {std}")
    return mean, cov, std, chol


def _to_numpy(x: object) -> object:
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return x


class MultiVariationalBottleneck(nn.Module):
    """μ′ and Σ′ heads on the pooled encoder feature, eq. 6 sampling of z, and the KL to the prior.

    The prior (mean, covariance, Table-1 std) lives in persistent buffers, so a checkpoint carries
    the prior it was trained against; the frozen encoder can be rebuilt from the state dict alone.
    """

    def __init__(
        self,
        feature_dim: int,
        num_parts: int,
        part_size: int,
        kind: Literal["batch", "cholesky"],
        prior_mean: PriorArray,
        prior_cov: PriorArray,
        prior_std: PriorArray | None = None,
        cov_eps: float = 1e-4,
        batch_cov_reduce: Literal["norm", "rms"] = "norm",
        z_mean: Literal["part", "neuron"] = "part",
        kl_direction: Literal["q_p", "p_q"] = "q_p",
        init_prior: bool = True,
    ) -> None:
        super().__init__()
        if kind not in ("batch", "cholesky"):
            raise ValueError(f"unknown bottleneck kind {kind!r}")
        mean, cov, std, chol = prepare_prior(prior_mean, prior_cov, prior_std)
        if mean.shape[0] != num_parts:
            raise ValueError(f"prior has {mean.shape[0]} variables but num_parts = {num_parts}")
        self.kind = kind
        self.num_parts = num_parts
        self.part_size = part_size
        self.cov_eps = cov_eps
        self.batch_cov_reduce = batch_cov_reduce
        self.z_mean = z_mean
        self.kl_direction = kl_direction
        latent = num_parts * part_size
        self.mu_head = nn.Linear(feature_dim, latent)
        self.cov_head = nn.Linear(feature_dim, latent)
        # Cholesky variant: the K neurons per part are read out into the P(P+1)/2 entries of L.
        self.tril_head = (
            nn.Linear(latent, num_parts * (num_parts + 1) // 2) if kind == "cholesky" else None
        )
        f32 = torch.float32
        self.register_buffer("prior_mean", torch.as_tensor(mean, dtype=f32))
        self.register_buffer("prior_cov", torch.as_tensor(cov, dtype=f32))
        self.register_buffer("prior_std", torch.as_tensor(std, dtype=f32))
        self.register_buffer("prior_scale_tril", torch.as_tensor(chol, dtype=f32))
        if init_prior:
            self._init_towards_prior(mean, chol)

    @torch.no_grad()
    def _init_towards_prior(self, mean: np.ndarray, chol: np.ndarray) -> None:
        """Start with μ′ ≈ prior mean (and, for Cholesky, L ≈ chol(Σ)) so the first KL is small.

        Why: with β = 5 a random first posterior makes the KL dominate the early gradients.
        """
        k = self.part_size
        self.mu_head.bias.copy_(torch.as_tensor(np.repeat(mean, k), dtype=torch.float32))
        # Small weights too: random ones move μ′ by ~0.07 per part, which against a strongly
        # correlated prior is a first KL of ~57 (measured; 1.8 with this scaling). With β = 5 and
        # gradient clipping, that KL would throttle the segmentation loss early in training.
        self.mu_head.weight.mul_(0.1)
        if self.tril_head is not None:
            p = self.num_parts
            rows, cols = np.tril_indices(p)
            packed = chol[rows, cols].copy()
            floor = math.sqrt(self.cov_eps)
            diag = rows == cols
            packed[diag] = _inverse_softplus(np.maximum(packed[diag] - floor, 1e-6))
            self.tril_head.bias.copy_(torch.as_tensor(packed, dtype=torch.float32))
            self.tril_head.weight.mul_(0.1)
            self.cov_head.bias.zero_()  # a zero feature then gives exactly L = chol(Σ)

    def _scale_tril(self, s: Tensor) -> Tensor:
        """Per-sample lower-triangular L from the Σ′ neurons (B × P·K) → B × P × P."""
        assert self.tril_head is not None
        t = self.tril_head(s)
        p = self.num_parts
        rows, cols = torch.tril_indices(p, p, device=t.device)
        raw = t.new_zeros(t.shape[0], p, p)
        raw = raw.index_put((torch.arange(t.shape[0], device=t.device)[:, None], rows, cols), t)
        diag = F.softplus(torch.diagonal(raw, dim1=-2, dim2=-1)) + math.sqrt(self.cov_eps)
        return torch.tril(raw, diagonal=-1) + torch.diag_embed(diag)

    def posterior(self, features: Tensor) -> dict[str, Tensor]:
        """μ′ and Σ′ for a batch of pooled features (no sampling).

        Returns ``mu`` (B×P, per-sample μ′), ``mu_neurons`` (B×P×K), ``cov`` and ``scale_tril``
        (B×P×P; for ``"batch"`` the one batch matrix on each row), ``mu_q``/``scale_tril_q``
        (the posterior the KL is taken of: P and P×P for ``"batch"``, B×P and B×P×P for Cholesky)
        and ``kl`` (scalar; for Cholesky the mean over the batch).
        """
        b = features.shape[0]
        p, k = self.num_parts, self.part_size
        m = self.mu_head(features).view(b, p, k)
        mu = m.mean(dim=-1)
        s = self.cov_head(features)
        if self.kind == "batch":
            cov1, l1 = batch_population_cov(s.view(b, p, k), self.cov_eps, self.batch_cov_reduce)
            cov = cov1.expand(b, p, p)
            scale_tril = l1.expand(b, p, p)
            mu_q, l_q = mu.mean(dim=0), l1
        else:
            scale_tril = self._scale_tril(s)
            cov = scale_tril @ scale_tril.transpose(-2, -1)
            mu_q, l_q = mu, scale_tril
        if self.kl_direction == "q_p":
            kl = gaussian_kl(
                mu_q,
                None,
                self.prior_mean,
                None,
                scale_tril_q=l_q,
                scale_tril_p=self.prior_scale_tril,
            )
        else:
            kl = gaussian_kl(
                self.prior_mean,
                None,
                mu_q,
                None,
                scale_tril_q=self.prior_scale_tril,
                scale_tril_p=l_q,
            )
        return {
            "mu": mu,
            "mu_neurons": m,
            "cov": cov,
            "scale_tril": scale_tril,
            "mu_q": mu_q,
            "scale_tril_q": l_q,
            "kl": kl.mean(),
        }

    def draw_prior(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> Tensor:
        """ε from the prior's independent normals N(μ_i, σ_i) (Table 1), shape B×P×K."""
        device = device or self.prior_mean.device
        noise = torch.randn(
            batch, self.num_parts, self.part_size, generator=generator, device=device
        )
        return self.prior_mean[:, None] + self.prior_std[:, None] * noise

    def reparameterise(self, post: dict[str, Tensor], eps: Tensor) -> Tensor:
        """Eq. 6: z (B×P×K) from prior draws ε (B×P×K) and the posterior.

        ``"batch"``: a_i = σ′_i / σ_i with σ′_i = √Σ′_ii, b_i = μ′_i − μ_i a_i, z_i = a_i ε_i + b_i,
        exactly the paper's per-part linear map. ``"cholesky"``: z = μ′ + L (ε − μ)/σ per K-column,
        i.e. the standardised prior draw coloured by the per-sample factor — identical to eq. 6 when
        L is diagonal, and it also carries Σ′'s correlations into z. With ``z_mean="neuron"`` the
        offset is each μ′ neuron instead of the part mean (the part mean of z is still μ′_i).
        """
        mu_prior = self.prior_mean[:, None]
        std_prior = self.prior_std[:, None]
        offset = post["mu"][..., None] if self.z_mean == "part" else post["mu_neurons"]
        if self.kind == "batch":
            sigma = torch.sqrt(torch.diagonal(post["cov"], dim1=-2, dim2=-1))  # B×P
            a = sigma[..., None] / std_prior
            b = offset - mu_prior * a
            return a * eps + b
        eps_std = (eps - mu_prior) / std_prior
        return offset + post["scale_tril"] @ eps_std

    def forward(
        self, features: Tensor, sample: bool, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Posterior, z and KL. ``sample=False`` uses ε = prior mean, so z = μ′ (deterministic)."""
        post = self.posterior(features)
        b = features.shape[0]
        if sample:
            eps = self.draw_prior(b, generator=generator, device=features.device)
        else:
            eps = self.prior_mean[None, :, None].expand(b, self.num_parts, self.part_size)
        post["z"] = self.reparameterise(post, eps)
        return post
