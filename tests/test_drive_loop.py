"""The drive loop: keys released on every way out, focus guard, garbage frames, telemetry, closed loop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crew2.drive.decoder import DecoderConfig, KeyDecoder
from crew2.drive.fusion import Rules
from crew2.drive.loop import drive_loop
from crew2.drive.telemetry import Aggregator, render
from crew2.io.control import Control
from tests.drive_helpers import INFO, FrameSource, RecordingSender, ScriptedEngine

ROOT = Path(__file__).resolve().parents[1]


def decoder() -> KeyDecoder:
    return KeyDecoder(INFO.keys, INFO.roles, INFO.thresholds, DecoderConfig(min_hold=0.0))


def released_everything(sender: RecordingSender) -> bool:
    pressed = {k for kind, k, _ in sender.events if kind == "press"}
    last = {}
    for kind, k, _ in sender.events:
        last[k] = kind
    return bool(pressed) and all(last[k] == "release" for k in pressed) and not sender.down


def test_normal_end_releases_and_only_changes_are_sent():
    sender = RecordingSender()
    stats = drive_loop(FrameSource(), ScriptedEngine(), decoder(), sender, fps=100, max_steps=20, realtime=False,
                       rules=Rules())
    assert stats.steps == 20
    presses = [k for kind, k, _ in sender.events if kind == "press"]
    assert sorted(presses) == ["d", "w"], "pressed once each, held across 20 frames"
    assert released_everything(sender)


def test_exception_inside_inference_releases_then_raises():
    sender = RecordingSender()
    with pytest.raises(RuntimeError, match="blew up"):
        drive_loop(FrameSource(), ScriptedEngine(fail_at=5), decoder(), sender, fps=100, realtime=False)
    assert released_everything(sender)


def test_keyboard_interrupt_releases():
    sender = RecordingSender()

    class Interrupting(FrameSource):
        def grab(self):
            if self.i == 6:
                raise KeyboardInterrupt
            return super().grab()

    stats = drive_loop(Interrupting(), ScriptedEngine(), decoder(), sender, fps=100, realtime=False)
    assert stats.steps == 6 and released_everything(sender)


def test_watchdog_releases_during_a_stall():
    sender = RecordingSender()
    engine = ScriptedEngine(stall_at=4, stall=1.0)
    start = time.monotonic()
    stats = drive_loop(FrameSource(), engine, decoder(), sender, fps=50, max_steps=6, watchdog=0.3)
    stall_start = start
    releases = [t for kind, _, t in sender.events if kind == "release"]
    assert stats.watchdog_releases == 1
    assert any(0.25 < t - stall_start < 1.6 for t in releases), "released while inference hung, not after"
    assert released_everything(sender)


@pytest.mark.parametrize("max_fps", [120.0, None], ids=["at-a-rate", "on-demand"])
def test_a_hung_capture_releases_the_keys_within_a_second(max_fps):
    """The capture thread stops returning (a hung X server or game): the loop keeps getting its last frame (at once,
    or after waiting a moment for the grab it asked for), sees that frame's grab began too long ago, and releases
    every key."""
    import contextlib
    import threading

    from crew2.io.capture import ThreadedCapture

    hang, grabs, hung_at = threading.Event(), [0], []
    rng = np.random.default_rng(2)

    @contextlib.contextmanager
    def grabber():
        def grab_once():
            grabs[0] += 1
            if grabs[0] > 20:
                hung_at.append(time.monotonic())
                hang.wait(30)
            return rng.integers(0, 256, (36, 64, 3), dtype=np.uint8)
        yield grab_once

    sender, control = RecordingSender(), Control()
    threading.Timer(3.0, control.stop.set).start()
    try:
        with ThreadedCapture(grabber, "hanging", max_fps) as source:
            stats = drive_loop(source, ScriptedEngine(), decoder(), sender, fps=20, control=control)
    finally:
        hang.set()
    releases = [t for kind, key, t in sender.events if kind == "release" and key == "w"]
    assert stats.bad_frames >= 5 and hung_at and releases and 0 < releases[0] - hung_at[0] < 1.0
    assert stats.watchdog_releases == 0, "the loop went on (stale frames), it was not stuck in the grab"
    assert released_everything(sender)


def test_focus_guard_holds_keys_back():
    sender = RecordingSender()
    in_front = {"yes": False}
    logs = []

    def on_frame(log):
        logs.append(log)
        if log.step == 5:
            in_front["yes"] = True

    drive_loop(FrameSource(), ScriptedEngine(), decoder(), sender, fps=100, max_steps=10, realtime=False,
               focused=lambda: in_front["yes"], on_frame=on_frame)
    first_press = next(i for i, (kind, _, _) in enumerate(sender.events) if kind == "press")
    assert first_press == 0 and [lg.sent for lg in logs] == [False] * 5 + [True] * 5
    assert all(kind == "release" or i >= first_press for i, (kind, _, _) in enumerate(sender.events))


def test_dry_run_and_pause_send_nothing():
    sender = RecordingSender()
    drive_loop(FrameSource(), ScriptedEngine(), decoder(), sender, fps=100, max_steps=5, realtime=False, dry_run=True)
    assert not [e for e in sender.events if e[0] == "press"]
    control = Control()
    control.paused.set()
    drive_loop(FrameSource(), ScriptedEngine(), decoder(), sender, fps=100, max_steps=5, realtime=False,
               control=control)
    assert not [e for e in sender.events if e[0] == "press"]


def test_garbage_frames_never_crash_the_loop():
    rng = np.random.default_rng(0)
    frames = [np.zeros((36, 64, 3), np.uint8), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
              rng.integers(0, 256, (10, 20), dtype=np.uint8), rng.random((50, 80, 4)), np.zeros((0, 0, 3)),
              np.full((36, 64, 3), np.nan), None]
    sender = RecordingSender()
    stats = drive_loop(FrameSource(frames), ScriptedEngine(), decoder(), sender, fps=100, max_steps=12,
                       realtime=False)
    assert stats.steps == 12 and stats.bad_frames >= 2 and released_everything(sender)


def test_black_or_frozen_pictures_press_nothing_until_the_game_shows_again():
    def drive(frames, grabs):
        """A 20 fps drive (not real time) over `grabs` frames: the sender, and per driven frame whether W is down."""
        source, sender, down = FrameSource(frames), RecordingSender(), []
        source.grab = lambda grab=source.grab: (grab(), setattr(source, "done", source.i >= grabs))[0]
        stats = drive_loop(source, ScriptedEngine(), decoder(), sender, fps=20, realtime=False,
                           on_frame=lambda log: down.append("w" in sender.down))
        return sender, down, stats

    sender, down, stats = drive([np.zeros((36, 64, 3), np.uint8)], 50)  # a loading screen
    assert not [e for e in sender.events if e[0] == "press"] and stats.blind_frames == 50 and not down
    rng = np.random.default_rng(1)
    moving = [rng.integers(0, 256, (36, 64, 3), dtype=np.uint8) for _ in range(7)]
    sender, down, stats = drive(moving, 100)
    assert all(down) and stats.blind_frames == 0, "a picture that changes is driven throughout"
    # A picture that stands still with W down: driven for the first frame and 1 s more (21 frames), nothing for
    # 3 s (60 frames), then keys are tried again.
    sender, down, stats = drive([np.full((36, 64, 3), 120, np.uint8)], 150)
    assert len(down) == 21 + 21 and stats.blind_frames == 60 + 48 and all(down)
    assert [kind for kind, key, _ in sender.events if key == "w"] == ["press", "release"] * 2


def test_sigterm_to_a_driving_child_releases_its_keys(tmp_path):
    events = tmp_path / "events.jsonl"
    script = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from crew2.drive.loop import drive_loop
from tests.drive_helpers import FrameSource, RecordingSender, ScriptedEngine
from tests.test_drive_loop import decoder
from pathlib import Path
drive_loop(FrameSource(), ScriptedEngine(), decoder(), RecordingSender(Path({str(events)!r})), fps=50)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (events.exists() and events.read_text().count("press") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert sorted(k for kind, k in lines if kind == "press") == ["d", "w"]
    assert sorted(k for kind, k in lines[-2:] if kind == "release") == ["d", "w"]


def test_telemetry_renders_a_snapshot():
    from rich.console import Console

    from crew2.drive.fusion import Hit
    from crew2.drive.loop import FrameLog

    line = "crash prevention: the obstacle head never saw an annotated frame: box rules off"
    agg = Aggregator(INFO.keys, INFO.thresholds, 20.0, line)
    for i in range(11):
        agg.add(FrameLog(i, i * 0.05, {"capture": 1.0, "preprocess": 0.2, "infer": 2.5, "decode": 0.05,
                                       "fusion": 0.1, "send": 0.05}, [0.9, 0.2, 0.7, 0.1], ["w", "s"],
                         [Hit("brake_for_obstacle", "brake", {"ttc_s": 0.9})] if i > 7 else [], 2,
                         0.9 if i > 7 else None, True, False))
    snap = agg.snapshot()
    assert snap.fps == pytest.approx(20.0) and snap.rules == {"brake_for_obstacle": 3}
    assert snap.latency_ms["total"][0] == pytest.approx(3.9)
    console = Console(width=100, record=True)
    console.print(render(snap))
    text = console.export_text()
    assert "20.0 / 20 fps" in text and "brake_for_obstacle ×3" in text and "0.90 s" in text
    assert "W" in text and "infer" in text and "crew2 drives, takeovers 0" in text
    assert line in text, "what crash prevention acts on is shown all along"
    agg.add(FrameLog(12, 0.6, {s: 0.1 for s in snap.latency_ms if s != "total"}, [0.9, 0.2, 0.7, 0.1], ["w", "s"],
                     [], 0, None, False, False, driver="person", person=["a"], takeovers=3))
    console = Console(width=120, record=True)
    console.print(render(agg.snapshot()))
    assert "YOU DRIVE (takeover 3: A)" in console.export_text(), "who drives is shown"
    for why in ("black", "black", "frozen"):
        agg.skip(why)
    console = Console(width=140, record=True)
    console.print(render(agg.snapshot()))
    text = console.export_text()
    assert "NO KEYS: the picture stands still under throttle" in text and "black 2   frozen 1" in text
    assert "borderless windowed mode" in text, "what to do about it too"


def test_closed_loop_sim_drive_moves_the_car():
    from crew2.keys import default_profile
    from crew2.sim.sources import SimGame
    from crew2.sim.world import SimConfig

    with SimGame(SimConfig(width=64, height=36, traffic=0, obstacles=0, track_km=0.3), default_profile(), 1) as game:
        stats = drive_loop(game, ScriptedEngine(), decoder(), game.sender, fps=20, realtime=False, max_steps=400)
        metrics = game.metrics
    assert metrics["distance_m"] > 50 and stats.steps > 50  # W and D held: fast, then onto the grass
    assert not game.sender.vector.any(), "released at the end"


@pytest.mark.parametrize("seed", [2, 5])
def test_a_car_held_on_the_brake_in_passing_traffic_is_made_to_pull_away(seed):
    """The network brakes at a standstill, nothing ahead, while traffic streams past in the other lanes, every
    vehicle detected. Crash prevention judges standing from the scenery outside the boxes (the traffic moves the
    picture), finds the car stuck and drives on."""
    from dataclasses import replace

    from crew2.keys import default_profile
    from crew2.model.engine import Prediction
    from crew2.sim.sources import SimGame
    from crew2.sim.world import SimConfig

    class BrakingEngine:  # holds S; its boxes are the simulator's ground truth
        name, info = "braking", replace(INFO, size=(256, 144))

        def __call__(self, frames: np.ndarray) -> list[Prediction]:
            return [Prediction(np.array([0.1, 0.1, 0.9, 0.1]), np.insert(game.boxes(), 4, 1.0, axis=1))]

    logs = []
    with SimGame(SimConfig(traffic=3.0, obstacles=0), default_profile(), seed) as game:
        drive_loop(game, BrakingEngine(), decoder(), game.sender, fps=20, rules=Rules(), realtime=False,
                   max_steps=100, on_frame=logs.append)
        metrics = game.metrics
    escaped = [i for i, log in enumerate(logs) if any(h.rule == "go_around" for h in log.hits)]
    assert escaped and escaped[0] <= 20 * (Rules().stuck + 1), "it pulls away soon after `stuck` seconds"
    assert metrics["distance_m"] > 1.0
