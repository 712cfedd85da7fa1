"""crew2 drive on a real window under Xvfb: frames through mss, keys through XTest, and the car moves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from crew2 import x11
from crew2.keys import default_profile
from crew2.model import checkpoint
from crew2.model.net import MultiTaskNet
from crew2.sim.window import WINDOW_TITLE
from crew2.sim.world import CLASSES
from tests.x11_helpers import tap, wait_for_window

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.x11


def throttle_model(path: Path) -> Path:
    """A network whose key head always says: W yes, the rest no."""
    net = MultiTaskNet(num_keys=4, num_classes=4)
    with torch.no_grad():
        last = net.key_head[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([6.0, -6.0, -6.0, -6.0]))
    checkpoint.save(path, net_cfg=checkpoint.net_config(net, "t", 128), profile=default_profile(),
                    class_names=list(CLASSES), thresholds=[0.5] * 4, model=net.state_dict(), size=(256, 144))
    return path


def test_drive_the_sim_window_through_mss_and_xtest_with_hotkeys(xvfb, tmp_path):
    model = throttle_model(tmp_path / "w.pt")
    env = {**os.environ, "DISPLAY": xvfb, "SDL_AUDIODRIVER": "dummy"}
    summary = tmp_path / "sim.json"
    game = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sim", "--traffic", "0", "--obstacles", "0",
                             "--seconds", "120", "--width", "320", "--height", "180", "--json", str(summary)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dpy = x11.open_display(xvfb)
    log = tmp_path / "drive.jsonl"

    def logged() -> list[dict]:
        """The complete lines so far: the driver may be halfway through writing the last one."""
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().split("\n")[:-1]]

    def wait_until(condition, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline and driver.poll() is None, driver.communicate()
            time.sleep(0.05)

    try:
        win = wait_for_window(dpy, WINDOW_TITLE, game)
        x11.focus(dpy, win)
        driver = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "drive", str(model), "--source", "window",
                                   "--window", WINDOW_TITLE, "--seconds", "30", "--countdown", "0", "--log", str(log)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: len(logged()) > 30)
        tap(dpy, "f9")  # pause: everything released
        wait_until(lambda: not logged()[-1]["sent"])
        assert x11.KeyState(dpy, ["w"]).read() == [False], "paused: W is up"
        time.sleep(0.5)
        tap(dpy, "f9")  # resume
        wait_until(lambda: logged()[-1]["sent"])
        tap(dpy, "f10")  # stop, long before --seconds
        output, _ = driver.communicate(timeout=30)
        assert driver.returncode == 0, output
        assert "all keys released" in output
        assert x11.KeyState(dpy, ["w"]).read() == [False], "W is up again on the X server"
        tap(dpy, "esc")  # close the game (its summary is written then): on a busy machine a fixed lifetime ran out
        game.wait(30)
    finally:
        for proc in (game, locals().get("driver")):
            if proc is not None and proc.poll() is None:
                proc.kill()
        dpy.close()
    frames = logged()
    sent = [f["sent"] for f in frames]
    assert len(frames) < 20 * 20, "F10 stopped it well before 30 s"
    assert sent[0] and not all(sent) and sent[-1], "sending, paused by F9, sending again"
    assert all(f["pressed"] == ["w"] for f in frames)
    assert json.loads(summary.read_text())[-1]["distance_m"] > 10, "the car moved under crew2's keys"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP])
def test_keys_are_released_when_the_driver_is_killed_or_stopped(how, xvfb, tmp_path):
    """crew2 cannot clean up after SIGKILL, nor run at all while stopped: the key guard beside it releases W."""
    model = throttle_model(tmp_path / "w.pt")
    env = {**os.environ, "DISPLAY": xvfb, "SDL_AUDIODRIVER": "dummy"}
    game = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sim", "--traffic", "0", "--obstacles", "0",
                             "--seconds", "120", "--width", "320", "--height", "180"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dpy = x11.open_display(xvfb)
    w = x11.KeyState(dpy, ["w"])
    driver = None
    try:
        x11.focus(dpy, wait_for_window(dpy, WINDOW_TITLE, game))
        driver = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "drive", str(model), "--source", "window",
                                   "--window", WINDOW_TITLE, "--seconds", "60", "--countdown", "0"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while w.read() != [True]:
            assert time.monotonic() < deadline and driver.poll() is None, "crew2 pressed W"
            time.sleep(0.05)
        time.sleep(1.0)  # driving
        driver.send_signal(how)
        gone = time.monotonic()
        while w.read() != [False]:
            assert time.monotonic() - gone < 1.0, "W released within a second"
            time.sleep(0.02)
    finally:
        for proc in (driver, game):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        x11.send_key(dpy, "w", False)
        dpy.close()


def test_the_key_guard_releases_only_when_the_beats_stop(xvfb):
    import threading

    from crew2.io.keyguard import BYE, guard

    dpy = x11.open_display(xvfb)
    w = x11.KeyState(dpy, ["w"])
    r, wr = os.pipe()
    ended: list[str] = []
    stream = open(r, "rb")  # noqa: SIM115 - closed once the guard's reader is done with it
    thread = threading.Thread(target=lambda: ended.append(guard(["w", "a"], 0.3, xvfb, stream)), daemon=True)
    seen = []
    try:
        thread.start()
        x11.send_key(dpy, "w", True)  # the driver holds W and beats
        for _ in range(30):
            os.write(wr, b".")
            time.sleep(0.03)
        seen.append(w.read())  # beating: W stays down
        time.sleep(0.6)  # the driver stops answering
        seen.append(w.read())  # silent past the limit: released
        x11.send_key(dpy, "w", True)  # it answers again and presses W again
    finally:
        os.write(wr, b"." + BYE)
        thread.join(5)
        os.close(wr)
        stream.close()
    seen.append(w.read())  # a goodbye ends the guard without touching the keys
    x11.send_key(dpy, "w", False)
    dpy.close()
    assert seen == [[True], [False], [True]] and ended == ["bye"]
