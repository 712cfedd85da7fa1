"""A scripted CarRacing-v3 expert that reads the game's state (car pose, speed, the track's centre line) and
decides which arrow keys a person would hold: steer towards a point ahead on the centre line (pure pursuit),
throttle up to a speed the next curves allow, brake when over it. It decides; the game window's keyboard
(XTest) carries its keys, so crew2 sees its play only as a person's: pixels and keys."""

from __future__ import annotations

import math

import numpy as np

from crew2.io.person import Gate

KEYS = ("up", "down", "left", "right")  # the arrow keys, as the game reads them (crew2 key names)
ROLES = {"throttle": "up", "brake": "down", "left": "left", "right": "right"}


def action_of(pressed: set[str] | frozenset[str]) -> np.ndarray:
    """Held arrow keys -> CarRacing's continuous action (steer, gas, brake), as Gymnasium's own keyboard
    play maps them: left -1, right +1, up full gas, down brake 0.8."""
    steer = float("right" in pressed) - float("left" in pressed)
    return np.array([steer, float("up" in pressed), 0.8 * ("down" in pressed)], np.float64)


def _wrap(a: np.ndarray | float):
    return (a + np.pi) % (2 * np.pi) - np.pi


class Expert:
    """Which keys to hold now. `speed` scales its target speeds (tuned on tracks 0-3: 1.5 scored 752 on average,
    1.3 702, 1.8 620: faster spins the car out in bends)."""

    def __init__(self, speed: float = 1.5, deadband: float = 0.1):
        self.scale, self.deadband = speed, deadband
        self._track_id: int | None = None
        self.i = 0

    def _track(self, env) -> None:
        if self._track_id != id(env.track):
            self._track_id = id(env.track)
            self.points = np.array([(t[2], t[3]) for t in env.track])  # (N, 2) centre line, ~3.5 m apart
            self.heading = np.array([t[1] for t in env.track])  # (N,) direction of travel at each point
            self.i = 0

    def _locate(self, env) -> tuple[np.ndarray, float]:
        """The car's position and speed; moves `i` to the nearest centre-line point."""
        self._track(env)
        car, n = env.car, len(self.points)
        pos = np.array(car.hull.position)
        window = (self.i + np.arange(-5, 40)) % n  # the car moves forward along the track: look near where it was
        self.i = int(window[np.argmin(np.linalg.norm(self.points[window] - pos, axis=1))])
        return pos, float(np.hypot(*car.hull.linearVelocity))

    def where(self, env) -> tuple[float, float]:
        """How the car stands on the track: the angle between its heading and the road's (rad), and its speed."""
        _, speed = self._locate(env)
        road = self.points[(self.i + 1) % len(self.points)] - self.points[self.i]
        angle = env.car.hull.angle
        fwd = np.array([-math.sin(angle), math.cos(angle)])
        off = abs(math.atan2(fwd[0] * road[1] - fwd[1] * road[0], fwd @ road))
        return off, speed

    def keys(self, env) -> frozenset[str]:
        """`env` is the unwrapped CarRacing (its `car` and `track`)."""
        pos, speed = self._locate(env)
        car, n = env.car, len(self.points)

        ahead = self.points[(self.i + 5 + int(speed / 10)) % n] - pos
        angle = car.hull.angle
        fwd = np.array([-math.sin(angle), math.cos(angle)])
        error = math.atan2(fwd[0] * ahead[1] - fwd[1] * ahead[0], fwd @ ahead)  # > 0: target to the left

        # How much the road turns over the stretch the car covers in the next ~1.2 s decides the speed.
        span = 6 + int(speed * 2.0 / 3.5)
        turn = np.abs(_wrap(self.heading[(self.i + np.arange(1, span)) % n] - self.heading[self.i])).max()
        target = self.scale * (80.0 if turn < 0.3 else 60.0 if turn < 0.7 else 45.0 if turn < 1.1 else 35.0)

        pressed = set()
        if error > self.deadband:
            pressed.add("left")
        elif error < -self.deadband:
            pressed.add("right")
        if speed < target - 3 and abs(error) < (0.6 if speed < 20 else 0.25):
            # (full gas in a bend spins the rear wheels: the car turns round)
            pressed.add("up")
        elif speed > target + 8:
            pressed.add("down")
        return frozenset(pressed)


class Guard:
    """The expert as the person behind crew2 (HG-DAgger's gate): it takes the keys when the car is in trouble, and
    gives them back once it has been back on course for `settle_s`. Trouble is what the expert itself rarely
    gets into (measured on its own driving of 4 tracks: 8% of frames; it cuts corners and leaves the road for
    moments, so a tighter gate would take over from good driving and never give back): no wheel on the road for
    `offroad_s`, turned more than `off_rad` from the road, or still standing `grace_s` into the track. Back on
    course: two wheels or more on the road, within 0.6 rad of its direction, moving."""

    def __init__(self, expert: Expert, fps: float, offroad_s: float = 0.5, off_rad: float = 1.5,
                 settle_s: float = 0.3, grace_s: float = 1.0):
        self.expert, self.off_rad = expert, off_rad
        self.offroad_frames, self.grace = round(offroad_s * fps), round(grace_s * fps)
        self.gate = Gate(round(settle_s * fps))
        self.seen = self.offroad = 0  # frames of this track; frames in a row with no wheel on the road

    def keys(self, env) -> frozenset[str] | None:
        """The keys to hold this frame while the expert drives; None while crew2 does."""
        self.seen += 1
        off, speed = self.expert.where(env)
        on_road = sum(bool(wheel.tiles) for wheel in env.car.wheels)  # the game's own contact with road tiles
        self.offroad = self.offroad + 1 if on_road == 0 else 0
        trouble = (self.offroad >= self.offroad_frames or off > self.off_rad
                   or (self.seen > self.grace and speed < 2.0))
        calm = on_road >= 2 and off < 0.6 and speed > 10.0
        return self.expert.keys(env) if self.gate.update(trouble, calm) else None
