"""Fakes at the driver's boundaries: a recording sender and a scripted engine (no network needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from crew2.io.capture import Source
from crew2.io.keyboard import KeySender
from crew2.model.engine import ModelInfo, Prediction

INFO = ModelInfo(["w", "a", "s", "d"], {"throttle": "w", "left": "a", "brake": "s", "right": "d"},
                 ["car", "truck", "cone", "barrier"], [0.5, 0.5, 0.5, 0.5], (64, 36), 1)


class RecordingSender(KeySender):
    """Remembers every event; with `path`, appends them to a JSONL file (readable after a kill)."""

    name = "recording"

    def __init__(self, path: Path | None = None):
        super().__init__()
        self.events: list[tuple[str, str, float]] = []
        self.path = path

    def _event(self, kind: str, key: str) -> None:
        self.events.append((kind, key, time.monotonic()))
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps([kind, key]) + "\n")

    def _press(self, key: str) -> None:
        self._event("press", key)

    def _release(self, key: str) -> None:
        self._event("release", key)


class ScriptedEngine:
    """Presses W and D (probabilities 0.9), sees no obstacles; `fail_at` raises, `stall_at` sleeps."""

    name = "scripted"
    info = INFO

    def __init__(self, fail_at: int | None = None, stall_at: int | None = None, stall: float = 0.0):
        self.calls, self.fail_at, self.stall_at, self.stall = 0, fail_at, stall_at, stall

    def __call__(self, frames: np.ndarray) -> list[Prediction]:
        self.calls += 1
        assert frames.shape == (1, 36, 64, 3) and frames.dtype == np.uint8
        if self.calls == self.fail_at:
            raise RuntimeError("inference blew up")
        if self.calls == self.stall_at:
            time.sleep(self.stall)
        return [Prediction(np.array([0.9, 0.1, 0.1, 0.9]), np.zeros((0, 6), np.float32))]


class FrameSource(Source):
    def __init__(self, frames=None):
        self.frames = frames
        self.i = 0

    def grab(self):
        self.i += 1
        if self.frames is None:
            return np.full((36, 64, 3), 100, np.uint8)
        return self.frames[(self.i - 1) % len(self.frames)]
