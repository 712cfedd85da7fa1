"""crew2 drive on a real window under Xvfb: frames through mss, keys through XTest, and the car moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crew2 import x11
from crew2.keys import default_profile
from crew2.model import checkpoint
from crew2.model.net import MultiTaskNet
from crew2.sim.window import WINDOW_TITLE
from crew2.sim.world import CLASSES
from tests.x11_helpers import wait_for_window

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


def test_drive_the_sim_window_through_mss_and_xtest(xvfb, tmp_path):
    model = throttle_model(tmp_path / "w.pt")
    env = {**os.environ, "DISPLAY": xvfb, "SDL_AUDIODRIVER": "dummy"}
    summary = tmp_path / "sim.json"
    game = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sim", "--traffic", "0", "--obstacles", "0",
                             "--seconds", "12", "--width", "320", "--height", "180", "--json", str(summary)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dpy = x11.open_display(xvfb)
    try:
        win = wait_for_window(dpy, WINDOW_TITLE, game)
        x11.focus(dpy, win)
        log = tmp_path / "drive.jsonl"
        result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "drive", str(model), "--source", "window",
                                 "--window", WINDOW_TITLE, "--seconds", "3", "--countdown", "0", "--log", str(log)],
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "all keys released" in result.stdout
        assert x11.KeyState(dpy, ["w"]).read() == [False], "W is up again on the X server"
        game.wait(30)
    finally:
        if game.poll() is None:
            game.kill()
        dpy.close()
    frames = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(frames) > 30 and all(f["pressed"] == ["w"] and f["sent"] for f in frames)
    assert json.loads(summary.read_text())[-1]["distance_m"] > 10, "the car moved under crew2's keys"
