"""Recording a real window under Xvfb: frames via mss, keys injected with XTest read back from the X server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from Xlib import X

from crew2 import x11
from crew2.data.session import Session
from crew2.errors import Crew2Error
from crew2.io.band import Band
from crew2.io.capture import screen_source
from crew2.keys import default_profile
from crew2.model import checkpoint
from crew2.model.net import MultiTaskNet
from crew2.sim.window import WINDOW_TITLE
from crew2.sim.world import CLASSES
from tests.x11_helpers import plain_window, tap, wait_for_window

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.x11


@pytest.fixture
def game(xvfb):
    """The simulator's window on an empty road, focused; yields (display connection, window)."""
    env = {**os.environ, "DISPLAY": xvfb, "SDL_AUDIODRIVER": "dummy"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sim", "--traffic", "0", "--obstacles", "0",
                             "--seconds", "60", "--width", "320", "--height", "180"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dpy = x11.open_display(xvfb)
    win = wait_for_window(dpy, WINDOW_TITLE, proc)
    x11.focus(dpy, win)
    yield dpy, win
    proc.kill()
    proc.wait()
    dpy.close()


def start_recording(xvfb: str, out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DISPLAY": xvfb}
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "record", "--source", "window", "--window",
                             WINDOW_TITLE, "--fps", "20", "--countdown", "0", "--out", str(out), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_frames(path: Path, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                if len(Session(path)) >= n:
                    return
            except Crew2Error:
                pass  # the writer is still creating it
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {n} frames")


def test_record_window_captures_frames_and_injected_keys(game, xvfb, tmp_path):
    dpy, _ = game
    out = tmp_path / "window.h5"
    proc = start_recording(xvfb, out, "--seconds", "5")
    wait_for_frames(out, 20)
    x11.send_key(dpy, "w", down=True)
    time.sleep(1.5)
    x11.send_key(dpy, "w", down=False)
    x11.send_key(dpy, "d", down=True)
    time.sleep(0.5)
    x11.send_key(dpy, "d", down=False)
    log, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, log

    s = Session(out)
    assert 80 <= len(s) <= 102, f"{len(s)} frames in 5 s at 20 fps"
    assert s.meta.source == "window" and s.meta.region[2:] == [320, 180]
    keys = s.keys()
    w, d = keys[:, 0], keys[:, 3]
    assert w[:10].sum() == 0 and 24 <= w.sum() <= 36, "throttle held ~1.5 s = ~30 frames"
    assert 6 <= d.sum() <= 14 and keys[:, 1].sum() == keys[:, 2].sum() == 0
    first_d = int(np.argmax(d))
    assert w[first_d - 3] == 1 and w[first_d + 2] == 0, "d came right after w, in order"
    first, last = s.frame(0), s.frame(len(s) - 1)
    assert first.std() > 20 and first.shape == (144, 256, 3)
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 2, "the car moved: the view changed"
    times = s.times()
    assert np.all(np.diff(times) > 0) and abs(np.median(np.diff(times)) - 0.05) < 0.01


def test_a_window_too_small_for_the_band_is_a_clear_error_before_any_file_is_made(game, xvfb, tmp_path):
    out = tmp_path / "band.h5"
    proc = start_recording(xvfb, out, "--seconds", "2", "--band", "4")  # 320x180 where the band needs 1024x576
    log, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "needs a picture of at least 1024x576, and this one is 320x180" in log, log
    assert len(log.strip().splitlines()) == 1 and not out.exists()

    # A model that sees with a band says the same before its --record file is made.
    net = MultiTaskNet(num_keys=4, num_classes=4)
    model = tmp_path / "band.pt"
    checkpoint.save(model, net_cfg=checkpoint.net_config(net, "t", 128), profile=default_profile(),
                    class_names=list(CLASSES), thresholds=[0.5] * 4, model=net.state_dict(), size=(256, 192),
                    band=Band(zoom=4).to_dict())
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "drive", str(model), "--source", "window",
                             "--window", WINDOW_TITLE, "--dry-run", "--countdown", "0", "--record", str(out)],
                            env={**os.environ, "DISPLAY": xvfb}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "needs a picture of at least 1024x576" in result.stderr, result.stderr
    assert not out.exists()


def test_recording_pauses_while_the_game_is_not_in_front(game, xvfb, tmp_path):
    dpy, win = game
    root = dpy.screen().root
    root.set_input_focus(X.RevertToPointerRoot, X.CurrentTime)  # another window has the focus now
    dpy.sync()
    out = tmp_path / "unfocused.h5"
    proc = start_recording(xvfb, out, "--seconds", "1.5")
    time.sleep(2.5)
    assert len(Session(out)) == 0 and proc.poll() is None, "nothing recorded while the game was in the back"
    x11.focus(dpy, win)
    log, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, log
    assert 25 <= len(Session(out)) <= 32


def test_region_outside_the_screen_is_a_clear_error(xvfb):
    with pytest.raises(Crew2Error, match="is not inside monitor 1"):
        screen_source(x11.Rect(1200, 600, 200, 200), display=xvfb)
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "record", "--region", "0,0,5000,10",
                             "--countdown", "0"], env={**os.environ, "DISPLAY": xvfb}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "is not inside monitor 1" in result.stderr


def test_window_that_does_not_exist_is_a_clear_error(xvfb):
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "record", "--source", "window", "--window",
                             "No Such Game", "--countdown", "0"], env={**os.environ, "DISPLAY": xvfb},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no window titled like 'No Such Game'" in result.stderr


