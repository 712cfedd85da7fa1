"""The simulator's world: player physics, traffic, static obstacles, collisions and episode metrics.

Everything is in road coordinates (see track.py): `s` along the road, `d` across it, metres. Objects are
axis-aligned boxes in (s, d), which is what collision checks use; the renderer draws the same boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from crew2.errors import Crew2Error
from crew2.sim.track import LANE_WIDTH, Track

if TYPE_CHECKING:
    from crew2.io.band import Band

# Obstacle classes, in the order of their ids in ground truth and in datasets/sim.yaml.
CLASSES = ("car", "truck", "cone", "barrier")
CAR, TRUCK, CONE, BARRIER = range(len(CLASSES))
# Per class: length (along s), width (along d), height, metres.
SIZE = np.array([[4.4, 1.8, 1.4], [10.0, 2.5, 3.6], [0.45, 0.45, 0.7], [0.6, 2.6, 1.0]])
PLAYER_LENGTH, PLAYER_WIDTH = 4.4, 1.8
VIEW_BEHIND, VIEW_AHEAD = 150.0, 650.0  # the window of road around the player where traffic lives
HORIZON = 0.42  # the default camera's horizon, a share of the picture's height from its top


@dataclass
class SimConfig:
    """What kind of drive to simulate. Validated here so a bad value is one clear message."""

    width: int = 256
    height: int = 144
    lanes: int = 3
    traffic: float = 1.0  # vehicles per 100 m of road per lane, around the player
    obstacles: float = 1.0  # static obstacle groups (cones, barriers) per km
    track_km: float = 5.0
    max_seconds: float = 180.0
    fps: float = 20.0  # simulation steps per second of game time
    top_speed_kmh: float = 180.0
    curviness: float = 1.0
    randomize: bool = False  # random appearance and camera per episode
    horizon: float | None = None  # the horizon's row as a share of the height, fixed (None: the appearance's own)

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 18:
            raise Crew2Error(f"frame size {self.width}x{self.height} is too small: use at least 32x18")
        if not 2 <= self.lanes <= 4:
            raise Crew2Error(f"lanes must be 2, 3 or 4, not {self.lanes}")
        for name in ("traffic", "obstacles", "curviness"):
            if getattr(self, name) < 0:
                raise Crew2Error(f"{name} must be zero or more, not {getattr(self, name)}")
        if self.horizon is not None and not 0.2 <= self.horizon <= 0.8:
            raise Crew2Error(f"horizon must be between 0.2 and 0.8 of the frame's height, not {self.horizon}")
        for name in ("track_km", "max_seconds", "fps", "top_speed_kmh"):
            if getattr(self, name) <= 0:
                raise Crew2Error(f"{name} must be positive, not {getattr(self, name)}")

    @property
    def dt(self) -> float:
        return 1.0 / self.fps

    def for_band(self, band: Band, size: tuple[int, int]) -> SimConfig:
        """Drawn at the band's resolution for frames of `size`, its camera's horizon fixed where the default camera
        has it (with random looks it would wander out of the band): the band then looks where its `at` says, on the
        horizon (0.42) or below it, to see nearer."""
        width, height = band.capture(size)
        return replace(self, width=width, height=height, horizon=HORIZON)


@dataclass
class Objects:
    """Every obstacle on the road, as parallel arrays (index = object id)."""

    cls: np.ndarray  # (N,) class id
    s: np.ndarray  # (N,) centre along the road
    d: np.ndarray  # (N,) centre across the road
    v: np.ndarray  # (N,) speed along the road, m/s (0 for static obstacles)
    v_want: np.ndarray  # (N,) desired speed
    lane: np.ndarray  # (N,) target lane (traffic drifts there)
    colour: np.ndarray  # (N, 3) body colour, RGB
    alive: np.ndarray  # (N,) False once knocked away (a cone that was hit)

    @classmethod
    def build(cls_, track: Track, classes, s, d, v=None, colour=(200, 40, 40)) -> Objects:
        """Obstacles placed by hand (scenarios, tests): class ids, positions and speeds per object."""
        c = np.asarray(classes, np.int64).reshape(-1)
        n = len(c)
        d_a = np.asarray(d, np.float64).reshape(n)
        v_a = np.zeros(n) if v is None else np.asarray(v, np.float64).reshape(n)
        return cls_(cls=c, s=np.asarray(s, np.float64).reshape(n), d=d_a, v=v_a, v_want=v_a.copy(),
                    lane=track.lane_of(d_a), colour=np.tile(np.asarray(colour, np.uint8), (n, 1)),
                    alive=np.ones(n, bool))

    @property
    def length(self) -> np.ndarray:
        return SIZE[self.cls, 0]

    @property
    def width(self) -> np.ndarray:
        return SIZE[self.cls, 1]

    @property
    def moving(self) -> np.ndarray:
        return self.cls <= TRUCK


@dataclass
class Player:
    s: float = 0.0
    d: float = 0.0
    v: float = 0.0  # m/s
    steer: float = 0.0  # -1 (full left) .. 1 (full right), follows the keys with a short lag


@dataclass
class Metrics:
    """Running totals of an episode."""

    distance: float = 0.0  # m
    time: float = 0.0  # s
    collisions: int = 0
    offroad_time: float = 0.0  # s

    @property
    def avg_speed_kmh(self) -> float:
        return 3.6 * self.distance / self.time if self.time > 0 else 0.0

    @property
    def collisions_per_km(self) -> float:
        return self.collisions / max(self.distance / 1000, 1e-9)

    @property
    def score(self) -> float:
        """One number to compare drivers: 100 per km, minus 25 per collision and 2 per second off-road."""
        return 100 * self.distance / 1000 - 25 * self.collisions - 2 * self.offroad_time

    def summary(self) -> dict[str, float]:
        return {"distance_m": round(self.distance, 1), "time_s": round(self.time, 2),
                "avg_speed_kmh": round(self.avg_speed_kmh, 1), "collisions": self.collisions,
                "collisions_per_km": round(self.collisions_per_km, 3),
                "offroad_s": round(self.offroad_time, 2), "score": round(self.score, 1)}


@dataclass
class StepEvents:
    crashed: bool = False
    crashed_into: list[int] = field(default_factory=list)
    offroad: bool = False


class World:
    """One episode: a track, its obstacles and the player, advanced by `step(throttle, brake, left, right)`."""

    # Player dynamics (arcade, tuned to feel like a fast road car).
    ACCEL = 9.0  # m/s^2 at standstill with throttle
    BRAKE = 22.0
    ROLL, AIR = 0.6, 0.00035  # rolling (m/s^2) and air drag (1/m) decelerations
    STEER_RATE = 6.0  # steer units per second
    LATERAL = 6.5  # m/s sideways at full steer and speed
    DRIFT = 0.32  # s: outward push is DRIFT * curvature * v^2 (m/s)
    OFFROAD_SPEED = 0.35  # fraction of top speed reachable on the grass
    RAIL = 4.0  # m beyond the road edge: a guard rail

    def __init__(self, config: SimConfig, seed: int):
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.track = Track(config.track_km * 1000, config.lanes, self.rng, config.curviness)
        self.top_speed = config.top_speed_kmh / 3.6
        self.player = Player(s=0.0, d=float(self.track.lane_centre(config.lanes // 2)), v=0.0)
        self.metrics = Metrics()
        self.events = StepEvents()
        self.set_objects(_place_objects(config, self.track, self.rng))

    def set_objects(self, objects: Objects) -> None:
        """Replace every obstacle on the road (used to build scenarios by hand)."""
        self.objects = objects
        self.last_crash = np.full(len(objects.s), -1e9)  # game time of each object's last contact

    @property
    def finished(self) -> bool:
        return self.player.s >= self.track.length

    @property
    def timed_out(self) -> bool:
        return self.metrics.time >= self.config.max_seconds

    @property
    def offroad(self) -> bool:
        return abs(self.player.d) > self.track.half_width

    def step(self, throttle: bool, brake: bool, left: bool, right: bool) -> StepEvents:
        dt, p = self.config.dt, self.player
        s_before = p.s
        objects_s_before = self.objects.s.copy()

        target = float(right) - float(left)
        p.steer += float(np.clip(target - p.steer, -self.STEER_RATE * dt, self.STEER_RATE * dt))

        top = self.top_speed * (self.OFFROAD_SPEED if self.offroad else 1.0)
        accel = -self.ROLL - self.AIR * p.v * p.v
        if brake:
            accel -= self.BRAKE
        elif throttle:
            accel += self.ACCEL * max(0.0, 1.0 - (p.v / top) ** 2)
        if p.v > top:  # off the road at speed: the grass slows the car hard
            accel -= 12.0
        p.v = max(0.0, p.v + accel * dt)

        grip = min(1.0, p.v / 8.0)  # no steering at standstill
        drift = self.DRIFT * float(self.track.curvature_at(p.s)) * p.v * p.v
        p.d += (p.steer * self.LATERAL * grip - drift) * dt
        rail = self.track.half_width + self.RAIL
        if abs(p.d) > rail:
            p.d = float(np.clip(p.d, -rail, rail))
            p.v *= 0.9
        p.s += p.v * dt

        self._move_traffic(dt)
        self.events = StepEvents(offroad=self.offroad)
        self._collide(s_before, objects_s_before)

        m = self.metrics
        m.time += dt
        m.distance += p.s - s_before
        m.offroad_time += dt if self.events.offroad else 0.0
        return self.events

    def _move_traffic(self, dt: float) -> None:
        """Traffic keeps its lane and speed, follows its leader, and changes lane around static obstacles."""
        o, p, track = self.objects, self.player, self.track
        m = np.flatnonzero(o.moving & o.alive)
        if len(m) == 0:
            return
        static = np.flatnonzero(~o.moving & o.alive)
        if len(static):
            rel = o.s[static][None, :] - o.s[m][:, None]  # (M, S)
            in_lane = track.lane_of(o.d[static])[None, :] == o.lane[m][:, None]
            for i in m[((rel > 0) & (rel < 70) & in_lane).any(axis=1)]:
                o.lane[i] = _free_neighbour_lane(o, int(o.lane[i]), int(i), track, p)

        # Leader of each vehicle: the next one along s in the same target lane, or the player.
        order = np.lexsort((o.s[m], o.lane[m]))
        ms = m[order]
        lanes, s, length = o.lane[ms], o.s[ms], o.length[ms]
        gap, lead_v = np.full(len(ms), np.inf), np.zeros(len(ms))
        same = lanes[1:] == lanes[:-1]
        gap[:-1][same] = (s[1:] - s[:-1] - (length[1:] + length[:-1]) / 2)[same]
        lead_v[:-1][same] = o.v[ms[1:]][same]
        gap_player = p.s - s - (PLAYER_LENGTH + length) / 2
        behind_player = (lanes == track.lane_of(p.d)) & (p.s > s) & (gap_player < gap)
        gap[behind_player], lead_v[behind_player] = gap_player[behind_player], p.v
        gap_want = 8.0 + 1.2 * o.v[ms]
        v_new = np.minimum(o.v_want[ms], np.maximum(0.0, lead_v + (gap - gap_want) / 1.5))
        o.v[ms] = np.clip(v_new, np.maximum(0, o.v[ms] - 8 * dt), o.v[ms] + 3 * dt)
        o.s[ms] += o.v[ms] * dt
        o.d[ms] += np.clip(track.lane_centre(o.lane[ms]) - o.d[ms], -2.0 * dt, 2.0 * dt)

        # Keep traffic density around the player: what falls behind the window reappears ahead, far away.
        span = VIEW_BEHIND + VIEW_AHEAD
        o.s[ms[o.s[ms] < p.s - VIEW_BEHIND]] += span
        o.s[ms[o.s[ms] > p.s + VIEW_AHEAD]] -= span

    def _collide(self, s_before: float, objects_s_before: np.ndarray) -> None:
        """Swept test in s (nothing tunnels through at speed), overlap test in d."""
        o, p = self.objects, self.player
        reach = (o.length + PLAYER_LENGTH) / 2
        rel_before, rel_now = objects_s_before - s_before, o.s - p.s
        along = (np.minimum(rel_before, rel_now) <= reach) & (np.maximum(rel_before, rel_now) >= -reach)
        across = np.abs(o.d - p.d) < (o.width + PLAYER_WIDTH) / 2
        wrapped = np.abs(o.s - objects_s_before) > VIEW_BEHIND  # moved around the traffic window, not driven
        hits = np.flatnonzero(along & across & o.alive & ~wrapped)
        for i in hits:
            side_by_side = abs(rel_before[i]) < reach[i]  # already overlapping along s: a side swipe
            if side_by_side:
                push = (o.width[i] + PLAYER_WIDTH) / 2 + 0.05
                p.d = float(o.d[i] + np.copysign(push, p.d - o.d[i]))
                p.v *= 0.8
            elif rel_now[i] >= 0 or rel_before[i] > 0:  # we ran into it from behind
                p.s = float(o.s[i] - reach[i] - 0.05)
                p.v = min(p.v, float(o.v[i])) * 0.5
            else:  # it ran into us from behind
                o.s[i] = p.s - reach[i] - 0.05
                o.v[i] = p.v
            if o.cls[i] == CONE:
                o.alive[i] = False
            if self.metrics.time - self.last_crash[i] > 1.0:  # one contact counts once
                self.metrics.collisions += 1
                self.events.crashed = True
                self.events.crashed_into.append(int(i))
            self.last_crash[i] = self.metrics.time


def _free_neighbour_lane(o: Objects, lane: int, i: int, track: Track, player: Player) -> int:
    """An adjacent lane with nothing (vehicle or player) beside vehicle `i`; the current lane if none is."""
    for cand in (lane - 1, lane + 1) if o.s[i] % 2 < 1 else (lane + 1, lane - 1):
        if not 0 <= cand < track.lanes:
            continue
        near = o.alive & (track.lane_of(o.d) == cand) & (np.abs(o.s - o.s[i]) < 25)
        near[i] = False
        player_there = track.lane_of(player.d) == cand and abs(player.s - o.s[i]) < 25
        if not near.any() and not player_there:
            return cand
    return lane


def _place_objects(config: SimConfig, track: Track, rng: np.random.Generator) -> Objects:
    cls, s, d, v = [], [], [], []
    # Static obstacles: a barrier closing one lane with a taper of cones before it, or a few stray cones.
    n_groups = rng.poisson(config.obstacles * config.track_km)
    starts = rng.uniform(250, track.length, n_groups) if track.length > 250 else []  # 250 m in, at the earliest
    for g_s in np.sort(starts):
        lane = int(rng.integers(track.lanes))
        centre = float(track.lane_centre(lane))
        if rng.random() < 0.6:
            cls.append(BARRIER), s.append(g_s), d.append(centre)
            for j in range(1, 5):
                cls.append(CONE), s.append(g_s - 6.0 * j), d.append(centre + (j - 0.5) * 0.35 * rng.choice((-1, 1)))
        else:
            for _ in range(int(rng.integers(1, 4))):
                cls.append(CONE), s.append(g_s + rng.uniform(-6, 6))
                d.append(centre + rng.uniform(-1.2, 1.2))
    v += [0.0] * len(cls)
    # Traffic lives in a window around the player and is wrapped to stay there (see World._move_traffic).
    n_traffic = rng.poisson(config.traffic * config.lanes * (VIEW_BEHIND + VIEW_AHEAD) / 100)
    for _ in range(n_traffic):
        lane = int(rng.integers(track.lanes))
        truck = rng.random() < 0.25
        cls.append(TRUCK if truck else CAR)
        s.append(rng.uniform(30, VIEW_AHEAD) if rng.random() < 0.8 else rng.uniform(-VIEW_BEHIND, -20))
        d.append(float(track.lane_centre(lane)))
        v.append(rng.uniform(14, 20) if truck else rng.uniform(18, 30))
    cls_a, s_a, d_a = np.array(cls, np.int64), np.array(s, np.float64), np.array(d, np.float64)
    _separate_traffic(cls_a, s_a, d_a, track)
    objects = Objects.build(track, cls_a, s_a, d_a, np.array(v, np.float64))
    objects.colour = rng.integers(30, 230, (len(cls_a), 3)).astype(np.uint8)
    objects.colour[cls_a == CONE] = (255, 110, 0)
    objects.colour[cls_a == BARRIER] = (220, 30, 30)
    return objects


def _separate_traffic(cls: np.ndarray, s: np.ndarray, d: np.ndarray, track: Track) -> None:
    """Move vehicles forward until none overlaps another vehicle, a static obstacle or the start grid."""
    order = np.argsort(s)
    for i in order:
        if cls[i] > TRUCK:
            continue
        for _ in range(50):
            others = (np.abs(d - d[i]) < LANE_WIDTH / 2) & (np.arange(len(s)) != i)
            clear = np.abs(s[others] - s[i]) > (SIZE[cls[others], 0] + SIZE[cls[i], 0]) / 2 + 6
            if clear.all() and abs(s[i]) > 12:
                break
            s[i] += 8.0
