"""Closed-loop evaluation: the network drives the simulator through the real drive loop, on the same seeds
as the expert autopilot, with and without crash prevention. Driving quality is judged here, not by F1."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from crew2.drive.run import DriveConfig, drive
from crew2.errors import Crew2Error
from crew2.io.control import Control
from crew2.model.engine import Engine
from crew2.sim.episodes import mean_summary, run_autopilot
from crew2.sim.world import SimConfig

DRIVERS = ("autopilot", "model", "model + fusion")


def parse_seeds(text: str, episodes: int) -> list[int]:
    """'1000' (the first of `episodes` seeds), '1000-1019' (inclusive) or '3,5,8'."""
    try:
        if "," in text:
            return [int(v) for v in text.split(",")]
        if "-" in text.strip("-"):
            first, last = (int(v) for v in text.split("-", 1))
            if last < first:
                raise ValueError
            return list(range(first, last + 1))
        return list(range(int(text), int(text) + episodes))
    except ValueError:
        raise Crew2Error(f"--seeds must be FIRST, FIRST-LAST or a,b,c, not '{text}'") from None


def model_episodes(engine: Engine, weights: Path, seeds: Iterable[int], sim: SimConfig, fusion: bool,
                   rules: Path | None = None, on_episode: Callable[[dict], None] | None = None,
                   box_rules: str = "auto") -> list[dict]:
    """One episode per seed driven by the network (not paced: as fast as it runs); one summary each. Ctrl+C or
    SIGTERM ends the episode being driven and the whole run (KeyboardInterrupt), not just that episode.
    `box_rules` as `crew2 drive --box-rules` (`run.box_rules`)."""
    results = []
    control = Control()  # one for all the episodes: the drive loop sets its stop flag on a signal
    for seed in seeds:
        cfg = DriveConfig(weights=weights, source="sim", fps=sim.fps, fusion=fusion, rules=rules, countdown=0,
                          seed=seed, sim=sim, box_rules=box_rules)
        result = drive(cfg, engine=engine, control=control)
        if control.stop.is_set():
            raise KeyboardInterrupt(f"stopped during the episode on seed {seed}")
        results.append({"seed": seed, **result.sim, "late": result.stats.late})
        if on_episode is not None:
            on_episode(results[-1])
    return results


def compare(engine: Engine, weights: Path, seeds: list[int], sim: SimConfig, rules: Path | None = None,
            on_episode: Callable[[str, dict], None] | None = None, box_rules: str = "auto") -> dict[str, list[dict]]:
    """Per driver (autopilot, model, model + fusion), the per-episode summaries on the same seeds. "model +
    fusion" acts on the network's boxes only as `box_rules` says (`run.box_rules`: by default, only when its
    obstacle head was trained)."""
    def hook(name: str) -> Callable[[dict], None] | None:
        return None if on_episode is None else (lambda r: on_episode(name, r))

    autopilot, model, fused = DRIVERS
    results = {autopilot: run_autopilot(sim, seeds)}
    if on_episode is not None:
        for r in results[autopilot]:
            on_episode(autopilot, r)
    results[model] = model_episodes(engine, weights, seeds, sim, False, rules, hook(model))
    results[fused] = model_episodes(engine, weights, seeds, sim, True, rules, hook(fused), box_rules)
    return results


def summary(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Means per driver, with each driver's distance as a share of the autopilot's."""
    means = {name: mean_summary(eps) for name, eps in results.items()}
    base = means.get("autopilot", {}).get("distance_m", 0.0)
    for m in means.values():
        m["distance_vs_autopilot"] = round(m["distance_m"] / base, 3) if base else float("nan")
    return means
