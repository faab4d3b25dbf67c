"""MV-SAC: SAC with a full-covariance squashed Gaussian policy and a Gaussian action prior."""

from bmvtrack.agents.mvsac.distributions import SquashedMultivariateGaussianDistribution
from bmvtrack.agents.mvsac.mvsac import MVSAC
from bmvtrack.agents.mvsac.policies import MlpPolicy, MVActor, MVSACPolicy

__all__ = [
    "MVSAC",
    "MVActor",
    "MVSACPolicy",
    "MlpPolicy",
    "SquashedMultivariateGaussianDistribution",
]
