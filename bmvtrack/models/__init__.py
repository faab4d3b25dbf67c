"""βMVAE / βMVUnet: networks, multivariational bottlenecks and the βMVAE loss.

Models know nothing of the environment: the motion prior comes in as arrays (mean, covariance,
Table-1 stds), never as a ``bmvtrack.motion`` object.
"""

from bmvtrack.models.bottleneck import (
    MultiVariationalBottleneck,
    PriorArray,
    batch_population_cov,
    gaussian_kl,
    prepare_prior,
    regularise_cov,
)
from bmvtrack.models.config import ModelConfig
from bmvtrack.models.losses import (
    beta_mv_loss,
    class_weights_from_batch,
    construction_loss,
    loss_from_config,
    soft_jaccard,
)
from bmvtrack.models.networks import (
    BasicBlock,
    BetaMVAE,
    BetaMVEncoder,
    BetaMVNet,
    BetaMVUnet,
    Decoder,
    ResNetBackbone,
    build_encoder,
    build_model,
    count_parameters,
    encoder_state_dict,
)

__all__ = [
    "BasicBlock",
    "BetaMVAE",
    "BetaMVEncoder",
    "BetaMVNet",
    "BetaMVUnet",
    "Decoder",
    "ModelConfig",
    "MultiVariationalBottleneck",
    "PriorArray",
    "ResNetBackbone",
    "batch_population_cov",
    "beta_mv_loss",
    "build_encoder",
    "build_model",
    "class_weights_from_batch",
    "construction_loss",
    "count_parameters",
    "encoder_state_dict",
    "gaussian_kl",
    "loss_from_config",
    "prepare_prior",
    "regularise_cov",
    "soft_jaccard",
]