def test_a_window_reaching_past_the_screen_is_a_clear_error(xvfb, tmp_path):
    """The X server cannot give what is off the screen (mss raised its own exception, a traceback): record and
    drive say which window, where, and what to do, and write nothing."""
    with plain_window(xvfb, "crew2 too wide", 100, 50, 1400, 300):
        for command in (["record", "--out", str(tmp_path / "s.h5")],
                        ["drive", str(ROOT / "weights" / "crew2-sim-t.onnx"), "--dry-run", "--seconds", "1"]):
            result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *command, "--source", "window",
                                     "--window", "crew2 too wide", "--countdown", "0"],
                                    env={**os.environ, "DISPLAY": xvfb}, capture_output=True, text=True, timeout=120)
            assert result.returncode == 2, result.stderr
            assert "(1400x300 at 100,50) reaches past the screen (1280x720)" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
        assert not list(tmp_path.iterdir())


def test_a_window_that_moves_is_followed(xvfb):
    """The capture finds the window again after every frame: moved across the screen, it is what is grabbed from
    the next grab on, not the place it left."""
    from crew2.io.capture import X11Window

    with plain_window(xvfb, "crew2 moving", 40, 40, 160, 90) as (dpy, win):
        win.change_attributes(background_pixel=200 << 16)  # red 200
        win.clear_area()
        dpy.sync()
        game = X11Window("crew2 moving", xvfb)
        try:
            with game.source(max_fps=None) as capture:
                assert (capture.grab()[..., 0] == 200).all(), "the window, where it was"
                win.configure(x=700, y=400)
                dpy.sync()
                time.sleep(0.2)
                capture.grab()  # may still be the place it left: the window is asked for after each frame
                frame = capture.grab()
                assert (frame[..., 0] == 200).all() and frame.shape == (90, 160, 3), "the window, where it went"
                assert game.rect().left == 700
        finally:
            game.close()


