"""The simulator as a Gymnasium environment: RGB frames in, a MultiBinary key vector out."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from crew2.keys import ROLES, KeyProfile, default_profile
from crew2.sim.render import Appearance, Frame, Renderer
from crew2.sim.world import CLASSES, SimConfig, World

ENV_ID = "crew2/Sim-v0"


class SimEnv(gym.Env):
    """Observation: the front camera, (height, width, 3) uint8 RGB. Action: one bit per key of the profile
    (default W, A, S, D); keys without a driving role are ignored. Reward: metres of progress / 10, minus 10
    per collision and 0.1 per step off the road. `info` carries the ground truth of the frame."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, config: SimConfig | None = None, profile: KeyProfile | None = None,
                 render_mode: str | None = None, **overrides: Any):
        self.config = config if config is not None else SimConfig(**overrides)
        self.profile = profile if profile is not None else default_profile()
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.config.fps}
        h, w = self.config.height, self.config.width
        self.observation_space = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = gym.spaces.MultiBinary(len(self.profile.keys))
        self._roles = [self.profile.index(r) for r in ROLES]
        self.world: World | None = None
        self.frame: Frame | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """A new episode. `seed` names the episode: the same seed gives the same road, traffic and looks."""
        super().reset(seed=seed)
        episode = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        self.world = World(self.config, episode)
        rng = np.random.default_rng([episode, 1])
        look = Appearance.sample(rng) if self.config.randomize else Appearance()
        if self.config.horizon is not None:  # a fixed camera pitch, as a game's (where a horizon band looks)
            look = dataclasses.replace(look, horizon=self.config.horizon)
        self.renderer = Renderer(self.config.width, self.config.height, look, self.config.lanes, seed=episode)
        self.frame = self.renderer.render(self.world)
        return self.frame.image, self._info()

    def roles(self, action: np.ndarray) -> tuple[bool, bool, bool, bool]:
        """The (throttle, brake, left, right) a key vector presses."""
        a = np.asarray(action).reshape(-1)
        if a.shape != (len(self.profile.keys),):
            raise ValueError(f"action must have {len(self.profile.keys)} keys, got shape {np.shape(action)}")
        return tuple(bool(a[i]) if i is not None else False for i in self._roles)

    def action_of(self, throttle: bool, brake: bool, left: bool, right: bool) -> np.ndarray:
        """The key vector that presses these roles (the inverse of `roles`)."""
        a = np.zeros(len(self.profile.keys), np.int8)
        for i, on in zip(self._roles, (throttle, brake, left, right), strict=True):
            if i is not None:
                a[i] = on
        return a

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.world is None:
            raise RuntimeError("call reset() before step()")
        before = self.world.metrics.distance
        events = self.world.step(*self.roles(action))
        self.frame = self.renderer.render(self.world)
        reward = (self.world.metrics.distance - before) / 10 - 10.0 * len(events.crashed_into) \
            - 0.1 * events.offroad
        return self.frame.image, float(reward), self.world.finished, self.world.timed_out, self._info()

    def render(self) -> np.ndarray | None:
        return None if self.frame is None else self.frame.image

    def _info(self) -> dict[str, Any]:
        w, f = self.world, self.frame
        p, track = w.player, w.track
        return {
            "boxes": f.boxes, "classes": f.classes, "distances": f.distances, "class_names": CLASSES,
            "speed_kmh": 3.6 * p.v, "distance_m": w.metrics.distance, "time_s": w.metrics.time,
            "road_offset_m": p.d, "lane": int(track.lane_of(p.d)),
            "lane_offset_m": p.d - float(track.lane_centre(track.lane_of(p.d))),
            "crashed": w.events.crashed, "offroad": w.events.offroad, "collisions": w.metrics.collisions,
        }
