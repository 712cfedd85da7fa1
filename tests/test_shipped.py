"""The default driver shipped in weights/: it loads safely, its ONNX export agrees with it, it drives, and
`crew2 demo` runs end to end with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from crew2.drive.run import DriveConfig, drive
from crew2.keys import default_profile
from crew2.model.checkpoint import detector_trained
from crew2.model.engine import DEFAULT_WEIGHTS, load_engine
from crew2.sim.episodes import run_autopilot
from crew2.sim.render import Appearance, Renderer
from crew2.sim.world import CLASSES, SimConfig, World

ROOT = Path(__file__).resolve().parents[1]
ONNX = DEFAULT_WEIGHTS.with_suffix(".onnx")


def test_the_shipped_checkpoint_loads_with_weights_only_and_is_small():
    ckpt = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    assert ckpt["keys"] == list(default_profile().keys) and ckpt["class_names"] == list(CLASSES)
    assert all(0 < t < 1 for t in ckpt["thresholds"]), "thresholds calibrated on validation data"
    assert (DEFAULT_WEIGHTS.stat().st_size + ONNX.stat().st_size) / 1e6 < 20


def sim_frames(n: int, stack: int, seed: int = 1003) -> np.ndarray:
    """Inputs from a held-out episode with traffic ahead, as the driver sees them: the last `stack`
    consecutive frames on the channel axis, every 2 s."""
    world = World(SimConfig(traffic=2.0), seed)
    renderer = Renderer(256, 144, Appearance(), 3, seed)
    inputs, recent = [], []
    for step in range(40 * n):
        world.step(True, False, False, False)
        if step % 40 >= 40 - stack:
            recent.append(renderer.render(world).image)
        if step % 40 == 39:
            inputs.append(np.concatenate(recent, axis=2))
            recent = []
    return np.stack(inputs)


def test_onnx_and_checkpoint_agree():
    torch_engine, onnx_engine = load_engine(DEFAULT_WEIGHTS, "torch"), load_engine(ONNX, "onnx")
    assert torch_engine.info == onnx_engine.info
    # Trained on the simulator's ground-truth boxes (validation mAP50 0.052): crash prevention acts on them.
    assert detector_trained(onnx_engine.info.detector) == (True, "the obstacle head was trained (validation mAP50 "
                                                                 "0.052)")
    frames = sim_frames(4, torch_engine.info.frames)
    boxes = 0
    for a, b in zip(torch_engine(frames), onnx_engine(frames), strict=True):
        np.testing.assert_allclose(a.key_probs, b.key_probs, atol=1e-4)
        assert len(a.boxes) == len(b.boxes)
        if len(a.boxes):
            np.testing.assert_allclose(a.boxes[:, :5], b.boxes[:, :5], atol=0.05)
            np.testing.assert_array_equal(a.boxes[:, 5], b.boxes[:, 5])
        boxes += len(a.boxes)
    assert boxes > 0, "the obstacle head sees the traffic"


def test_the_shipped_model_drives_a_short_episode():
    sim = SimConfig(track_km=2.0, max_seconds=15.0)
    result = drive(DriveConfig(weights=DEFAULT_WEIGHTS, source="sim", sim=sim, countdown=0, seed=1001),
                   engine=load_engine(ONNX, threads=1))
    expert = run_autopilot(sim, [1001])[0]
    world = World(sim, 1001)  # the same road held flat out: straight into the traffic
    while world.metrics.time < sim.max_seconds:
        world.step(True, False, False, False)
    # It drives (the closed-loop figures are in weights/README.md: 0.82–0.93 of the autopilot's distance per
    # held-out set), keeps to the road, and hits less than holding the throttle does.
    assert result.sim["distance_m"] > 0.3 * expert["distance_m"], (result.sim, expert)
    assert result.sim["offroad_s"] < 1.0, result.sim
    assert result.sim["collisions"] < world.metrics.collisions, (result.sim, world.metrics.summary())


def test_demo_end_to_end_in_a_short_mode():
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "demo", "--episodes", "1", "--seconds", "5"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "crew2-sim-t.onnx on held-out seeds" in run.stdout and "mean" in run.stdout
    assert "the expert autopilot on the same seeds" in run.stdout
    assert "crash prevention: the obstacle head was trained (validation mAP50 0.052): box rules on" in run.stdout


def test_every_code_folder_is_a_package_an_install_carries():
    """`pip install .` takes the packages setuptools finds: a folder of modules without __init__.py (crew2/io was
    one) works from a clone and is missing from every install."""
    from setuptools import find_packages

    found = {p.replace(".", "/") for p in find_packages(str(ROOT), include=["crew2", "crew2.*"])}
    folders = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "crew2").rglob("*.py")}
    assert folders <= found, f"not packages: {sorted(folders - found)}"