def test_hotkeys_pause_discard_and_stop(game, xvfb, tmp_path):
    dpy, _ = game
    out = tmp_path / "hotkeys.h5"
    proc = start_recording(xvfb, out, "--seconds", "60", "--discard-seconds", "1")
    wait_for_frames(out, 40)  # ~2 s recorded
    tap(dpy, "f9")  # pause
    time.sleep(0.5)
    paused_at = len(Session(out))
    time.sleep(1.5)
    assert len(Session(out)) - paused_at <= 20, "pausing stops the frames (up to one flush behind)"
    tap(dpy, "f9")  # resume
    time.sleep(1.0)
    tap(dpy, "f8")  # discard the last second
    time.sleep(0.5)
    tap(dpy, "f10")  # stop
    log, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, log
    assert "20 discarded" in log or "21 discarded" in log or "19 discarded" in log, log
    s = Session(out)
    # What was in at the pause (the file up to one flush behind), then 1.5 s resumed (2.5 s for taps that come
    # late on a loaded machine), less the second discarded: not the 2 s the pause lasted.
    assert 30 <= len(s) <= paused_at + 20 + 50 - 19, f"{len(s)} frames, {paused_at} in the file at the pause"
    gaps = np.diff(s.times())
    assert (gaps > 1.5).sum() == 1 and (gaps > 0.8).sum() == 2, "the pause and the discard show as cuts"
    assert np.median(gaps) == pytest.approx(0.05, abs=0.005)


def test_record_screen_region(game, xvfb, tmp_path):
    dpy, win = game
    r = x11.window_rect(dpy, win)
    out = tmp_path / "screen.h5"
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "record", "--source", "screen", "--region",
                             f"{r.left},{r.top},{r.width},{r.height}", "--seconds", "1.5", "--countdown", "0",
                             "--out", str(out)], env={**os.environ, "DISPLAY": xvfb}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    s = Session(out)
    assert 27 <= len(s) <= 32 and s.meta.region == [r.left, r.top, r.width, r.height]
    assert s.frame(0).std() > 20, "the region shows the game"
    assert "0 dropped" in result.stdout


@pytest.fixture
def still_window(xvfb):
    """A plain X window that no program draws into: black until something paints it; yields (connection, window)."""
    with plain_window(xvfb, "crew2 still picture", 40, 40, 320, 180) as (dpy, win):
        x11.focus(dpy, win)
        yield dpy, win


@pytest.mark.parametrize("kind", ["black", "frozen"])
def test_recording_names_a_window_that_shows_black_or_stops_updating(kind, still_window, xvfb, tmp_path):
    """Real frames of a real window: one that stays black, one that is painted for a second and then no more (a
    paused or hung game, a capture that keeps its last image). Frames are kept; the warning says what to do."""
    from crew2.keys import default_profile
    from crew2.record.recorder import blank_warning
    from crew2.record.run import RecordConfig, record
    from tests.x11_helpers import Animate

    _, win = still_window
    config = RecordConfig(source="window", window="crew2 still picture", display=xvfb, out=tmp_path / "s.h5",
                          fps=20, seconds=4.5 if kind == "black" else 7.0, countdown=0, profile=default_profile())
    warnings = []
    with Animate(xvfb, win.id) if kind == "frozen" else contextlib.nullcontext() as painter:
        def tick(stats):
            if painter is not None and stats.elapsed > 1.0:
                painter.stop.set()  # the picture stops changing
            warnings.append((stats.elapsed, blank_warning(stats)))
        stats = record(config, on_tick=tick)
    first = next(t for t, w in warnings if w is not None)
    assert stats.blank == kind and len(Session(config.out)) == stats.frames > 80, "named, and every frame kept"
    assert (3.0 <= first < 4.0) if kind == "black" else (5.0 <= first < 6.5), f"named after {first:.1f} s"
    assert "borderless windowed mode" in warnings[-1][1] and "\n" not in warnings[-1][1]


def test_a_screen_grab_of_a_window_comes_as_rgb(still_window, xvfb):
    """mss grabs BGRA; crew2 hands on RGB, which the models learnt on: a window painted one colour reads as it."""
    from crew2.io.capture import mss_region

    dpy, win = still_window
    win.change_attributes(background_pixel=(200 << 16) | (40 << 8) | 10)  # TrueColor: red 200, green 40, blue 10
    win.clear_area()
    dpy.sync()
    time.sleep(0.2)
    rect = x11.window_rect(dpy, win)
    with mss_region(xvfb, lambda: rect) as grab_once:
        frame = grab_once()
    assert frame.shape == (180, 320, 3) and frame.flags["C_CONTIGUOUS"]
    assert frame[90, 160].tolist() == [200, 40, 10]
