"""The driver's pure logic: key decoding (thresholds, hysteresis, hold, exclusivity) and crash prevention."""

from __future__ import annotations

import re

import numpy as np
import pytest

from crew2.drive.decoder import DecoderConfig, KeyDecoder
from crew2.drive.fusion import FusionState, Rules, fuse, in_corridor, picture_motion, scenery
from crew2.errors import Crew2Error
from crew2.io.picture import picture

KEYS = ["w", "a", "s", "d"]
ROLES = {"throttle": "w", "left": "a", "brake": "s", "right": "d"}
NAMES = ["car", "truck", "cone", "barrier"]
W, H = 256, 144


def decoder(hold: float = 0.0, hysteresis: float = 0.1) -> KeyDecoder:
    return KeyDecoder(KEYS, ROLES, [0.5, 0.5, 0.5, 0.5], DecoderConfig(hysteresis=hysteresis, min_hold=hold))


def test_thresholds_and_hysteresis():
    d = decoder()
    assert d(np.array([0.55, 0.2, 0.1, 0.1]), 0.0).tolist() == [True, False, False, False]
    assert d(np.array([0.45, 0.2, 0.1, 0.1]), 0.1)[0], "held above threshold - hysteresis"
    assert not d(np.array([0.39, 0.2, 0.1, 0.1]), 0.2)[0], "released below it"
    assert not d(np.array([0.45, 0.2, 0.1, 0.1]), 0.3)[0], "not pressed again below the threshold"


def test_minimum_hold_time():
    d = decoder(hold=0.2)
    assert d(np.array([0.9, 0, 0, 0]), 0.0)[0]
    assert d(np.array([0.0, 0, 0, 0]), 0.1)[0], "held: changed 0.1 s ago"
    assert not d(np.array([0.0, 0, 0, 0]), 0.25)[0]


def test_exclusive_roles_the_stronger_wins():
    d = decoder()
    assert d(np.array([0.9, 0.6, 0.95, 0.8]), 0.0).tolist() == [False, False, True, True]  # brake 0.45 > 0.4
    d = decoder()
    assert d(np.array([0.9, 0.9, 0.1, 0.6]), 0.0).tolist() == [True, True, False, False]


def det(x1, y1, x2, y2, score=0.9, cls=0) -> list[float]:
    return [x1, y1, x2, y2, score, cls]


DRIVING = {"throttle": True, "brake": False, "left": False, "right": False}


def run(frames: list[list[list[float]]], dt: float = 0.05, rules: Rules | None = None, keys=None,
        motion: float | list[float] | None = 5.0):
    """Feed a sequence of detection lists; return the keys and hits after each frame. `motion`: how much the
    picture moves every frame (5: driving; 0: the car stands), or a list of it, one per frame; `keys` the
    network's keys by role, or a list of them, one per frame."""
    state, rules = FusionState(), rules or Rules()
    motions = motion if isinstance(motion, list) else [motion] * len(frames)
    roles = keys if isinstance(keys, list) else [keys or DRIVING] * len(frames)
    out = []
    for i, (boxes, m, r) in enumerate(zip(frames, motions, roles, strict=True)):
        out.append(fuse(dict(r), np.array(boxes, np.float32).reshape(-1, 6), NAMES, (W, H), state, i * dt, rules, m))
    return out


def approaching(start: float, rate: float, n: int, centre: float = 128, ratio: float = 1.3) -> list[list[list[float]]]:
    """A car ahead whose box grows by `rate` per second from height `start` (px), bottom on the road."""
    frames = []
    for i in range(n):
        h = start * (1 + rate * i * 0.05)
        bottom = 60 + 1.4 * h
        frames.append([det(centre - ratio * h / 2, bottom - h, centre + ratio * h / 2, bottom)])
    return frames


def test_fast_approach_in_the_corridor_brakes():
    keys, hits = run(approaching(10, 1.5, 8))[-1]
    assert keys["brake"] and not keys["throttle"]
    brake = next(h for h in hits if h.rule == "brake_for_obstacle")
    assert 0 < brake.numbers["ttc_s"] < 1.2


