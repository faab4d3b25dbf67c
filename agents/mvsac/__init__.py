"""MV-SAC: SAC with a full-covariance squashed Gaussian policy and a Gaussian action prior."""

from agents.mvsac.distributions import SquashedMultivariateGaussianDistribution
from agents.mvsac.mvsac import MVSAC
from agents.mvsac.policies import MlpPolicy, MVActor, MVSACPolicy

__all__ = [
    "MVSAC",
    "MVActor",
    "MVSACPolicy",
    "MlpPolicy",
    "SquashedMultivariateGaussianDistribution",
]
