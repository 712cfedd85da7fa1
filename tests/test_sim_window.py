"""The simulator's real window under Xvfb: found by title, captured with mss, driven with XTest keys."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mss
import numpy as np
import pytest

from crew2 import x11
from crew2.errors import Crew2Error
from crew2.sim.window import WINDOW_TITLE
from tests.x11_helpers import wait_for_window

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.x11


def grab(display: str, rect: x11.Rect) -> np.ndarray:
    with mss.MSS(display=display) as sct:
        shot = sct.grab({"left": rect.left, "top": rect.top, "width": rect.width, "height": rect.height})
    return np.asarray(shot)[:, :, :3]  # BGRA -> BGR


def test_window_is_captured_and_driven_by_injected_keys(xvfb, tmp_path):
    summary = tmp_path / "episodes.json"
    env = {**os.environ, "DISPLAY": xvfb, "SDL_AUDIODRIVER": "dummy"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "sim", "--traffic", "0", "--obstacles", "0", "--seconds", "40",
         "--width", "320", "--height", "180", "--json", str(summary)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dpy = x11.open_display(xvfb)
    try:
        win = wait_for_window(dpy, WINDOW_TITLE, proc)
        rect = x11.window_rect(dpy, win)
        assert (rect.width, rect.height) == (320, 180)
        time.sleep(1.0)
        still = [grab(xvfb, rect) for _ in range(2)]
        assert still[0].std() > 20, "the capture shows the game, not a blank window"
        # Road on the bottom half (grey/green), sky on the top (blue dominates in BGR order).
        assert still[0][:40, :, 0].mean() > still[0][:40, :, 2].mean()
        time.sleep(0.5)
        assert np.array_equal(still[1], grab(xvfb, rect)), "standing still on an empty road, nothing moves"

        x11.focus(dpy, win)
        x11.send_key(dpy, "w", down=True)
        time.sleep(1.5)
        x11.send_key(dpy, "w", down=False)
        moving = grab(xvfb, rect)
        assert not np.array_equal(still[1], moving), "throttle made the car move"
        x11.send_key(dpy, "esc", down=True)
        x11.send_key(dpy, "esc", down=False)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        dpy.close()
    assert proc.returncode == 0, output
    episodes = json.loads(summary.read_text())
    assert episodes[-1]["distance_m"] > 5, output
    assert episodes[-1]["time_s"] < 30, "Esc closed the window before --seconds did"


def test_autopilot_window_drives_by_itself(xvfb, tmp_path):
    summary = tmp_path / "episodes.json"
    env = {**os.environ, "DISPLAY": xvfb, "SDL_AUDIODRIVER": "dummy"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "sim", "--autopilot", "--seconds", "3", "--width", "256",
         "--height", "144", "--json", str(summary)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(summary.read_text())[-1]["distance_m"] > 20


def test_missing_window_is_a_clear_error(xvfb):
    dpy = x11.open_display(xvfb)
    try:
        with pytest.raises(Crew2Error, match="no window titled like"):
            x11.find_window(dpy, "no such game 1234")
    finally:
        dpy.close()


def test_a_window_that_closes_is_a_clear_error(xvfb):
    from Xlib import X

    from crew2.io.capture import X11Window

    dpy = x11.open_display(xvfb)
    try:
        root = dpy.screen().root
        win = root.create_window(0, 0, 64, 48, 0, X.CopyFromParent)
        win.set_wm_name("a game about to quit")
        win.map()
        dpy.sync()
        window = X11Window("a game about to quit", display=xvfb)
        assert window.rect().width == 64
        x11.focus(dpy, win)
        assert window.focused()
        with window.source() as capture:  # the drive loop's own capture thread, on its own connection
            assert capture.grab().shape == (48, 64, 3)
            win.destroy()  # the focus goes back to the root window
            dpy.sync()
            with pytest.raises(Crew2Error, match="the window 'a game about to quit' closed"):
                window.focused()
            with pytest.raises(Crew2Error, match="closed"):
                window.rect()
            deadline = time.monotonic() + 5
            with pytest.raises(Crew2Error, match=r"^the window 'a game about to quit' closed$"):
                while time.monotonic() < deadline:
                    capture.grab()
                    time.sleep(0.02)
        window.close()
    finally:
        dpy.close()


def test_guard_takes_over_a_car_nobody_drives(xvfb, tmp_path):
    """`crew2 sim --guard`: the keyboard drives; with nobody at it the car stands, and after 2 s the autopilot
    takes the keys through XTest, as the person of a takeover benchmark, and drives it away."""
    summary = tmp_path / "episodes.json"
    env = {**os.environ, "DISPLAY": xvfb, "SDL_AUDIODRIVER": "dummy"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "sim", "--guard", "--traffic", "0", "--obstacles", "0", "--seconds",
         "6", "--fps", "20", "--width", "256", "--height", "144", "--json", str(summary)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dpy = x11.open_display(xvfb)
    try:
        x11.focus(dpy, wait_for_window(dpy, WINDOW_TITLE, proc))
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output
        assert x11.KeyState(dpy, ["w", "a", "s", "d"]).read() == [False] * 4, "the guard let go of every key"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        dpy.close()
    (episode,) = json.loads(summary.read_text())
    assert episode["takeovers"] == 1 and episode["guarded_frames"] > 0 and episode["distance_m"] > 10, episode


def test_windows_titled_alike_on_x11_are_listed_not_guessed(xvfb):
    dpy = x11.open_display(xvfb)
    try:
        screen = dpy.screen()
        made = []
        for title in ("crew2 test game", "crew2 test game - tips in a browser"):
            win = screen.root.create_window(0, 0, 200, 100, 0, screen.root_depth)
            win.set_wm_name(title)
            win.map()
            made.append(win)
        dpy.sync()
        time.sleep(0.2)
        assert x11.find_window(dpy, "crew2 TEST game").id == made[0].id, "the one titled exactly so"
        with pytest.raises(Crew2Error, match=r"^2 windows are titled like 'test game' \('crew2 test game', "
                                             r"'crew2 test game - tips in a browser'\): give more of the title$"):
            x11.find_window(dpy, "test game")
        assert x11.find_window(dpy, "tips").id == made[1].id
    finally:
        dpy.close()


def test_a_window_is_found_by_its_program_on_x11_too(xvfb, tmp_path):
    """Wine and Proton name a game's process after its .exe (TheCrew2.exe): `--window TheCrew2.exe` finds its window
    through _NET_WM_PID whatever the title says. Here the process is one named so, owning a real X window."""
    import shutil

    program = tmp_path / "TheCrew2.exe"
    shutil.copy(shutil.which("sleep"), program)
    proc = subprocess.Popen([str(program), "30"])
    dpy = x11.open_display(xvfb)
    try:
        screen = dpy.screen()
        game, other = (screen.root.create_window(0, 0, 200, 100, 0, screen.root_depth) for _ in range(2))
        game.set_wm_name("The Crew®2 - 1280x720")
        game.change_property(dpy.get_atom("_NET_WM_PID"), dpy.get_atom("CARDINAL"), 32, [proc.pid])
        other.set_wm_name("a terminal")
        other.change_property(dpy.get_atom("_NET_WM_PID"), dpy.get_atom("CARDINAL"), 32, [os.getpid()])
        for win in (game, other):
            win.map()
        dpy.sync()
        time.sleep(0.2)
        for wanted in ("TheCrew2.exe", "thecrew2"):
            assert x11.find_window(dpy, wanted).id == game.id
        proc.kill()
        proc.wait()
        with pytest.raises(Crew2Error, match=re.escape("no window titled like 'TheCrew2.exe', or of")):
            x11.find_window(dpy, "TheCrew2.exe")  # the program is gone: its window is no game
    finally:
        if proc.poll() is None:
            proc.kill()
        dpy.close()


def test_program_names_match_as_a_user_writes_them():
    assert x11.is_program("TheCrew2.exe", "thecrew2") and x11.is_program("thecrew2.exe", "TheCrew2.EXE")
    assert x11.is_program("ForzaHorizon5.e", "ForzaHorizon5.exe"), "Linux keeps 15 characters of a process name"
    assert not x11.is_program("TheCrew2.exe", "crew") and not x11.is_program(None, "thecrew2")
