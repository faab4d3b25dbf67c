"""bmvtrack: an RL single-object tracker on a β-multivariational VAE, and its research environment.

Importing the package registers the Gymnasium environment ``bmvtrack/Track-v0`` (by a string
entry point, so nothing heavy is imported here). ``gymnasium.make("bmvtrack:bmvtrack/Track-v0")``
works with no import at all, because Gymnasium imports the module named before the colon.
"""
import gymnasium as _gym

__version__ = "0.1.0"

if "bmvtrack/Track-v0" not in _gym.registry:
    _gym.register(
        id="bmvtrack/Track-v0",
        entry_point="bmvtrack.envs.registration:make_tracking_env",
        vector_entry_point="bmvtrack.envs.registration:make_tracking_vector_env",
    )
