"""The road: a procedurally generated curvature profile, sampled every metre, and its roadside scenery.

The world lives in road coordinates: `s` is the distance along the centre line (m), `d` the lateral offset
from it (m, positive to the right). Rendering needs the centre line seen from the car, which for a look-ahead
`dz` is `bend(s, dz) = K2(s+dz) - K2(s) - dz*K1(s)`, where K1 is the integral of curvature (the heading) and
K2 its integral (small-angle lateral displacement). Both are precomputed once, so a frame costs one `interp`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANE_WIDTH = 3.6  # m
LOOK_AHEAD = 400.0  # m of road kept beyond the finish line, for rendering and the autopilot


@dataclass(frozen=True)
class Scenery:
    """Roadside objects (trees, posts) that give a sense of speed; they never collide."""

    s: np.ndarray  # (N,) position along the road, m
    d: np.ndarray  # (N,) lateral offset, m
    kind: np.ndarray  # (N,) 0 = tree, 1 = post


class Track:
    """A road of `length` metres with `lanes` lanes and alternating straights and eased curves."""

    def __init__(self, length: float, lanes: int, rng: np.random.Generator, curviness: float = 1.0):
        self.length = float(length)
        self.lanes = int(lanes)
        self.half_width = lanes * LANE_WIDTH / 2
        n = int(length + LOOK_AHEAD) + 1
        self.grid = np.arange(n, dtype=np.float64)  # s of each sample
        self.curvature = _curvature_profile(n, rng, curviness)  # (n,) 1/m, positive turns right
        self.heading = np.cumsum(self.curvature)  # K1, rad (ds = 1 m)
        self.lateral = np.cumsum(self.heading)  # K2, m
        self.scenery = _scenery(n, self.half_width, rng)

    def lane_centre(self, lane: int | np.ndarray) -> float | np.ndarray:
        """Lateral offset of a lane's centre; lane 0 is the leftmost."""
        return (np.asarray(lane) + 0.5) * LANE_WIDTH - self.half_width

    def lane_of(self, d: float | np.ndarray) -> int | np.ndarray:
        """The lane a lateral offset lies in, clipped to the road."""
        lane = np.floor((np.asarray(d) + self.half_width) / LANE_WIDTH).astype(int)
        return np.clip(lane, 0, self.lanes - 1)

    def curvature_at(self, s: float | np.ndarray) -> np.ndarray:
        return np.interp(s, self.grid, self.curvature)

    def heading_at(self, s: float) -> float:
        return float(np.interp(s, self.grid, self.heading))

    def bend(self, s: float, dz: np.ndarray) -> np.ndarray:
        """Lateral offset (m) of the road's centre line `dz` metres ahead, in the frame of the road at `s`."""
        k2 = np.interp(s + dz, self.grid, self.lateral)
        return k2 - float(np.interp(s, self.grid, self.lateral)) - dz * self.heading_at(s)


def _curvature_profile(n: int, rng: np.random.Generator, curviness: float) -> np.ndarray:
    """Straights and curves with eased entries and exits, so steering is never asked to jump."""
    k = np.zeros(n)
    s = 150  # the start is straight
    while s < n:
        s += int(rng.uniform(80, 350) / max(curviness, 0.1))  # straight
        radius = rng.uniform(180, 700)
        sign = rng.choice((-1.0, 1.0))
        ease, hold = int(rng.uniform(40, 90)), int(rng.uniform(60, 300) * max(curviness, 0.1))
        shape = np.concatenate([np.linspace(0, 1, ease), np.ones(hold), np.linspace(1, 0, ease)])
        if s >= n:
            break
        end = min(n, s + len(shape))
        k[s:end] = sign * curviness / radius * shape[: end - s]
        s = end
    return k


def _scenery(n: int, half_width: float, rng: np.random.Generator) -> Scenery:
    posts = np.arange(20.0, n, 25.0)
    trees = np.sort(rng.uniform(0, n, n // 18))
    side = rng.choice((-1.0, 1.0), len(trees))
    s = np.concatenate([posts, posts, trees])
    d = np.concatenate([
        np.full(len(posts), -half_width - 2.5), np.full(len(posts), half_width + 2.5),
        side * (half_width + rng.uniform(7, 25, len(trees))),
    ])
    kind = np.concatenate([np.ones(2 * len(posts), np.int8), np.zeros(len(trees), np.int8)])
    order = np.argsort(s, kind="stable")  # sorted along the road: the renderer slices it by distance
    return Scenery(s=s[order], d=d[order], kind=kind[order])
