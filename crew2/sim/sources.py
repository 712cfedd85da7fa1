"""The built-in game as in-process frame sources (`crew2.io.capture.FrameSource`): `SimSource` for recording, the
autopilot playing; `SimGame` to drive, its steps using the keys a VectorSender holds, as a real game reads its
keyboard."""

from __future__ import annotations

import numpy as np

from crew2.data.session import SIM_TRUTH
from crew2.io.capture import Source
from crew2.io.keyboard import VectorSender
from crew2.keys import KeyProfile
from crew2.sim.autopilot import Autopilot, NoisyAutopilot
from crew2.sim.env import SimEnv
from crew2.sim.world import SimConfig


class SimSource(Source):
    """The built-in game, in-process. Its autopilot plays (with optional DART noise); as a key reader it
    returns what the expert wanted for the last grabbed frame, and `boxes` that frame's ground truth.
    Episodes follow each other with seeds seed, seed + 1, ...; one also ends when the car has stood still
    for `STANDING` seconds (a noisy drive that left it where the expert cannot get out, say between two
    closed lanes: minutes of standing frames would teach a network to stand)."""

    STANDING = 5.0

    name = "sim"
    box_source = SIM_TRUTH

    def __init__(self, config: SimConfig, profile: KeyProfile, seed: int = 0, noise: float = 0.0,
                 late: float = 0.0):
        self.env = SimEnv(config, profile)
        self.seed, self.noise, self.late = seed, noise, late
        self.label = np.zeros(len(profile.keys), np.uint8)
        self.truth = np.zeros((0, 5), np.float32)

    def __enter__(self) -> SimSource:
        self._new_episode()
        return self

    def _new_episode(self) -> None:
        self.env.reset(seed=self.seed)
        self.standing = 0
        self.driver = NoisyAutopilot(Autopilot(), self.noise, seed=self.seed, fps=self.env.config.fps,
                                     late=self.late)

    def grab(self) -> np.ndarray:
        frame = self.env.frame
        self.truth = frame.truth()
        executed, label = self.driver.act(self.env.world)
        self.label = self.env.action_of(*label).astype(np.uint8)
        _, _, terminated, truncated, _ = self.env.step(self.env.action_of(*executed))
        self.standing = self.standing + 1 if self.env.world.player.v < 0.5 else 0
        if terminated or truncated or self.standing > self.STANDING * self.env.config.fps:
            self.seed += 1
            self._new_episode()
        return frame.image

    def read(self) -> np.ndarray:
        return self.label

    def boxes(self) -> np.ndarray:
        return self.truth


class SimGame(Source):
    """Also knows, for the last frame it showed, its ground-truth boxes (`boxes`) and, with `expert`, the keys
    the autopilot would press in that very state (`label`): wherever the model took the car. The autopilot
    decides afresh in every frame (`commit=False`): it never started the lane changes the model makes."""

    name = "sim"
    box_source = SIM_TRUTH

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
