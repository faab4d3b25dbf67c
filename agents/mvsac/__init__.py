"""MV-SAC: SAC with a full-covariance squashed Gaussian policy and a Gaussian action prior."""

from bmvtrack.agents.mvsac.distributions import SquashedMultivariateGaussianDistribution
from bmvtrack.agents.mvsac.mvsac import MVSAC
from bmvtrack.agents.mvsac.policies import MlpPolicy, MVActor, MVSACPolicy
from bmvtrack.agents.mvsac.prior import ActionPrior
from bmvtrack.agents.mvsac.sac_train import ActorLossTerm, sac_train

__all__ = [
    "MVSAC",
    "ActionPrior",
    "ActorLossTerm",
    "MVActor",
    "MVSACPolicy",
    "MlpPolicy",
    "SquashedMultivariateGaussianDistribution",
    "sac_train",
]
