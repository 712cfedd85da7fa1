"""The expert driver: reads the simulator's state (privileged) and presses keys like a player would.

It keeps a lane, picks the lane with the most free road ahead when its own is slowed or blocked, holds a
fast cruise speed limited by curves and by what is ahead, and steers with a short look-ahead on its own
lateral motion (which cancels the outward drift in curves). `NoisyAutopilot` injects key perturbations
that the expert then recovers from (DART, Laskey et al. 2017): the executed keys are noisy, the label is
what the expert wanted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crew2.sim.track import LANE_WIDTH
from crew2.sim.world import PLAYER_LENGTH, PLAYER_WIDTH, World

RoleKeys = tuple[bool, bool, bool, bool]  # throttle, brake, left, right (keys.ROLES order)


@dataclass
class Autopilot:
    cruise_kmh: float | None = None  # None: 95% of the car's top speed
    headway: float = 1.0  # s of gap kept to a leader, on top of a fixed 7 m
    decel: float = 9.0  # m/s^2 it plans to brake with
    look_time: float = 3.5  # s of road it looks ahead for lane decisions

    def __post_init__(self) -> None:
        self.target_lane: int | None = None

    def reset(self) -> None:
        self.target_lane = None

    def act(self, world: World) -> RoleKeys:
        p, track = world.player, world.track
        cruise = (self.cruise_kmh / 3.6) if self.cruise_kmh else 0.95 * world.top_speed
        own = int(track.lane_of(p.d))
        if self.target_lane is None:
            self.target_lane = own
        look = max(40.0, p.v * self.look_time)
        free = [self._free_ahead(world, lane) for lane in range(track.lanes)]  # (gap m, leader speed)

        # Lane choice: leave a lane whose leader is close and slower than us, for a clear neighbour with
        # more room; commit to a change until we are in the new lane, unless it stops being clear.
        target = self.target_lane
        if target != own and not self._clear_beside(world, target):
            target = own  # the lane we were moving into stopped being clear: stay
        elif target == own:
            gap, lead_v = free[own]
            if gap < look and lead_v < cruise - 2:
                def room(c: int) -> float:  # the best gap reachable through lane c
                    beyond = c + (c - own)
                    return max(free[c][0], free[beyond][0] if 0 <= beyond < track.lanes else 0.0)

                options = [c for c in (own - 1, own + 1) if 0 <= c < track.lanes and self._clear_beside(world, c)
                           and free[c][0] >= gap and room(c) > gap + 15]
                if options:
                    target = max(options, key=lambda c: (room(c), -abs(c - track.lanes // 2)))
        self.target_lane = target

        # Speed: cruise, slowed for curves ahead and for whatever is ahead in the lanes we occupy.
        k_max = float(np.abs(track.curvature_at(p.s + np.linspace(0, p.v * 2.5 + 30, 12))).max())
        v_curve = np.sqrt(0.6 * world.LATERAL / (world.DRIFT * max(k_max, 1e-6)))
        lanes_used = {own, target, int(track.lane_of(p.d - PLAYER_WIDTH / 2)),
                      int(track.lane_of(p.d + PLAYER_WIDTH / 2))}
        v_safe = cruise
        for lane in lanes_used:
            gap, lead_v = free[lane]
            # Moving out of a blocked lane: creep up closer, the car needs speed to steer.
            margin = 1.5 if (lane == own and target != own) else 7.0 + self.headway * lead_v
            room = max(0.0, gap - margin)
            v_safe = min(v_safe, lead_v + np.sqrt(2 * self.decel * room))
        v_want = min(cruise, v_curve, v_safe)
        throttle = p.v < v_want - 0.3
        brake = p.v > v_want + 2.0

        # Steering: aim at the target lane's centre, judged where we will be in 0.35 s.
        grip = min(1.0, p.v / 8.0)
        d_rate = p.steer * world.LATERAL * grip - world.DRIFT * float(track.curvature_at(p.s)) * p.v ** 2
        error = float(track.lane_centre(target)) - (p.d + 0.35 * d_rate)
        return throttle, brake, error < -0.25, error > 0.25

    @staticmethod
    def _free_ahead(world: World, lane: int) -> tuple[float, float]:
        """Gap (m, bumper to bumper) to the nearest obstacle ahead in `lane`, and its speed."""
        o, p = world.objects, world.player
        centre = float(world.track.lane_centre(lane))
        in_lane = o.alive & (np.abs(o.d - centre) < (o.width + PLAYER_WIDTH) / 2 + 0.3)
        gap = o.s - o.length / 2 - (p.s + PLAYER_LENGTH / 2)
        ahead = np.flatnonzero(in_lane & (gap > -1.0))
        if len(ahead) == 0:
            return float("inf"), float("inf")
        k = ahead[np.argmin(gap[ahead])]
        return float(gap[k]), float(o.v[k])

    @staticmethod
    def _clear_beside(world: World, lane: int) -> bool:
        """Nothing in `lane` from a little behind us to a little ahead, so we can move into it."""
        o, p = world.objects, world.player
        centre = float(world.track.lane_centre(lane))
        in_lane = o.alive & (np.abs(o.d - centre) < LANE_WIDTH / 2 + o.width / 2)
        rel = o.s - p.s
        reach = (o.length + PLAYER_LENGTH) / 2
        closing = np.maximum(p.v - o.v, 0.0)  # a slow car ahead in that lane needs more room
        beside = (rel > -reach - 4.0 - np.maximum(o.v - p.v, 0) * 1.5) & (rel < reach + 6.0 + closing * 1.2)
        return not bool((in_lane & beside).any())


class NoisyAutopilot:
    """The expert with DART-style perturbations: `act` returns (executed keys, the expert's keys)."""

    def __init__(self, expert: Autopilot, rate: float, seed: int, fps: float):
        if rate < 0:
            raise ValueError(f"noise rate must be zero or more, not {rate}")
        self.expert, self.rate, self.fps = expert, rate, fps
        self.rng = np.random.default_rng(seed)
        self.steps_left, self.perturbation = 0, (False, False, False, False)
        self.steer_only = True

    def reset(self) -> None:
        self.expert.reset()
        self.steps_left = 0

    def act(self, world: World) -> tuple[RoleKeys, RoleKeys]:
        label = self.expert.act(world)
        if self.steps_left == 0 and self.rng.random() < self.rate / self.fps:
            self.steps_left = int(self.rng.uniform(0.25, 0.8) * self.fps)
            kind = self.rng.integers(4)
            # Steering swerves, a lift off the throttle, or a dab of brake.
            self.perturbation = [(False, False, True, False), (False, False, False, True),
                                 (False, False, False, False), (False, True, False, False)][kind]
            self.steer_only = kind < 2
        if self.steps_left == 0:
            return label, label
        self.steps_left -= 1
        q = self.perturbation
        executed = (label[0], label[1], q[2], q[3]) if self.steer_only else (q[0], q[1], label[2], label[3])
        return executed, label
