"""CarRacing-v3 as a game crew2 did not write: a real pygame window that reads its keyboard as a game does.

    python -m crew2.carracing.game --seeds 7,8 --results scores.jsonl [--expert] [--wait]

Each seed is one track, played to its end (the lap, or Gymnasium's 1,000-frame limit); one JSON line per
track goes to `--results` with the game's own score. The arrow keys drive (Gymnasium's keyboard mapping). With
`--expert`, the scripted expert reads the game's state and presses the arrow keys through XTest, as a person's
keyboard would: the game, a recorder and a driver all see only key events. With `--guard`, someone else drives
(crew2) and the expert takes the keys only when the car is in trouble, as a person correcting crew2 does
(`crew2.carracing.expert.Guard`); each track's record then says how often and how long. With `--wait` the first
track shows its start until SIGUSR1 (a benchmark starts the clock when its driver is ready); after the last track
the window stays until SIGTERM or SIGINT, so a driver watching it ends first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path

from crew2.carracing.expert import KEYS, Expert, Guard, action_of
from crew2.io.person import XHands

TITLE = "CarRacing-v3"  # the window's title: `crew2 record/drive --source window --window CarRacing`
FPS = 50  # the game's own frame rate (Gymnasium's metadata)
FRAMES = 1000  # Gymnasium's limit on one track: 20 s at FPS


def _pressed(pygame) -> frozenset[str]:
    state = pygame.key.get_pressed()
    codes = {"up": pygame.K_UP, "down": pygame.K_DOWN, "left": pygame.K_LEFT, "right": pygame.K_RIGHT}
    return frozenset(k for k, code in codes.items() if state[code])


def _focus_own_window(pygame) -> None:
    """Give the game window the keyboard, as a click on it would (under Xvfb there is no window manager)."""
    from crew2 import x11

    dpy = x11.open_display()
    x11.focus(dpy, dpy.create_resource_object("window", pygame.display.get_wm_info()["window"]))
    dpy.close()


class HowItWent:
    """What a track's score does not say: how fast the car went, how long it had no wheel on the road or pointed
    the wrong way, and how long the track took on the wall clock (a game slowed by a busy machine gives its
    driver more decisions per game frame)."""

    def __init__(self):
        self.frames = self.offroad = self.wrong_way = 0
        self.speed = 0.0

    def add(self, expert: Expert, env) -> None:
        off, speed = expert.where(env)
        self.frames += 1
        self.speed += speed
        self.offroad += not any(wheel.tiles for wheel in env.car.wheels)
        self.wrong_way += off > 1.5

    def summary(self, wall_s: float) -> dict:
        n = max(self.frames, 1)
        return {"speed": round(self.speed / n, 1), "offroad_s": round(self.offroad / FPS, 1),
                "wrong_way_s": round(self.wrong_way / FPS, 1), "wall_s": round(wall_s, 1)}


def play(seeds: list[int], results: Path | None = None, expert: bool = False, wait: bool = False,
         minutes: float | None = None, start_delay: float = 0.0, frames: int = FRAMES,
         guard: float | None = None) -> list[dict]:
    """Play one track per seed in the window; returns (and appends to `results`) one record per track.
    `guard`: another driver plays, and the expert takes over when the car is in trouble (or still stands this
    many seconds into a track).
    `minutes` stops the play after that much wall-clock time (a recording budget), mid-track if need be.
    `start_delay`: the expert waits this long on each start before pressing anything, as a person does.
    `frames`: a track ends after this many of the game's frames (Gymnasium's limit, unless changed)."""
    import gymnasium as gym
    import pygame

    go, quit_ = threading.Event(), threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: go.set())
    signal.signal(signal.SIGTERM, lambda *_: quit_.set())
    signal.signal(signal.SIGINT, lambda *_: quit_.set())
    env = gym.make("CarRacing-v3", render_mode="human", max_episode_steps=frames)
    hands = XHands(KEYS) if expert or guard is not None else None
    records: list[dict] = []
    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    try:
        for n, seed in enumerate(seeds):
            env.reset(seed=seed)
            pygame.display.set_caption(TITLE)
            if n == 0:
                _focus_own_window(pygame)
                clock = pygame.time.Clock()
                while wait and not go.is_set() and not quit_.is_set():  # the start, shown until the driver is ready
                    pygame.event.pump()
                    clock.tick(FPS)
            driver, score, steps, done = Expert(), 0.0, 0, False
            gate = Guard(driver, FPS, grace_s=guard) if guard is not None else None
            started, how = time.monotonic(), HowItWent()
            while not (done or quit_.is_set()) and (deadline is None or time.monotonic() < deadline):
                if gate is not None:
                    if (keys := gate.keys(env.unwrapped)) is not None:
                        hands.take(keys)
                    else:
                        hands.hold(frozenset(), shared=True)
                elif hands is not None:
                    hands.hold(driver.keys(env.unwrapped) if time.monotonic() - started >= start_delay
                               else frozenset())
                _, reward, terminated, truncated, _ = env.step(action_of(_pressed(pygame)))
                score, steps, done = score + reward, steps + 1, terminated or truncated
                how.add(driver, env.unwrapped)
            game = env.unwrapped
            record = {"seed": seed, "score": round(score, 1), "frames": steps, "tiles": game.tile_visited_count,
                      "of": len(game.track), "complete": bool(done),
                      "driver": "expert" if expert else "guarded" if guard is not None else "keyboard",
                      **how.summary(time.monotonic() - started)}
            if gate is not None:
                record.update(takeovers=gate.gate.takeovers, guarded_frames=gate.gate.frames)
            records.append(record)
            if results is not None:
                with open(results, "a") as f:
                    f.write(json.dumps(record) + "\n")
            if quit_.is_set() or not done:
                break
        if hands is not None:
            hands.hold(frozenset())
        while wait and not quit_.is_set():  # the last picture stays until the driver has stopped
            pygame.event.pump()
            time.sleep(0.02)
    finally:
        if hands is not None:
            hands.close()
        env.close()
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, help="comma-separated track seeds, played in order")
    parser.add_argument("--results", type=Path, help="append one JSON line per track here")
    parser.add_argument("--expert", action="store_true", help="the scripted expert plays through XTest")
    parser.add_argument("--guard", type=float, nargs="?", const=1.0, metavar="GRACE_S",
                        help="another driver plays; the expert takes over in trouble or after GRACE_S standing")
    parser.add_argument("--wait", action="store_true", help="start on SIGUSR1; stay open until SIGTERM")
    parser.add_argument("--minutes", type=float, help="stop after this much play (wall clock)")
    parser.add_argument("--start-delay", type=float, default=0.0, help="the expert's wait at each start, s")
    parser.add_argument("--frames", type=int, default=FRAMES, help="a track ends after this many game frames")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for r in play(seeds, args.results, args.expert, args.wait, args.minutes, args.start_delay, args.frames,
                  args.guard):
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()

