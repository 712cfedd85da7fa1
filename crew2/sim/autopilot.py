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
from crew2.sim.world import CONE, PLAYER_LENGTH, PLAYER_WIDTH, World

RoleKeys = tuple[bool, bool, bool, bool]  # throttle, brake, left, right (keys.ROLES order)


@dataclass
class Autopilot:
    cruise_kmh: float | None = None  # None: 95% of the car's top speed
    headway: float = 1.0  # s of gap kept to a leader, on top of a fixed 7 m
    decel: float = 9.0  # m/s^2 it plans to brake with
    look_time: float = 3.5  # s of road it looks ahead for lane decisions
    # It sees a lane change it started through (until it is in the new lane). False: it decides afresh every
    # frame from where the car is, for labelling states another driver took the car into (DAgger): a lane the
    # model drove into is then the expert's own, not one it steers back out of.
    commit: bool = True

    def __post_init__(self) -> None:
        self.target_lane: int | None = None
        self.standing = 0.0  # s the car has stood still

    def reset(self) -> None:
        self.target_lane = None
        self.standing = 0.0

    def act(self, world: World) -> RoleKeys:
        p, track = world.player, world.track
        cruise = (self.cruise_kmh / 3.6) if self.cruise_kmh else 0.95 * world.top_speed
        own = int(track.lane_of(p.d))
        if self.target_lane is None or not self.commit:
            self.target_lane = own
        look = max(40.0, p.v * self.look_time)
        if p.v < 1.0:
            self.standing += world.config.dt
        elif self.target_lane == own:  # moving again, and not in the middle of a lane change: the wait is over
            self.standing = 0.0
        # Room it leaves to traffic coming up from behind in a lane it moves into: 1.5 s of closing speed.
        # Once it has stood 2 s behind something while a queue streams past beside it, it noses in: 0.9 s
        # (traffic brakes for it), and a car just ahead that is pulling away does not count; until it is in
        # the new lane (judged the patient way as soon as it rolled, it would turn back).
        impatient = self.standing > 2.0
        free = [self._free_ahead(world, lane) for lane in range(track.lanes)]  # (gap m, leader speed)

        # Lane choice: leave a lane whose leader is close and slower than us, for a clear neighbour with
        # more room; commit to a change until we are in the new lane, unless it stops being clear.
        target = self.target_lane
        if target != own and not self._clear_beside(world, target, impatient):
            target = own  # the lane we were moving into stopped being clear: stay
        elif target == own:
            gap, lead_v = free[own]
            if gap < look and lead_v < cruise - 2:
                def room(c: int) -> float:  # the best gap reachable through lane c
                    beyond = c + (c - own)
                    return max(free[c][0], free[beyond][0] if 0 <= beyond < track.lanes else 0.0)

                options = [c for c in (own - 1, own + 1) if 0 <= c < track.lanes and free[c][0] >= gap
                           and room(c) > gap + 15 and self._clear_beside(world, c, impatient)]
                if options:
                    target = max(options, key=lambda c: (room(c), -abs(c - track.lanes // 2)))
        self.target_lane = target

        # Speed: cruise, slowed for curves ahead and for whatever is ahead in the car's way: what it overlaps
        # now and what is in the target lane. Something it overlaps now but is steering away from (it is
        # moving out of a blocked lane, or was pushed off its lane's centre) it creeps up to, keeping the
        # room it needs to steer clear (about 1.5 m of road per metre sideways when slow): the car needs
        # speed to steer, and standing still behind it, it would never get past.
        k_max = float(np.abs(track.curvature_at(p.s + np.linspace(0, p.v * 2.5 + 30, 12))).max())
        v_curve = np.sqrt(0.6 * world.LATERAL / (world.DRIFT * max(k_max, 1e-6)))
        o = world.objects
        reach = (o.width + PLAYER_WIDTH) / 2 + 0.3
        in_target = np.abs(o.d - float(track.lane_centre(target))) < reach
        overlap = reach - np.abs(o.d - p.d)  # how far the car must move sideways to pass it, m
        in_way = o.alive & (in_target | (overlap > 0))
        gap = o.s - o.length / 2 - (p.s + PLAYER_LENGTH / 2)
        ahead = np.flatnonzero(in_way & (gap > -1.0))
        # Stood 4 s with a clear lane beside it but too close to steer out: it rolls out anyway, up to a
        # barrier, through a cone (knocked away: a collision, but no worse than standing there for good).
        if self.standing > 4.0 and target != own:
            creep = np.where(o.cls[ahead] == CONE, -np.inf, 0.3)
        else:
            creep = 1.5 + 1.5 * overlap[ahead]
        margin = np.where(in_target[ahead], 7.0 + self.headway * o.v[ahead], creep)
        room = np.maximum(0.0, gap[ahead] - margin)
        v_safe = float(np.min(o.v[ahead] + np.sqrt(2 * self.decel * room), initial=cruise))
        v_want = min(cruise, v_curve, v_safe)
        throttle = p.v < v_want - 0.3
        brake = p.v > v_want + 2.0

        return (throttle, brake, *self.steer(world, target))

    @staticmethod
    def steer(world: World, lane: int) -> tuple[bool, bool]:
        """Left, right: aim at `lane`'s centre, judged where we will be in 0.35 s."""
        p, track = world.player, world.track
        grip = min(1.0, p.v / 8.0)
        d_rate = p.steer * world.LATERAL * grip - world.DRIFT * float(track.curvature_at(p.s)) * p.v ** 2
        error = float(track.lane_centre(lane)) - (p.d + 0.35 * d_rate)
        return error < -0.25, error > 0.25

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
    def _clear_beside(world: World, lane: int, impatient: bool = False) -> bool:
        """Nothing in `lane` from a little behind us to a little ahead, so we can move into it."""
        o, p = world.objects, world.player
        centre = float(world.track.lane_centre(lane))
        in_lane = o.alive & (np.abs(o.d - centre) < LANE_WIDTH / 2 + o.width / 2)
        rel = o.s - p.s
        reach = (o.length + PLAYER_LENGTH) / 2
        closing = np.maximum(p.v - o.v, 0.0)  # a slow car ahead in that lane needs more room
        faster = np.maximum(o.v - p.v, 0)
        behind, away = (0.9, 0.5) if impatient else (1.5, 0.0)
        beside = (rel > -reach - 4.0 - faster * behind) & (rel < reach + 6.0 + closing * 1.2 - faster * away)
        return not bool((in_lane & beside).any())


class NoisyAutopilot:
    """The expert with DART-style perturbations: `act` returns (executed keys, the expert's keys).

    `late` is the share of the expert's lane changes that are held back for 1-4 s: the car keeps its lane
    and slows for what it wanted to leave the lane for, so the recording holds what the expert does when it
    comes close to a cone or a slower car in its lane (a learner that did not change lanes early ends up
    there; the expert decides about 100 m ahead, where an obstacle is a few pixels)."""

    def __init__(self, expert: Autopilot, rate: float, seed: int, fps: float, late: float = 0.0):
        if rate < 0:
            raise ValueError(f"noise rate must be zero or more, not {rate}")
        if not 0 <= late <= 1:
            raise ValueError(f"the share of late lane changes must be between 0 and 1, not {late}")
        self.expert, self.rate, self.fps, self.late = expert, rate, fps, late
        self.rng = np.random.default_rng(seed)
        self.late_rng = np.random.default_rng([seed, 1])  # its own stream: late=0 replays as before
        self.steps_left, self.perturbation = 0, (False, False, False, False)
        self.steer_only = True
        self.held = 0

    def reset(self) -> None:
        self.expert.reset()
        self.steps_left = self.held = 0

    def act(self, world: World) -> tuple[RoleKeys, RoleKeys]:
        before = self.expert.target_lane
        label = self.expert.act(world)
        if self.late:
            own, target = int(world.track.lane_of(world.player.d)), self.expert.target_lane
            if target not in (before, own) and self.late_rng.random() < self.late:  # it just chose to change
                self.held = int(self.late_rng.uniform(1.0, 4.0) * self.fps)
            if target == own:
                self.held = 0
            if self.held:  # the lane change held back: keep the lane, at the expert's speed
                self.held -= 1
                return (label[0], label[1], *self.expert.steer(world, own)), label
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