def test_slow_approach_only_lifts():
    keys, hits = run(approaching(10, 0.6, 8), rules=Rules(ttc_lift=2.5))[-1]
    assert not keys["throttle"] and not keys["brake"]
    assert [h.rule for h in hits] == ["lift_for_obstacle"] and 1.2 < hits[0].numbers["ttc_s"] < 2.5


def test_steady_car_ahead_and_cars_beside_are_left_alone():
    assert run(approaching(12, 0.0, 8))[-1] == (DRIVING, [])  # same speed as us: no growth, far
    beside = [[det(2, 60, 40, 90)] for _ in range(8)]  # in the next lane, left edge: outside the corridor
    assert run(beside)[-1] == (DRIVING, [])
    assert not in_corridor(np.array([2, 60, 40, 90]), W, H, Rules())
    passing = [[det(0, 70, 90, 140)] for _ in range(8)]  # tall, its edge across the middle, its centre not
    assert run(passing)[-1] == (DRIVING, [])


def test_jitter_of_a_far_box_is_not_a_crash():
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(100):  # a truck 10 px high in the corridor, its box jittering by a pixel every frame
        top, bottom = 70 + rng.integers(-1, 2), 80 + rng.integers(-1, 2)
        frames.append([det(122, top, 134, bottom, cls=1)])
    results = run(frames)
    assert not any(keys["brake"] for keys, _ in results)
    assert sum(keys == DRIVING for keys, _ in results) >= 90, "pure jitter may look like growth, rarely"
    assert run(approaching(10, 1.5, 5))[-1] == (DRIVING, []), "growth needs most of `ttc_window` of track"


def test_a_box_seen_once_or_cut_by_the_frame_side_is_not_braked_for():
    ahead = det(100, 70, 156, 130)  # tall and straight ahead: close
    assert run([[ahead]])[-1] == (DRIVING, []), "one frame's box may be a false detection"
    assert run([[ahead], [ahead]])[-1][0]["brake"]
    beside = det(0, 20, 120, 144)  # a car overtaking us, cut by the frame's left edge: its middle is not x=60
    assert not in_corridor(np.array(beside), W, H, Rules())
    assert run([[beside] for _ in range(8)])[-1] == (DRIVING, [])


def test_a_close_car_pulling_away_is_not_braked_for():
    receding = approaching(60, -0.2, 24)  # 60 px high (close) and shrinking: faster than us
    assert all(keys["brake"] for keys, _ in run(receding)[1:4]), "close: braked for until it is seen to recede"
    assert run(receding)[-1] == (DRIVING, [])
    assert run(approaching(60, 0.0, 24))[-1][0]["brake"], "close and not receding: braked for"


def test_no_steering_towards_a_vehicle_beside_us():
    passing = [[det(0, 30, 70, 120)] for _ in range(5)] + [[] for _ in range(40)]  # leaves the frame on the left
    left = {**DRIVING, "left": True}
    results = run(passing, rules=Rules(beside=1.0), keys=left)
    assert all(keys == DRIVING and [h.rule for h in hits] == ["keep_clear"] for keys, hits in results[:24]), \
        "blocked while it is in view and for `beside` s after it left"
    assert results[-1] == (left, []), "then the network steers again"
    assert run(passing, rules=Rules(beside=1.0), keys={**DRIVING, "right": True})[0][0]["right"], "away: fine"
    assert run(passing, rules=Rules(beside=0.0), keys=left)[10] == (left, []), "0: only while in view"


def test_a_vehicle_we_pass_counts_as_beside_us_once_it_nears_the_frames_side():
    """A car we overtake leaves the picture before it is level with us: its box vanishes short of the frame's side.
    With `beside_edge`, a tall box whose outer edge is that close to the side counts as beside us, and keeps
    counting for `beside` s after it vanished; a tall box further in (the next lane, ahead) does not."""
    passing = [[det(15, 30, 85, 120)] for _ in range(5)] + [[] for _ in range(30)]  # outer edge 6% from the left
    left = {**DRIVING, "left": True}
    results = run(passing, rules=Rules(beside=1.0, beside_edge=0.1), keys=left)
    assert all(keys == DRIVING and [h.rule for h in hits] == ["keep_clear"] for keys, hits in results[:24])
    assert results[-1] == (left, [])
    assert run(passing, rules=Rules(beside=1.0), keys=left)[0] == (left, []), "0: only boxes cut by the side"
    ahead = [[det(30, 60, 70, 100)] for _ in range(5)] + [[] for _ in range(5)]  # 12% in: a car in the next lane
    assert all(k == left for k, _ in run(ahead, rules=Rules(beside=1.0, beside_edge=0.1), keys=left))


