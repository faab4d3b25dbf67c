"""The Gymnasium tracking environment (registered as ``bmvtrack/Track-v0`` by ``import bmvtrack``)."""
from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv

__all__ = ["EnvConfig", "TrackingEnv"]
