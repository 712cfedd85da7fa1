"""Frame sources for recording and driving. Each is a context manager with `grab() -> RGB frame`."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from crew2.data.session import SIM_TRUTH
from crew2.keys import KeyProfile
from crew2.sim.autopilot import Autopilot, NoisyAutopilot
from crew2.sim.env import SimEnv
from crew2.sim.world import SimConfig


class FrameSource(Protocol):
    name: str

    def __enter__(self) -> FrameSource: ...
    def __exit__(self, *exc) -> None: ...
    def grab(self) -> np.ndarray:
        """The newest frame, (H, W, 3) uint8 RGB."""
        ...


class KeyReader(Protocol):
    def read(self) -> np.ndarray:
        """The key vector now, (K,) uint8 in the profile's order."""
        ...


class SimSource:
    """The built-in game, in-process. Its autopilot plays (with optional DART noise); as a key reader it
    returns what the expert wanted for the last grabbed frame, and `boxes` that frame's ground truth.
    Episodes follow each other with seeds seed, seed + 1, ..."""

    name = "sim"

    def __init__(self, config: SimConfig, profile: KeyProfile, seed: int = 0, noise: float = 0.0):
        self.env = SimEnv(config, profile)
        self.seed, self.noise = seed, noise
        self.label = np.zeros(len(profile.keys), np.uint8)
        self.truth = np.zeros((0, 5), np.float32)
        self.box_source = SIM_TRUTH

    def __enter__(self) -> SimSource:
        self._new_episode()
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _new_episode(self) -> None:
        self.env.reset(seed=self.seed)
        self.driver = NoisyAutopilot(Autopilot(), self.noise, seed=self.seed, fps=self.env.config.fps)

    def grab(self) -> np.ndarray:
        frame = self.env.frame
        self.truth = np.concatenate([frame.boxes, frame.classes[:, None].astype(np.float32)], axis=1)
        executed, label = self.driver.act(self.env.world)
        self.label = self.env.action_of(*label).astype(np.uint8)
        _, _, terminated, truncated, _ = self.env.step(self.env.action_of(*executed))
        if terminated or truncated:
            self.seed += 1
            self._new_episode()
        return frame.image

    def read(self) -> np.ndarray:
        return self.label

    def boxes(self) -> np.ndarray:
        return self.truth