def test_close_obstacle_brakes_even_without_growth_and_steers_to_the_free_side():
    ahead = [[det(110, 80, 150, 125, cls=3), det(20, 80, 60, 125)] for _ in range(3)]  # car on the left: go right
    assert {h.rule for h in run(ahead)[-1][1]} == {"brake_for_obstacle"}, "steering around is off by default"
    keys, hits = run(ahead, rules=Rules(steer_around=True))[-1]
    assert keys["brake"] and keys["right"] and not keys["left"]
    assert {h.rule for h in hits} == {"brake_for_obstacle", "steer_to_free_side"}


def test_stopped_at_an_obstacle_goes_around_it_then_brakes_again_if_still_needed():
    rules = Rules(stuck=2.0, escape=1.0)
    cone = [[det(100, 80, 130, 125, cls=2), det(150, 80, 190, 125)] for _ in range(100)]  # still: we stopped
    results = run(cone, rules=rules, motion=0.0)  # 0.05 s a frame, standing
    assert all(keys["brake"] for keys, _ in results[1:40]), "brakes first (once the box is seen twice)"
    keys, hits = results[41]
    assert keys["throttle"] and not keys["brake"] and keys["left"] and not keys["right"], "the car is on the right"
    assert [h.rule for h in hits] == ["go_around"]
    assert all(keys["throttle"] and keys["left"] for keys, _ in results[41:60]), "for `escape` seconds"
    assert results[61][0]["brake"], "then the obstacle rules again"
    keys, hits = run(cone, rules=rules, keys={**DRIVING, "right": True}, motion=0.0)[45]
    assert keys["right"] and not keys["left"], "the side the network steers to, when it steers"


def test_a_network_that_stands_still_is_made_to_pull_away():
    idle = {**DRIVING, "throttle": False, "brake": True}  # braking at a standstill, nothing ahead
    nothing = [[] for _ in range(50)]
    results = run(nothing, rules=Rules(stuck=2.0), keys=idle, motion=0.0)
    assert results[39] == (idle, [])
    keys, hits = results[40]
    assert keys == DRIVING and [h.rule for h in hits] == ["go_around"], "throttle, the network's steering"
    assert run(nothing, rules=Rules(stuck=0), keys=idle, motion=0.0)[-1] == (idle, []), "0: off"
    # Braking or coasting while the picture moves (a curve, a slower car far ahead) is the network's call.
    assert all(out == (idle, []) for out in run(nothing, rules=Rules(stuck=2.0), keys=idle, motion=3.0))
    assert all(out == (idle, []) for out in run(nothing, rules=Rules(stuck=2.0), keys=idle, motion=None))
    # Motion that stops being measurable (a truck fills the view) is unknown, not the last still readings.
    assert all(out == (idle, []) for out in run(nothing, rules=Rules(stuck=2.0), keys=idle,
                                                 motion=[0.0] * 10 + [None] * 40))
    # Traffic passing a car that stands moves part of the picture for a few frames: it still stands.
    outs = run(nothing, rules=Rules(stuck=2.0), keys=idle, motion=[0.0] * 10 + [2.0, 2.5] + [0.0] * 38)
    assert [h.rule for h in outs[40][1]] == ["go_around"]


@pytest.mark.parametrize("shape", [(1080, 1920, 3), (648, 1152, 3), (1368, 2432, 3), (648, 1920, 3), (1080, 1920, 4),
                                   (360, 640, 3), (720, 1280, 3), (768, 1366, 3)])
