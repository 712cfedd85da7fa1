"""Benchmarks (`crew2 bench ...`): measured figures for the README, never asserted by tests."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from crew2.sim.autopilot import Autopilot
from crew2.sim.episodes import mean_summary, run_autopilot
from crew2.sim.render import Appearance, Renderer
from crew2.sim.world import SimConfig, World


def machine() -> dict[str, str | int]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        cpu = models[0] if models else cpu
    return {"cpu": cpu, "cores": os.cpu_count() or 0,
            "python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}


@contextmanager
def one_core() -> Iterator[bool]:
    """Run the block on a single core, OpenCV single-threaded, as the targets are stated; restores both.
    Yields whether pinning was possible (not on every OS)."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    try:
        if cores is not None:
            os.sched_setaffinity(0, {min(cores)})
        yield cores is not None
    finally:
        cv2.setNumThreads(threads)
        if cores is not None:
            os.sched_setaffinity(0, cores)


def bench_sim(config: SimConfig, seconds: float = 3.0, seeds: int = 5) -> dict[str, float]:
    """Headless frames/s of the whole loop (autopilot + world step + render) and each stage's cost,
    over `seconds` of wall time on episodes of seed 0, 1, ...; then the autopilot's driving on `seeds`."""
    spent = {"autopilot": 0.0, "step": 0.0, "render": 0.0}
    frames, seed, clock = 0, 0, time.perf_counter
    start = clock()
    while clock() - start < seconds:
        world, pilot = World(config, seed), Autopilot()
        renderer = Renderer(config.width, config.height, Appearance(), config.lanes, seed)
        while not (world.finished or world.timed_out) and clock() - start < seconds:
            t0 = clock()
            keys = pilot.act(world)
            t1 = clock()
            world.step(*keys)
            t2 = clock()
            renderer.render(world)
            t3 = clock()
            spent["autopilot"] += t1 - t0
            spent["step"] += t2 - t1
            spent["render"] += t3 - t2
            frames += 1
        seed += 1
    total = sum(spent.values())
    out = {"frames": frames, "size": f"{config.width}x{config.height}",
           "step_render_fps": round(frames / (spent["step"] + spent["render"]), 1),
           "loop_fps": round(frames / total, 1)}
    out.update({f"{k}_us": round(1e6 * v / max(frames, 1), 1) for k, v in spent.items()})
    driving = mean_summary(run_autopilot(config, range(seeds)))
    return {**out, **{f"autopilot_{k}": v for k, v in driving.items()}}
