"""Crash prevention: fuse the network's keys with its obstacle boxes by explicit rules (an editable YAML).

Pure functions over (keys, detections, a short history) -> keys + the rules that fired, with the numbers
behind them. Time-to-contact comes from scale change: a box whose height grows by dh/dt is reached in
h / (dh/dt) seconds, whatever the camera. Boxes are tracked across frames by IoU to measure that growth.
The rules know key roles (throttle, brake, left, right), never letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from crew2.errors import Crew2Error, read_yaml
from crew2.io.picture import PICTURE

DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
STILL_TTC = 10.0  # s: an obstacle whose time-to-contact is longer than this is not coming closer
MOTION_WINDOW = 0.5  # s: the car stands when the picture's median motion over this window is below `still`
MIN_SCENERY = 0.05  # share of the picture that must lie outside the obstacles' boxes to measure motion on it


FRACTIONS = ("corridor", "horizon", "close_height", "min_height", "min_score", "beside_edge")  # of the frame


@dataclass(frozen=True)
class Rules:
    corridor: float = 0.30
    steer_around: bool = False
    horizon: float = 0.42
    close_height: float = 0.25
    min_height: float = 0.05
    ttc_window: float = 0.4
    min_score: float = 0.35
    ttc_brake: float = 1.2
    ttc_lift: float = 1.2
    hold: float = 0.4
    stuck: float = 3.0
    escape: float = 1.0
    still: float = 0.4
    beside: float = 0.6
    beside_edge: float = 0.0
    beside_max: float = 0.0
    passing: float = 3.5
    lane_change: float = 0.0
    lane: float = 0.95
    classes: tuple[str, ...] = ("car", "truck", "cone", "barrier")
    static: tuple[str, ...] = ("cone", "barrier")

    def problems(self) -> list[str]:
        """Every setting that cannot work, checked when the rules are loaded rather than at the first obstacle."""
        found = []
        for name, f in self.__dataclass_fields__.items():
            v = getattr(self, name)
            number = isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
            if isinstance(f.default, float) and not (number and v >= 0 and (name not in FRACTIONS or v <= 1)):
                found.append(f"{name}: {v!r} is not a number {'from 0 to 1' if name in FRACTIONS else '>= 0'}")
        if not isinstance(self.steer_around, bool):
            found.append(f"steer_around: {self.steer_around!r} is not true or false")
        for name in ("classes", "static"):
            if not all(isinstance(c, str) for c in getattr(self, name)):
                found.append(f"{name}: {list(getattr(self, name))!r} is not a list of class names")
        return found

    @staticmethod
    def load(path: str | Path | None = None) -> Rules:
        path = Path(path) if path else DEFAULT_RULES
        data = read_yaml(path, "rules file", "settings as 'name: value' lines")
        if unknown := set(data) - set(Rules.__dataclass_fields__):
            raise Crew2Error(f"{path}: unknown rule setting(s) {', '.join(sorted(map(str, unknown)))}")
        lists = {name: data.get(name, getattr(Rules, name)) for name in ("classes", "static")}
        rules = Rules(**{**data, **{k: tuple(v) if isinstance(v, list | tuple) else (v,) for k, v in lists.items()}})
        if found := rules.problems():
            raise Crew2Error(f"{path}: {'; '.join(found)}")
        return rules


@dataclass
class Hit:
    """A rule that fired: its name, what it did and the numbers behind it."""

    rule: str
    action: str
    numbers: dict[str, float]


@dataclass
class Track:
    box: np.ndarray  # (4,) x1, y1, x2, y2
    height: float  # box height at `t`, px (raw: a smoothed height lags and overstates the growth)
    growth: float  # d(height)/dt over the last `ttc_window` s, px/s (0 while it is within the box's jitter)
    t: float
    history: list[tuple[float, float]] = field(default_factory=list)  # (t, height) within the window


@dataclass
class FusionState:
    tracks: list[Track] = field(default_factory=list)
    until: dict[str, float] = field(default_factory=dict)  # override -> time it holds until
    steer: str | None = None  # the side an obstacle avoidance steers to, while it holds
    motion: list[tuple[float, float]] = field(default_factory=list)  # (t, picture motion) within MOTION_WINDOW
    still_since: float | None = None  # since when the car has stood still
    escape: tuple[float, str | None] | None = None  # (until, side) of a way around what we stopped at
    beside: dict[str, float] = field(default_factory=dict)  # side -> until when something is taken to be there
    lane: tuple[float, str, dict] | None = None  # (until, side, numbers) of a lane change under way


def update_tracks(state: FusionState, boxes: np.ndarray, now: float, window: float = 0.4) -> list[Track]:
    """Match this frame's boxes to the previous tracks by IoU; return one track per box, same order. Growth
    is measured across the track's last `window` seconds, not frame to frame: a box a few pixels high
    jitters by a pixel, which frame to frame reads as a collision a second away."""
    from ultralytics.utils.metrics import bbox_ioa

    tracks = []
    ious = bbox_ioa(boxes[:, :4], np.array([tr.box for tr in state.tracks]).reshape(-1, 4), iou=True)  # (boxes, tracks)
    for box, iou in zip(boxes, ious, strict=True):
        h = float(box[3] - box[1])
        best = state.tracks[int(iou.argmax())] if len(iou) else None
        if best is not None and iou.max() > 0.2 and now > best.t:
            history = [(t, hh) for t, hh in best.history if now - t <= window + 1e-9] + [(now, h)]
            tracks.append(Track(box[:4].copy(), h, _growth(history, window), now, history))
        else:
            tracks.append(Track(box[:4].copy(), h, 0.0, now, [(now, h)]))
    state.tracks = tracks
    return tracks


def _growth(history: list[tuple[float, float]], window: float) -> float:
    """d(height)/dt, px/s (negative: it recedes): the least-squares slope over the history, once it spans most
    of `window` and only when it stands clear of the box's jitter (twice its standard error); 0 otherwise. A
    slope over a couple of frames, or between two end points, reads a one-pixel jitter of a far box as a crash
    half a second away."""
    if len(history) < 4 or history[-1][0] - history[0][0] < 0.75 * window:
        return 0.0
    t, h = np.asarray(history, np.float64).T  # (N,) times, (N,) heights
    t = t - t.mean()
    slope = float((t * (h - h.mean())).sum() / (t * t).sum())
    residual = h - h.mean() - slope * t
    error = np.sqrt((residual ** 2).sum() / (len(h) - 2) / (t * t).sum())
    return slope if abs(slope) > 2 * error else 0.0


def in_corridor(box: np.ndarray, width: int, height: int, rules: Rules) -> bool:
    """Is the obstacle ahead of us: the middle of its bottom edge inside the ego corridor, a band that
    narrows from `corridor` (either side of the centre) at the bottom of the frame to a point at the horizon?
    On flat ground that band has a constant width on the road, like the sum of two cars' half-widths: a car
    whose centre is inside it is on a collision course; one in the next lane is not, however close and tall
    (testing the box's overlap instead braked for every car being passed)."""
    if _cut_sides(box, width):  # cut by the frame's side: beside us, its middle is further out
        return False
    y = min(float(box[3]), height) / height
    depth = max(0.0, (y - rules.horizon) / (1 - rules.horizon))  # 0 at the horizon, 1 at the bottom
    half = rules.corridor * depth * width + 0.02 * width
    return abs((float(box[0]) + float(box[2])) / 2 - width / 2) < half


def _cut_sides(box: np.ndarray, width: int, edge: float = 1.0) -> list[str]:
    """The sides of the frame that cut this box (where it runs out of the picture), or that its outer edge comes
    within `edge` px of."""
    return [side for side, cut in (("left", box[0] <= edge), ("right", box[2] >= width - edge)) if cut]


def _beside(state: FusionState, now: float) -> set[str]:
    """The sides where something is taken to be beside us now."""
    return {side for side, until in state.beside.items() if until >= now}


def scenery(detections: np.ndarray, size: tuple[int, int], min_score: float) -> np.ndarray:
    """(18, 64) bool: the pixels of `picture` outside every detected obstacle's box, with a pixel of margin: what
    moves only when the car does. Traffic passing a car that stands moves the picture inside its boxes (on the
    simulator's seed 3015, 95% of the standing frames changed by up to 6.7 grey levels; outside the boxes, 0).
    Boxes with a coordinate that is not a number are left out; the others are clipped to the frame."""
    width, height = size
    sx, sy, top = PICTURE[0] / width, PICTURE[1] / height, PICTURE[1] // 2
    keep = np.ones((PICTURE[1] - top, PICTURE[0]), bool)
    for x1, y1, x2, y2, score, _ in detections:
        if score >= min_score and np.isfinite([x1, y1, x2, y2]).all():
            x1, x2 = np.clip([x1, x2], 0, width) * sx
            y1, y2 = np.clip([y1, y2], 0, height) * sy
            keep[max(0, int(y1) - top - 1):max(0, int(np.ceil(y2)) - top + 1),
                 max(0, int(x1) - 1):int(np.ceil(x2)) + 1] = False
    return keep


def picture_motion(now: np.ndarray, *earlier: np.ndarray, keep: np.ndarray | None = None) -> float | None:
    """How far the road moved: the mean absolute change of grey level (0-255) from the closest of the `earlier`
    pictures (`picture`) to `now`, over the pixels `keep` (`scenery` of all the frames compared; None: all). In
    the simulator, as the median over half a second: 0 when the car stands (single frames reach a few grey
    levels where a vehicle has no box yet), 0.5-1 at 20 km/h, 2-10 at speed. None when less than `MIN_SCENERY`
    of the picture is left to compare (a truck filling the view): too few pixels to tell. Give it the last two
    frames: a car pinned against something can be shaken between two positions every frame (the picture
    flips, and never reads as standing against the last one)."""
    if keep is not None and keep.mean() < MIN_SCENERY:
        return None
    return min(float(cv2.absdiff(now, e)[keep if keep is not None else ...].mean()) for e in earlier)


def fuse(roles: dict[str, bool], detections: np.ndarray, class_names: list[str], size: tuple[int, int],
         state: FusionState, now: float, rules: Rules,
         motion: float | None = None) -> tuple[dict[str, bool], list[Hit]]:
    """Keys by role after the crash-prevention rules, and the rules that fired. `motion`: `picture_motion` of
    this frame against the last two (None: unknown, the car is never taken to stand)."""
    out, hits = _ahead(roles, detections, class_names, size, state, now, rules, motion)
    # Whatever else fired: never steer towards something beside us (a side swipe; the camera cannot see it).
    for side in sorted(_beside(state, now)):
        if out[side]:
            out[side] = False
            hits.append(Hit("keep_clear", f"no steering {side}: a vehicle beside us", {}))
    return out, hits


def _ahead(roles: dict[str, bool], detections: np.ndarray, class_names: list[str], size: tuple[int, int],
           state: FusionState, now: float, rules: Rules, motion: float | None) -> tuple[dict[str, bool], list[Hit]]:
    """The rules for what is ahead, and for standing still."""
    width, height = size
    _note_motion(state, now, motion, rules)
    boxes = _obstacles(detections, class_names, rules)
    tracks = update_tracks(state, boxes, now, rules.ttc_window)
    _note_beside(state, boxes, tracks, width, height, now, rules)
    lane = _lane_change(roles, state, boxes, tracks, class_names, size, now, rules)
    if lane is not None:  # what we change lanes for is not braked for; vehicles still are
        moving = [class_names[int(b[5])] not in rules.static for b in boxes]
        boxes, tracks = boxes[moving], [t for t, m in zip(tracks, moving, strict=True) if m]
    threat, ttc_min, close, ahead = _threat(boxes, tracks, width, height, rules)
    numbers = {} if threat is None else {"ttc_s": round(float(ttc_min), 2), "height": round(
        float((threat[3] - threat[1]) / height), 3), "x": round(float((threat[0] + threat[2]) / 2 / width), 3)}

    if state.escape is not None and state.escape[0] >= now:
        return _go_around(dict(roles), state.escape[1], numbers)
    state.escape = None
    out, hits = _brake_or_lift(dict(roles), state, threat, ttc_min, close, boxes, size, now, rules, numbers)
    if lane is not None:
        side, why = lane
        out["left"], out["right"] = side == "left", side == "right"
        hits.append(Hit("change_lane", f"steer {side} into the free lane", why))
    # Stuck: the car has stood still for `stuck` seconds (the picture does not move) and nothing is coming
    # closer. It stands at an obstacle it braked for, or the network, which has never seen its car stand still
    # (one frame does not show speed), does not pull away: drive on, around it.
    stood = 0.0 if state.still_since is None else now - state.still_since
    if 0 < rules.stuck <= stood and ttc_min > STILL_TTC:
        side = _way_around(roles, state, ahead, boxes, size, now, rules)
        if side is None and ahead is not None:  # boxed in with something ahead: straight on is a crash, wait
            return out, hits
        state.escape, state.still_since = (now + rules.escape, side), None
        state.motion.clear()
        state.until.clear()
        return _go_around(dict(roles), side, numbers)
    return out, hits


def _note_motion(state: FusionState, now: float, motion: float | None, rules: Rules) -> None:
    """Keep the last MOTION_WINDOW s of the picture's motion; the car stands while its median is under `still`."""
    state.motion = [(t, m) for t, m in state.motion if now - t < MOTION_WINDOW]  # unknown motion: none
    if motion is not None:
        state.motion.append((now, motion))
    standing = bool(state.motion) and float(np.median([m for _, m in state.motion])) < rules.still
    if not standing:
        state.still_since = None
    elif state.still_since is None:
        state.still_since = now


def _obstacles(detections: np.ndarray, class_names: list[str], rules: Rules) -> np.ndarray:
    """The boxes the rules act on: sure enough, and of a class they care about."""
    keep = [i for i, d in enumerate(detections) if d[4] >= rules.min_score
            and int(d[5]) < len(class_names) and class_names[int(d[5])] in rules.classes]
    return detections[keep] if len(keep) else np.zeros((0, 6), np.float32)


def _note_beside(state: FusionState, boxes: np.ndarray, tracks: list[Track], width: int, height: int, now: float,
                 rules: Rules) -> None:
    """Tall and at the frame's side (cut by it, or its outer edge within `beside_edge` of it: a vehicle we pass
    leaves the picture before it is level with us): beside us now, and after it leaves for as long as it takes to
    pass it (`beside_time`)."""
    edge = max(1.0, rules.beside_edge * width)
    for box, track in zip(boxes, tracks, strict=True):
        if (box[3] - box[1]) / height >= rules.close_height:
            until = now + beside_time(track, rules)
            state.beside.update({side: max(until, state.beside.get(side, -np.inf))
                                 for side in _cut_sides(box, width, edge)})


def beside_time(track: Track, rules: Rules) -> float:
    """How long a vehicle that leaves the picture at the side stays beside us: `passing` times its time-to-contact
    there, from `beside` to `beside_max`. A vehicle we pass leaves the picture a few metres ahead of the camera and
    must still travel past our whole car: in the simulator it leaves 5-6 m ahead of the camera with 13 m (a car)
    to 20 m (a truck) to go, 2.6 to 3.5 times as far. One not coming closer (pulling away: it overtook us; or not
    measured yet), `beside`."""
    if rules.beside_max <= rules.beside or track.growth <= 0:
        return rules.beside
    return float(np.clip(rules.passing * track.height / track.growth, rules.beside, rules.beside_max))


def _threat(boxes: np.ndarray, tracks: list[Track], width: int, height: int,
            rules: Rules) -> tuple[np.ndarray | None, float, bool, np.ndarray | None]:
    """Among the boxes in the corridor: the threat (shortest time-to-contact, or the first close one), that time,
    whether one is close, and the closest box on the road (the lowest bottom edge)."""
    threat, ttc_min, close, ahead = None, np.inf, False, None
    for box, track in zip(boxes, tracks, strict=True):
        if not in_corridor(box, width, height, rules):
            continue
        if ahead is None or box[3] > ahead[3]:
            ahead = box
        tall = (box[3] - box[1]) / height
        ttc = track.height / track.growth if track.growth > 1e-6 and tall >= rules.min_height else np.inf
        # Close: tall, seen more than once (one frame's box may be a false one) and not pulling away from us.
        is_close = tall >= rules.close_height and len(track.history) >= 2 and track.growth >= 0
        if ttc < ttc_min or (is_close and not close):
            threat, ttc_min, close = box, ttc, close or is_close
    return threat, ttc_min, close, ahead


def _lane_change(roles: dict[str, bool], state: FusionState, boxes: np.ndarray, tracks: list[Track],
                 class_names: list[str], size: tuple[int, int], now: float,
                 rules: Rules) -> tuple[str, dict] | None:
    """The side to steer to, and why, while a lane change holds: started for the closest static obstacle in our
    corridor (seen in 3 frames, not yet close) when the lane beside it is free, and held `lane_change` s."""
    if rules.lane_change <= 0:
        return None
    if state.lane is not None and state.lane[0] >= now:
        return state.lane[1], state.lane[2]
    state.lane = None
    width, height = size
    ahead = [box for box, track in zip(boxes, tracks, strict=True) if class_names[int(box[5])] in rules.static
             and in_corridor(box, width, height, rules) and len(track.history) >= 3
             and (box[3] - box[1]) / height < rules.close_height]
    if not ahead:
        return None
    obstacle = max(ahead, key=lambda b: b[3])  # the closest: the lowest bottom edge
    side = _free_lane(obstacle, boxes, roles, state, class_names, size, now, rules)
    if side is None:
        return None
    why = {"height": round(float((obstacle[3] - obstacle[1]) / height), 3),
           "x": round(float((obstacle[0] + obstacle[2]) / 2 / width), 3)}
    state.lane = (now + rules.lane_change, side, why)
    return side, why


def _lanes(box: np.ndarray, width: int, height: int, rules: Rules) -> tuple[float, float, float]:
    """Where a box stands across the road, in lanes from the middle of the frame (its left and right edges), and
    its depth (0 at the horizon, 1 at the bottom of the frame): a lane is `lane` x depth of the frame wide."""
    depth = max((min(float(box[3]), height) / height - rules.horizon) / (1 - rules.horizon), 1e-3)
    scale = rules.lane * depth * width
    return (float(box[0]) - width / 2) / scale, (float(box[2]) - width / 2) / scale, depth


def _free_lane(obstacle: np.ndarray, boxes: np.ndarray, roles: dict[str, bool], state: FusionState,
               class_names: list[str], size: tuple[int, int], now: float, rules: Rules) -> str | None:
    """The side the network steers to, when the lane there beside the obstacle is free: nothing beside us on that
    side, no vehicle overlapping the lane and no static obstacle standing in it, up to twice the obstacle's
    distance. Only the network's side: the rules do not know where the road ends (choosing a side themselves,
    from the leftmost or rightmost lane, drove off the road: 5.9 s per episode against 1.95 on seeds 3000-3019)."""
    left, right, depth = _lanes(obstacle, *size, rules)
    centre = (left + right) / 2
    beside = _beside(state, now)
    for side in [side for side in ("left", "right") if roles[side]]:  # the network's: it sees where the road goes
        lane = (centre - 1.5, centre - 0.5) if side == "left" else (centre + 0.5, centre + 1.5)
        if side not in beside and not any(_in_lane(box, lane, depth, class_names, size, rules) for box in boxes
                                          if not np.array_equal(box, obstacle)):
            return side
    return None


def _in_lane(box: np.ndarray, lane: tuple[float, float], depth: float, class_names: list[str],
             size: tuple[int, int], rules: Rules) -> bool:
    """Whether a box takes the `lane` (in lanes from the middle, `_lanes`) up to twice as far as `depth`: a
    vehicle overlapping it, a static obstacle standing in it (a cone on the lane's line does not close it)."""
    left, right, box_depth = _lanes(box, *size, rules)
    if box_depth < 0.5 * depth:  # more than twice as far
        return False
    if class_names[int(box[5])] in rules.static:
        return lane[0] < (left + right) / 2 < lane[1]
    return left < lane[1] and right > lane[0]


def _brake_or_lift(out: dict[str, bool], state: FusionState, threat: np.ndarray | None, ttc_min: float,
                   close: bool, boxes: np.ndarray, size: tuple[int, int], now: float, rules: Rules,
                   numbers: dict) -> tuple[dict[str, bool], list[Hit]]:
    """Brake (steering to the free side) for a threat that is close or due soon, lift for one due later; each
    override holds `hold` s."""
    if threat is not None and (ttc_min < rules.ttc_brake or close):
        state.until["brake"] = now + rules.hold
        if rules.steer_around:
            state.steer = _free_side(threat, boxes, *size, rules) or state.steer
    elif threat is not None and ttc_min < rules.ttc_lift:
        state.until["lift"] = now + rules.hold
    hits: list[Hit] = []
    if state.until.get("brake", -np.inf) >= now:
        out["throttle"], out["brake"] = False, True
        hits.append(Hit("brake_for_obstacle", "release throttle, press brake", numbers))
        if state.steer is not None:
            out["left"], out["right"] = state.steer == "left", state.steer == "right"
            hits.append(Hit("steer_to_free_side", f"steer {state.steer}", numbers))
    else:
        state.steer = None
        if state.until.get("lift", -np.inf) >= now:
            out["throttle"] = False
            hits.append(Hit("lift_for_obstacle", "release throttle", numbers))
    return out, hits


def _way_around(roles: dict[str, bool], state: FusionState, ahead: np.ndarray | None, boxes: np.ndarray,
                size: tuple[int, int], now: float, rules: Rules) -> str | None:
    """Which way to drive around what the car stands at: the network's, else away from the closest box ahead to
    its free side, else the wider one; never into a vehicle beside us (None: no free way)."""
    width, height = size
    side = "left" if roles["left"] else "right" if roles["right"] else None
    if side is None and ahead is not None:  # what we stand at: standing, nothing grows, no time-to-contact names it
        side = _free_side(ahead, boxes, width, height, rules) or (
            "left" if (ahead[0] + ahead[2]) / 2 > width / 2 else "right")
    beside = _beside(state, now)
    if side in beside:  # not into a vehicle beside us: the other way, if free
        other = "right" if side == "left" else "left"
        side = other if other not in beside else None
    return side


def _go_around(out: dict[str, bool], side: str | None, numbers: dict) -> tuple[dict[str, bool], list[Hit]]:
    out["throttle"], out["brake"] = True, False
    if side is not None:
        out["left"], out["right"] = side == "left", side == "right"
    return out, [Hit("go_around", "press throttle" + (f", steer {side}" if side else ""), numbers)]


def _free_side(threat: np.ndarray, boxes: np.ndarray, width: int, height: int, rules: Rules) -> str | None:
    """The side of the threat with no other obstacle in the lane-wide band next to it (left preferred when
    both are free and the threat is right of centre, and the other way round)."""
    w = threat[2] - threat[0]
    sides = {"left": (threat[0] - 1.5 * w, threat[0]), "right": (threat[2], threat[2] + 1.5 * w)}
    free = []
    for side, (lo, hi) in sides.items():
        if (side == "left" and lo < 0) or (side == "right" and hi > width):
            continue
        blocked = any(b[0] < hi and b[2] > lo and b[3] > threat[1] for b in boxes if not np.array_equal(b, threat))
        if not blocked:
            free.append(side)
    if not free:
        return None
    centre = (threat[0] + threat[2]) / 2
    return min(free, key=lambda s: (s == "left") == (centre < width / 2))
