"""The Gymnasium tracking environment (registered as ``bmvtrack/Track-v0`` by ``import bmvtrack``)."""
if __name__ != "bmvtrack.envs":  # e.g. `import envs` from the repository root: a second copy of every module
    raise ImportError("envs/ is installed as the package bmvtrack.envs; import bmvtrack.envs, not envs")

from bmvtrack.envs.tracking_env import EnvConfig, TrackingEnv

__all__ = ["EnvConfig", "TrackingEnv"]
