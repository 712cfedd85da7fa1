"""From key probabilities to keys held down: per-key thresholds, hysteresis, a minimum hold time and
exclusive roles (left vs right, throttle vs brake: the stronger wins). Pure and stateful, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXCLUSIVE = (("left", "right"), ("throttle", "brake"))


@dataclass
class DecoderConfig:
    hysteresis: float = 0.1  # a pressed key is released only below threshold - hysteresis
    min_hold: float = 0.1  # s a key keeps its state after a change (no chatter at the frame rate)


class KeyDecoder:
    def __init__(self, keys: list[str], roles: dict[str, str], thresholds: list[float],
                 config: DecoderConfig | None = None):
        self.keys, self.cfg = list(keys), config or DecoderConfig()
        self.t = np.asarray(thresholds, np.float64)
        self.pressed = np.zeros(len(keys), bool)
        self.changed_at = np.full(len(keys), -np.inf)
        self.pairs = [(keys.index(roles[a]), keys.index(roles[b])) for a, b in EXCLUSIVE
                      if roles.get(a) in keys and roles.get(b) in keys]

    def reset(self) -> None:
        self.pressed[:] = False
        self.changed_at[:] = -np.inf

    def __call__(self, probs: np.ndarray, now: float) -> np.ndarray:
        """(K,) probabilities at time `now` (s) -> (K,) bool keys to hold."""
        p = np.asarray(probs, np.float64)
        want = np.where(self.pressed, p >= self.t - self.cfg.hysteresis, p >= self.t)
        margin = p - self.t
        for a, b in self.pairs:  # both wanted: the one further above its threshold wins
            if want[a] and want[b]:
                want[b if margin[a] >= margin[b] else a] = False
        may_change = now - self.changed_at >= self.cfg.min_hold
        change = (want != self.pressed) & may_change
        self.pressed = np.where(change, want, self.pressed)
        self.changed_at = np.where(change, now, self.changed_at)
        for a, b in self.pairs:  # a held key blocks its opposite until it is released
            if self.pressed[a] and self.pressed[b]:
                late = b if self.changed_at[b] >= self.changed_at[a] else a
                self.pressed[late] = False
        return self.pressed.copy()