def test_a_frame_is_shrunk_to_the_pixels_opencv_gives(shape):
    """Frames the model sees in drive are the pixels recordings hold (OpenCV's INTER_AREA), whichever way they are
    computed: 1080p, 4.5, 9.5 (sums past 16 bits) and one axis 7.5 the other 4.5 (summed in numpy); 2.5, whole
    scales and odd ones (OpenCV)."""
    import cv2

    from crew2.io.picture import shrink

    rng = np.random.default_rng(sum(shape))
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    frame[: shape[0] // 2, : shape[1] // 3] = 255  # saturated and flat parts, where sums reach their largest
    frame[shape[0] // 2:, : shape[1] // 3] = 0
    want = cv2.resize(frame, (W, H), interpolation=cv2.INTER_AREA)
    got = shrink(frame, (W, H))
    assert got.dtype == np.uint8 and got.shape == want.shape and np.array_equal(got, want)
    assert np.array_equal(shrink(frame[:, :, :3], (W, H)), want[:, :, :3]), "a strided view, as BGRA's RGB part"


def test_picture_motion_tells_a_standing_car_from_a_moving_one():
    from crew2.sim.env import SimEnv
    from crew2.sim.world import SimConfig

    env = SimEnv(SimConfig(traffic=0, obstacles=0))
    frames = [env.reset(seed=3)[0]]
    for throttle in [True] * 40 + [False] * 3:  # 2 s of throttle: about 60 km/h
        frames.append(env.step(env.action_of(throttle, False, False, False))[0])
    seen = [picture(f) for f in frames]
    assert picture_motion(seen[0], seen[0]) == 0.0
    assert picture_motion(seen[-1], seen[-2], seen[-3]) > 1.0, "at speed the road moves"
    standing = SimEnv(SimConfig(traffic=0, obstacles=0))
    still = [standing.reset(seed=3)[0], standing.step(standing.action_of(False, True, False, False))[0]]
    assert picture_motion(picture(still[1]), picture(still[0])) < Rules().still, "held on the brake: it stands"
    shaken = [seen[-1], seen[-2], seen[-1]]  # pinned: flipping between two pictures every frame
    assert picture_motion(shaken[2], shaken[1]) > Rules().still
    assert picture_motion(shaken[2], shaken[1], shaken[0]) == 0.0, "against two frames back it stands"


def test_traffic_passing_a_standing_car_does_not_read_as_moving():
    """Cars streaming past one that stands change the picture; outside their boxes nothing moves. Measured over
    crash prevention's window (a median over 0.5 s), the whole picture often reads as moving, the scenery never."""
    from crew2.sim.env import SimEnv
    from crew2.sim.world import SimConfig

    env = SimEnv(SimConfig(traffic=3.0, obstacles=0))
    env.reset(seed=2)
    seen = []
    for _ in range(100):  # 5 s held on the brake from the start: the car stands
        frame = env.step(env.action_of(False, True, False, False))[0]
        truth = env.frame.truth()  # ground-truth boxes as detections: x1, y1, x2, y2, score 1, class
        seen.append((picture(frame), scenery(np.insert(truth, 4, 1.0, axis=1), (256, 144), Rules().min_score)))
    assert env.world.player.v == 0.0
    whole = [picture_motion(p, seen[i - 1][0], seen[i - 2][0]) for i, (p, _) in enumerate(seen) if i >= 2]
    outside = [picture_motion(p, seen[i - 1][0], seen[i - 2][0], keep=k & seen[i - 1][1] & seen[i - 2][1])
               for i, (p, k) in enumerate(seen) if i >= 2]
    window = 10  # frames in 0.5 s
    def medians(m): return [np.median(m[i - window:i]) for i in range(window, len(m) + 1)]
    assert sum(m >= Rules().still for m in medians(whole)) > 10, "traffic moves the picture"
    assert max(medians(outside)) < Rules().still, "but not the scenery"


def test_scenery_leaves_out_the_boxes_of_confident_detections():
    keep = scenery(np.array([[0, 72, 128, 144, 0.9, 0], [200, 100, 250, 140, 0.1, 0]]), (256, 144), 0.35)
    assert keep.shape == (18, 64)
    assert not keep[:, :33].any(), "the left half of the road under a confident box, and a pixel of margin"
    assert keep[:, 33:].all(), "the box scored under min_score counts for nothing"
    low = scenery(np.array([[128, 100, 192, 120, 0.9, 0]]), (256, 144), 0.35)  # picture rows 25-30, columns 32-48
    assert not low[6:13, 31:49].any() and low[:6].all() and low[13:].all() and low[:, :31].all() and low[:, 49:].all()
    odd = np.array([[np.nan, 80, 100, 120, 0.9, 0], [-50, -20, -30, 300, 0.9, 0], [250, 0, 400, 200, 0.9, 0]])
    assert scenery(odd, (256, 144), 0.35)[:, 1:61].all(), "no number: left out; off the frame: clipped to it"
    everything = scenery(np.array([[0, 0, 256, 144, 0.9, 0]]), (256, 144), 0.35)
    assert picture_motion(np.zeros((18, 64), np.uint8), np.ones((18, 64), np.uint8), keep=everything) is None


def test_a_vehicle_we_pass_stays_beside_us_until_it_is_past():
    """With `beside_max`, a vehicle that left the picture at the side while coming closer counts as beside us for
    `passing` times its time-to-contact as it left, from `beside` up to `beside_max`: one we pass slowly for longer
    than one we pass fast; one keeping pace for `beside`."""
    left = {**DRIVING, "left": True}

    def last_blocked(heights, rules: Rules) -> int:
        frames = [[det(0, 40, 60, 40 + h)] for h in heights] + [[] for _ in range(100)]  # cut by the left side
        return max(i for i, (keys, hits) in enumerate(run(frames, rules=rules, keys=left))
                   if not keys["left"] and [h.rule for h in hits] == ["keep_clear"])

    slow, fast = np.linspace(60, 100, 10), np.linspace(60, 100, 8)  # 88.9 and 114.3 px/s; gone after 0.45 / 0.35 s
    rules = Rules(beside=0.6, beside_max=3.0, passing=2.0)
    assert last_blocked(slow, rules) in (53, 54), "time-to-contact 100 / 88.9 = 1.125 s: beside 2.25 s more"
    assert last_blocked(fast, rules) in (41, 42), "0.875 s: beside 1.75 s more"
    assert last_blocked([80] * 10, rules) in (20, 21), "not coming closer: `beside`"
    assert last_blocked(slow, Rules(beside=0.6, beside_max=1.5, passing=2.0)) in (38, 39), "at most `beside_max`"
    assert last_blocked(slow, Rules(beside=0.6)) in (20, 21), "beside_max 0 (the default): `beside` for all"


def test_going_around_never_steers_into_a_vehicle_beside_us():
    rules = Rules(stuck=1.0, beside=0.6)
    cone = det(100, 80, 130, 125, cls=2)  # close ahead, right of centre: the way around is left...
    left_car = det(0, 30, 60, 130)  # ...but a car is passing on the left
    results = run([[cone, left_car] for _ in range(40)], rules=rules, motion=0.0)
    keys, hits = results[25]
    assert [h.rule for h in hits][:1] == ["go_around"] and keys["right"] and not keys["left"], "the other way"
    both = det(200, 30, 256, 130)  # and another on the right: boxed in behind something close, so it waits
    results = run([[cone, left_car, both] for _ in range(40)], rules=rules, motion=0.0)
    assert all(keys["brake"] and not keys["throttle"] for keys, _ in results[1:])


def test_standing_behind_an_obstacle_that_is_not_close_goes_around_it_not_into_it():
    idle = {**DRIVING, "throttle": False}  # the network presses nothing: it stopped short of a cone
    cone = det(112, 100, 128, 118, cls=2)  # in the corridor, left of centre, 18 px high: not "close"
    keys, hits = run([[cone] for _ in range(50)], rules=Rules(stuck=2.0), keys=idle, motion=0.0)[41]
    assert [h.rule for h in hits] == ["go_around"]
    assert keys["throttle"] and keys["right"] and not keys["left"], "away from it, not straight on"
    cars = [det(0, 30, 60, 130), det(200, 30, 256, 130)]  # boxed in by vehicles beside us: it waits
    results = run([[cone, *cars] for _ in range(50)], rules=Rules(stuck=2.0), keys=idle, motion=0.0)
    assert not any(keys["throttle"] for keys, _ in results)


def test_an_obstacle_still_closing_in_is_never_driven_around():
    frames = []
    for i in range(100):  # a car 12 m ahead, closing at 1.5 m/s: close, and still closing 5 s later
        h = 400 / (12 - 1.5 * i * 0.05)
        frames.append([det(128 - 0.65 * h, 130 - h, 128 + 0.65 * h, 130)])
    results = run(frames, rules=Rules(stuck=2.0), motion=0.0)
    assert all(keys["brake"] for keys, _ in results[20:]), "braking all along"
    assert not any(h.rule == "go_around" for _, hits in results for h in hits)


def test_override_holds_then_releases():
    frames = approaching(10, 1.5, 8) + [[] for _ in range(12)]  # the obstacle vanishes
    results = run(frames)
    assert results[9][0]["brake"], "held for `hold` after the cause is gone"
    assert results[-1] == (DRIVING, []), "then the network's keys again"


def test_low_confidence_and_other_classes_are_ignored():
    frames = [[det(110, 80, 170, 125, score=0.2)] for _ in range(3)]
    assert run(frames)[-1] == (DRIVING, [])
    rules = Rules(classes=("car",))
    frames = [[det(110, 80, 170, 125, cls=2)] for _ in range(3)]
    assert run(frames, rules=rules)[-1] == (DRIVING, [])


def test_rules_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("ttc_brake: 2.0\nhold: 0.1\n")
    assert Rules.load(path).ttc_brake == 2.0 and Rules.load(path).corridor == Rules().corridor
    assert Rules.load() == Rules(), "the shipped file says what the defaults say"
    path.write_text("ttc_brakes: 2.0\n")
    with pytest.raises(Crew2Error, match="unknown rule setting"):
        Rules.load(path)


@pytest.mark.parametrize("text, message", [
    ("ttc_brake: fast\n", "ttc_brake: 'fast' is not a number"),  # loaded, then failed at the first obstacle
    ("ttc_brake: .nan\n", "ttc_brake: nan is not a number"),
    ("hold: -1\n", "hold: -1 is not a number >= 0"),
    ("corridor: 3\n", "corridor: 3 is not a number from 0 to 1"),
    ("steer_around: maybe\n", "steer_around: 'maybe' is not true or false"),
    ("- ttc_brake\n", "not a rules file"),
])
def test_a_rules_file_that_cannot_work_is_refused_when_loaded(text, message, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(Crew2Error, match=re.escape(message)):
        Rules.load(path)


CONE_AHEAD = det(125, 69, 131, 77, cls=2)  # a cone in our lane, 8 px tall, ~30 m out
CAR_LEFT_LANE = det(65, 62, 93, 77)  # a car in the lane to the left, as far as the cone
CAR_RIGHT_LANE = det(163, 62, 191, 77)
CAR_BESIDE_RIGHT = det(230, 60, 256, 140)  # tall and cut by the frame's right side: beside us


def test_a_static_obstacle_ahead_with_a_free_lane_beside_it_is_passed_by_changing_lanes():
    rules, right = Rules(lane_change=0.8), {**DRIVING, "right": True}
    results = run([[CONE_AHEAD, CAR_LEFT_LANE]] * 30, rules=rules, keys=right)
    assert all(not hits for _, hits in results[:2]), "seen in three frames first"
    keys, hits = results[2]
    assert keys["right"] and not keys["left"] and keys["throttle"] and not keys["brake"], "the right lane is free"
    assert [h.rule for h in hits] == ["change_lane"] and hits[0].numbers == {"height": 0.056, "x": 0.5}
    held = run([[CONE_AHEAD, CAR_LEFT_LANE]] * 30, rules=rules, keys=[right] * 3 + [DRIVING] * 27)
    assert all(k["right"] for k, _ in held[2:18]), "held for lane_change seconds after the network lets go"
    assert not held[19][0]["right"], "then the network's keys again"
    assert not any(hits for _, hits in run([[CONE_AHEAD]] * 10, rules=rules)), (
        "only to the side the network steers to: it sees where the road goes, the rules do not")
    assert not any(hits for _, hits in run([[CONE_AHEAD]] * 10, keys=right)), "off unless the rules turn it on"


@pytest.mark.parametrize("others", [[CAR_LEFT_LANE, CAR_RIGHT_LANE], [CAR_LEFT_LANE, CAR_BESIDE_RIGHT]],
                         ids=["both lanes taken", "a vehicle beside us"])
def test_no_lane_change_into_a_taken_lane_or_towards_a_vehicle_beside_us(others):
    for side in ("left", "right"):
        results = run([[CONE_AHEAD, *others]] * 10, rules=Rules(lane_change=0.8), keys={**DRIVING, side: True})
        assert not any(h.rule == "change_lane" for _, hits in results for h in hits)
