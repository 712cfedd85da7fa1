"""The built-in driving game: world, renderer, autopilot, Gymnasium environment and window."""

import gymnasium as gym

from crew2.sim.env import ENV_ID, SimEnv
from crew2.sim.world import CLASSES, SimConfig

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="crew2.sim.env:SimEnv")

__all__ = ["CLASSES", "ENV_ID", "SimConfig", "SimEnv"]
