"""crew2 drive put together: --record, the --show overlay, and the closed-loop evaluation against the autopilot."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from crew2.data.session import Session
from crew2.drive.evaluate import compare, model_episodes, parse_seeds, summary
from crew2.drive.fusion import Hit, Rules
from crew2.drive.loop import FrameLog
from crew2.drive.overlay import CLASS_COLOURS, GREEN, RED, draw
from crew2.drive.run import DriveConfig, box_rules, control_rate, drive
from crew2.errors import Crew2Error
from crew2.model.checkpoint import DetectorTraining
from crew2.model.engine import Prediction
from crew2.sim.world import SimConfig
from tests.drive_helpers import INFO, ScriptedEngine

SIM = SimConfig(width=64, height=36, traffic=0, obstacles=0, track_km=2.0, max_seconds=4.0)


class WallAheadEngine(ScriptedEngine):
    """Says "throttle" and sees a close car straight ahead in every frame."""

    def __call__(self, frames: np.ndarray) -> list[Prediction]:
        box = np.array([[22, 12, 42, 30, 0.9, 0]], np.float32)  # half the frame high, in the middle
        return [Prediction(np.array([0.9, 0.1, 0.1, 0.1]), box)]


def test_record_while_driving_stores_what_the_model_saw_and_sent(tmp_path):
    log, session = tmp_path / "run.jsonl", tmp_path / "driven.h5"
    cfg = DriveConfig(weights=Path("scripted"), source="sim", sim=SIM, countdown=0, seconds=2.0, log=log,
                      record=session)
    result = drive(cfg, engine=ScriptedEngine())
    frames = [json.loads(line) for line in log.read_text().splitlines()]
    s = Session(session)
    assert s.meta.driver == "model" and s.meta.keys == INFO.keys
    assert len(s) == result.stats.steps == len(frames) == 40
    pressed = [{k for k, on in zip(s.meta.keys, row, strict=True) if on} for row in s.keys()]  # noqa: SIM118 (a Session, not a dict)
    assert pressed == [set(f["pressed"]) for f in frames] and pressed[5] == {"w", "d"}
    assert s.frame(0).shape == (36, 64, 3) and s.frame(0).std() > 10, "a picture of the road, not a blank"
    assert np.allclose(np.diff(s.times()), 1 / 20)


def test_expert_labels_are_the_autopilots_keys_where_the_model_drove(tmp_path):
    """DAgger: the model drives (W and D held: it leaves its lane), the session stores what the autopilot
    would press in each of those states, with their ground-truth boxes; replaying the keys sent rebuilds them."""
    from crew2.data.session import SIM_TRUTH
    from crew2.detection.simtruth import annotate_from_sim
    from crew2.sim.autopilot import Autopilot
    from crew2.sim.env import SimEnv
    from crew2.sim.world import CLASSES

    sim = SimConfig(width=64, height=36, traffic=1.0, obstacles=1.0, track_km=2.0)
    log, session = tmp_path / "run.jsonl", tmp_path / "dagger.h5"
    drive(DriveConfig(weights=Path("scripted"), source="sim", sim=sim, countdown=0, seconds=3.0, log=log,
                      record=session, expert_labels=True, seed=6), engine=ScriptedEngine())
    sent = [set(json.loads(line)["pressed"]) for line in log.read_text().splitlines()]
    s = Session(session)
    assert s.meta.driver == "model" and s.meta.sim["labels"] == "expert" and s.meta.class_names == list(CLASSES)
    env, expert = SimEnv(sim), Autopilot(commit=False)
    env.reset(seed=6)
    for i, pressed in enumerate(sent):
        want = env.action_of(*expert.act(env.world))
        np.testing.assert_array_equal(s.keys()[i], want, err_msg=f"frame {i}")
        np.testing.assert_allclose(s.boxes(i)[:, :4], env.frame.boxes, atol=1e-4)
        env.step(np.array([k in pressed for k in env.profile.keys], np.int8))
    labels = [{k for k, on in zip(s.meta.keys, row, strict=True) if on} for row in s.keys()]  # noqa: SIM118 (a Session)
    assert labels != sent and any(labels[i] != sent[i] for i in range(len(sent)) if "d" in sent[i]), \
        "the expert steers back where the model holds D"
    assert (s.box_sources() == SIM_TRUTH).all() and sum(len(s.boxes(i)) for i in range(len(s))) > 0
    with pytest.raises(Crew2Error, match="driven by the model"):
        annotate_from_sim(session)
    with pytest.raises(Crew2Error, match="--expert-labels needs"):
        DriveConfig(weights=Path("scripted"), source="sim", expert_labels=True)


def test_closed_loop_eval_tells_drivers_apart():
    seeds = parse_seeds("7", 1)
    results = compare(ScriptedEngine(), Path("scripted"), seeds, SIM)  # W and D held: off the road to the right
    assert set(results) == {"autopilot", "model", "model + fusion"}
    means = summary(results)
    assert means["autopilot"]["distance_vs_autopilot"] == 1.0 and means["autopilot"]["offroad_s"] == 0
    assert means["model"]["offroad_s"] > 0.5, "holding D runs the car off the road"
    assert all(r["seed"] == 7 and r["time_s"] == pytest.approx(4.0, abs=0.06) for rs in results.values() for r in rs)


def test_fusion_changes_the_closed_loop_when_it_brakes():
    results = compare(WallAheadEngine(), Path("scripted"), [3], SIM)
    means = summary(results)
    assert means["model"]["distance_m"] > 30, "without fusion the model holds the throttle"
    assert means["model + fusion"]["distance_m"] < 0.2 * means["model"]["distance_m"], "with fusion it brakes"


BOX_RULES = {"brake_for_obstacle", "lift_for_obstacle", "steer_to_free_side", "keep_clear"}
TRAINED, UNTRAINED = DetectorTraining(12_000, 0.31), DetectorTraining(0, None)


def rules_fired(engine: ScriptedEngine, setting: str = "auto") -> Counter:
    """Frames each crash-prevention rule fired in, over one 4 s episode of `SIM`."""
    fired: Counter = Counter()
    drive(DriveConfig(weights=Path("scripted"), source="sim", sim=SIM, countdown=0, box_rules=setting),
          engine=engine, on_frame=lambda entry: fired.update({h.rule for h in entry.hits}))
    return fired


@pytest.mark.parametrize(("detector", "setting", "boxes"), [
    (TRAINED, "auto", True), (None, "auto", True),  # not recorded (made before crew2 did): as before
    (UNTRAINED, "auto", False), (DetectorTraining(5_000, 0.004), "auto", False),  # under the mAP50 floor
    (UNTRAINED, "on", True), (TRAINED, "off", False)])
def test_box_rules_act_only_on_a_trained_obstacle_head(detector, setting, boxes):
    """The same close car ahead in every frame: braked for when the obstacle head was trained, ignored when it
    never saw an annotated frame or scores under the floor, unless --box-rules says otherwise."""
    engine = WallAheadEngine()
    engine.info = replace(INFO, detector=detector)
    fired = rules_fired(engine, setting)
    assert (fired["brake_for_obstacle"] > 20) == boxes, fired
    if not boxes:
        assert not BOX_RULES & set(fired), fired
    on, line = box_rules(setting, engine.info)
    assert on == boxes and line.startswith("crash prevention: ") and f"box rules {'on' if boxes else 'off'}" in line


def test_going_around_a_standstill_needs_no_boxes_and_stays():
    """An untrained head's boxes are ignored, but a network that holds the brake at a standstill is still made
    to pull away: standing is judged on the picture alone."""
    class StandingEngine(WallAheadEngine):
        def __call__(self, frames: np.ndarray) -> list[Prediction]:
            return [replace(p, key_probs=np.array([0.1, 0.1, 0.9, 0.1])) for p in super().__call__(frames)]

    engine = StandingEngine()
    engine.info = replace(INFO, detector=UNTRAINED)
    fired = rules_fired(engine)
    assert fired["go_around"] > 0 and not BOX_RULES & set(fired), fired
    line = box_rules("auto", engine.info)[1]
    assert "never saw an annotated frame" in line and "box rules off" in line and "going around" in line
    with pytest.raises(Crew2Error, match="--box-rules must be one of auto, on, off"):
        DriveConfig(weights=Path("scripted"), source="sim", box_rules="maybe")


class SignalledEngine(ScriptedEngine):
    """Sends this process SIGTERM (as `kill` or Ctrl+C would) while it computes its fifth frame."""

    calls = 0

    def __call__(self, frames: np.ndarray) -> list[Prediction]:
        self.calls += 1
        if self.calls == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__call__(frames)


def test_a_signal_stops_the_closed_loop_run_not_just_its_episode(default_signals):
    engine, done = SignalledEngine(), []
    with pytest.raises(KeyboardInterrupt):
        model_episodes(engine, Path("scripted"), [1, 2, 3], SIM, fusion=True, on_episode=done.append)
    # 80 frames an episode: the first ends at the signal, and no other one starts
    assert done == [] and engine.calls < 10, engine.calls


def test_parse_seeds():
    assert parse_seeds("1000", 3) == [1000, 1001, 1002]
    assert parse_seeds("5-8", 99) == [5, 6, 7, 8]
    assert parse_seeds("3,1,4", 1) == [3, 1, 4]
    for bad in ("x", "8-5", "1,,2"):
        with pytest.raises(Crew2Error, match="--seeds"):
            parse_seeds(bad, 2)


def near(pixel: np.ndarray, colour: tuple[int, int, int]) -> bool:  # lines are anti-aliased
    return bool(np.abs(pixel.astype(int) - colour).max() < 40)


def test_overlay_draws_boxes_corridor_keys_and_rules():
    frame = np.full((36, 64, 3), 90, np.uint8)
    boxes = [[24, 14, 40, 30, 0.9, 0], [1, 20, 9, 26, 0.8, 2]]  # a car straight ahead, a cone on the left edge
    entry = FrameLog(1, 0.05, {}, [0.9, 0.1, 0.7, 0.2], ["s"], [Hit("brake_for_obstacle", "release throttle, "
                     "press brake", {"ttc_s": 0.8})], 2, 0.8, True, False, boxes, frame)
    img = draw(entry, INFO.keys, INFO.thresholds, INFO.class_names, Rules(), scale=3)
    assert img.shape == (36 * 3 + 34, 64 * 3, 3) and img.dtype == np.uint8
    assert tuple(img[30 * 3, 32 * 3 - 10]) != (90, 90, 90), "the corridor is tinted"
    assert img[100, 96, 2] > img[100, 96, 1], "braking tints the corridor red"
    assert near(img[20 * 3 + 5, 24 * 3], RED), "the threat's box is red"
    assert near(img[23 * 3, 1 * 3], CLASS_COLOURS[2]), "the cone beside the corridor has its class colour"
    panel = img[36 * 3:]
    s_slot = panel[:, 2 * (64 * 3 // 4):3 * (64 * 3 // 4)]
    assert (s_slot == GREEN).all(axis=2).any(), "the pressed key's bar is green"
    w_slot = panel[:, : 64 * 3 // 4]
    assert not (w_slot == GREEN).all(axis=2).any(), "W is not pressed (fusion braked): grey"
    with pytest.raises(ValueError):
        draw(FrameLog(1, 0, {}, [0] * 4, [], [], 0, None, True, False), INFO.keys, INFO.thresholds, [], None)


def test_a_capture_on_demand_grabs_when_read():
    """Grabbing when asked, a paced reader's frames are one grab old and each read costs one grab; at its own rate
    the capture hands over frames up to a period old."""
    import contextlib
    import time

    from crew2.io.capture import ThreadedCapture

    @contextlib.contextmanager
    def slow_grabber():  # a 5 ms screen grab
        def grab():
            time.sleep(0.005)
            return np.zeros((4, 4, 3), np.uint8)
        yield grab

    def ages(max_fps: float | None) -> tuple[float, int, int]:
        with ThreadedCapture(slow_grabber, "fake", max_fps=max_fps) as capture:
            found = []
            for _ in range(30):
                time.sleep(0.03)
                capture.grab()
                found.append(time.perf_counter() - capture.frame_started)
            return float(np.median(found)), capture.grabs, len(found)

    asked_age, grabs, reads = ages(None)
    free_age, _, _ = ages(10.0)
    assert asked_age < 0.02 < free_age, (asked_age, free_age)
    assert grabs == reads + 1, "the first frame, then one grab per read"


def test_the_control_rate_defaults_to_fast_decisions_for_a_single_frame_model_on_a_real_time_game():
    window = DriveConfig(weights=Path("m.onnx"), window="game")
    assert control_rate(window, frames=1) == 40.0, "a real-time game does not wait: decide twice a recorded frame"
    assert control_rate(window, frames=2) == 20.0, "a frame stack learnt the recording's frame interval"
    assert control_rate(replace(window, source="sim"), frames=1) == 20.0, "the simulator steps with the decisions"
    assert control_rate(replace(window, fps=15.0), frames=1) == 15.0
    with pytest.raises(Crew2Error, match="--fps"):
        replace(window, fps=0.5)
