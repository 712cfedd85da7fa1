"""The built-in game as something to drive in-process: a frame source whose steps use the keys a
VectorSender holds, like a real game reads the keyboard."""

from __future__ import annotations

import numpy as np

from crew2.drive.senders import VectorSender
from crew2.keys import KeyProfile
from crew2.sim.env import SimEnv
from crew2.sim.world import SimConfig


class SimGame:
    name = "sim"

    def __init__(self, config: SimConfig, profile: KeyProfile, seed: int = 0):
        self.env = SimEnv(config, profile)
        self.seed = seed
        self.sender = VectorSender(list(profile.keys))
        self.done = False

    def __enter__(self) -> SimGame:
        self.env.reset(seed=self.seed)
        self.first = True
        return self

    def __exit__(self, *exc) -> None:
        pass

    def grab(self) -> np.ndarray:
        """The next frame: the game advances one step with the keys held now (the first call shows the start)."""
        if self.first:
            self.first = False
            return self.env.frame.image
        _, _, terminated, truncated, _ = self.env.step(self.sender.vector)
        self.done = terminated or truncated
        return self.env.frame.image

    @property
    def metrics(self) -> dict[str, float]:
        return self.env.world.metrics.summary()
