"""bmvtrack: an RL single-object tracker on a β-multivariational VAE, and its research environment."""
__version__ = "0.1.0"
