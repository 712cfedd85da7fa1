"""crew2 drive on a real window under Xvfb: frames through mss, keys through XTest, and the car moves."""

from __future__ import annotations

import json
import os
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
