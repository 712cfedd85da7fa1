"""The Gymnasium environment: API conformance, spaces, ground truth in info."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import crew2.sim  # noqa: F401  (registers the environment)
from crew2.keys import KeyProfile
from crew2.sim import ENV_ID
from crew2.sim.env import SimEnv
from crew2.sim.world import CLASSES, SimConfig


def test_env_checker_passes():
    env = gym.make(ENV_ID, width=128, height=72)
    check_env(env.unwrapped)
    assert env.observation_space.shape == (72, 128, 3)


def test_spaces_and_ground_truth():
    env = SimEnv(SimConfig(track_km=1, traffic=2.0))
    obs, info = env.reset(seed=3)
    assert obs.shape == (144, 256, 3) and obs.dtype == np.uint8
    assert env.action_space.n == 4
    seen = 0
    for _ in range(100):
        obs, reward, _, _, info = env.step(env.action_of(True, False, False, False))
        assert env.observation_space.contains(obs)
        boxes, classes = info["boxes"], info["classes"]
        assert boxes.shape == (len(classes), 4) and len(info["distances"]) == len(classes)
        assert np.all((classes >= 0) & (classes < len(CLASSES)))
        seen += len(classes)
    assert seen > 0
    assert info["speed_kmh"] > 20 and info["distance_m"] > 30 and reward > 0


def test_custom_key_profile_maps_roles():
    profile = KeyProfile("arrows", ("up", "left", "right", "down", "space"),
                         {"throttle": "up", "brake": "down", "left": "left", "right": "right"})
    env = SimEnv(SimConfig(track_km=1), profile=profile)
    env.reset(seed=0)
    assert env.action_space.n == 5
    assert env.roles(np.array([1, 0, 1, 0, 1])) == (True, False, False, True)
    assert env.action_of(True, False, False, True).tolist() == [1, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="5 keys"):
        env.step(np.array([1, 0, 0, 0]))
