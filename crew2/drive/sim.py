"""The built-in game as something to drive in-process: a frame source whose steps use the keys a
VectorSender holds, like a real game reads the keyboard."""

from __future__ import annotations

import numpy as np

from crew2.drive.senders import VectorSender
from crew2.keys import KeyProfile
from crew2.sim.autopilot import Autopilot
from crew2.sim.env import SimEnv
from crew2.sim.world import SimConfig


class SimGame:
    """Also knows, for the last frame it showed, its ground-truth boxes (`boxes`) and, with `expert`, the keys
    the autopilot would press in that very state (`label`): wherever the model took the car. The autopilot
    decides afresh in every frame (`commit=False`): it never started the lane changes the model makes."""

    name = "sim"

    def __init__(self, config: SimConfig, profile: KeyProfile, seed: int = 0, expert: bool = False):
        self.env = SimEnv(config, profile)
        self.seed = seed
        self.sender = VectorSender(list(profile.keys))
        self.done = False
        self.expert = Autopilot(commit=False) if expert else None
        self.label: np.ndarray | None = None

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
        else:
            _, _, terminated, truncated, _ = self.env.step(self.sender.vector)
            self.done = terminated or truncated
        if self.expert is not None:  # once per frame: the autopilot keeps its own state (lane, time standing)
            self.label = self.env.action_of(*self.expert.act(self.env.world)).astype(np.uint8)
        return self.env.frame.image

    def boxes(self) -> np.ndarray:
        """The last frame's ground truth: (M, 5) x1, y1, x2, y2, class."""
        return self.env.frame.truth()

    @property
    def metrics(self) -> dict[str, float]:
        return self.env.world.metrics.summary()
