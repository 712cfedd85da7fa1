"""Headless episodes: drive the simulator with a policy and collect each episode's metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from crew2.sim.autopilot import Autopilot, NoisyAutopilot
from crew2.sim.env import SimEnv
from crew2.sim.world import SimConfig


def run_autopilot(config: SimConfig, seeds: Iterable[int], noise: float = 0.0,
                  on_step: Callable[[SimEnv], None] | None = None) -> list[dict[str, float]]:
    """Drive one episode per seed with the expert (optionally with DART noise); one summary per episode."""
    env = SimEnv(config)
    results = []
    for seed in seeds:
        env.reset(seed=seed)
        driver = NoisyAutopilot(Autopilot(), noise, seed=seed, fps=config.fps)
        done = False
        while not done:
            executed, _label = driver.act(env.world)
            _, _, terminated, truncated, _ = env.step(env.action_of(*executed))
            done = terminated or truncated
            if on_step is not None:
                on_step(env)
        results.append({"seed": seed, **env.world.metrics.summary()})
    return results


def mean_summary(results: list[dict[str, float]]) -> dict[str, float]:
    """Averages over episodes (collisions too: a mean row that summed them read as one bad episode); collisions
    per km over the total distance, not a mean of ratios."""
    n = max(len(results), 1)
    distance = sum(r["distance_m"] for r in results)
    collisions = sum(r["collisions"] for r in results)
    time = sum(r["time_s"] for r in results)
    return {"episodes": len(results), "distance_m": round(distance / n, 1),
            "avg_speed_kmh": round(3.6 * distance / max(time, 1e-9), 1), "collisions": round(collisions / n, 2),
            "collisions_per_km": round(collisions / max(distance / 1000, 1e-9), 3),
            "offroad_s": round(sum(r["offroad_s"] for r in results) / n, 2),
            "score": round(sum(r["score"] for r in results) / n, 1)}
