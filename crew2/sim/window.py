"""The simulator in a real window (pygame): a person plays it with the keyboard, or watches the autopilot.

The window has a stable title (`WINDOW_TITLE`) so crew2's own window source can find it, capture it with
mss and drive it with injected key events, exactly as it would a game.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from crew2.io.person import Gate, XHands
from crew2.sim.autopilot import Autopilot
from crew2.sim.env import SimEnv
from crew2.sim.world import Metrics, SimConfig, World

WINDOW_TITLE = "crew2 sim"
HELP = "W/Up throttle  S/Down brake  A/Left D/Right steer  P pause  R restart  Esc quit"


@dataclass
class WindowOptions:
    seed: int = 0
    autopilot: bool = False
    guard: bool = False  # the keyboard drives (crew2); the autopilot takes over in trouble, through XTest
    scale: int = 1
    seconds: float | None = None  # close by itself after this much wall time
    episodes: int | None = None  # close by itself after this many episodes


class Guard:
    """The autopilot as the person behind crew2 (HG-DAgger's gate): it takes the keys when the car is off the road,
    has just hit something, closes on something ahead with under `ttc` seconds to go, or has stood `stand_s`, and
    gives them back once the car has run `settle_s` in its lane with room ahead."""

    KEYS = ("w", "s", "a", "d")  # throttle, brake, left, right: the order of the autopilot's roles

    def __init__(self, fps: float, hands: XHands | None = None, ttc: float = 1.0, stand_s: float = 2.0,
                 settle_s: float = 1.0):
        self.hands, self.ttc, self.stand, self.settle = hands, ttc, round(stand_s * fps), round(settle_s * fps)
        self.reset()

    def reset(self) -> None:
        """A new episode."""
        self.pilot = Autopilot(commit=False)
        self.gate = Gate(self.settle)
        self.standing = 0

    def act(self, world: World) -> None:
        """This frame: take the keys through the hands, or leave them to crew2."""
        keys = self.keys(world)
        if keys is not None:
            self.hands.take(keys)
        else:
            self.hands.hold(frozenset(), shared=True)

    def keys(self, world: World) -> frozenset[str] | None:
        """The keys to hold this frame while the autopilot drives; None while crew2 does."""
        p, track = world.player, world.track
        own = int(track.lane_of(p.d))
        gap, lead_v = self.pilot._free_ahead(world, own)
        closing = p.v - lead_v
        self.standing = self.standing + 1 if p.v < 0.5 else 0
        trouble = (world.offroad or world.events.crashed or self.standing > self.stand
                   or (closing > 0 and gap < self.ttc * closing))
        calm = (not world.offroad and p.v > 5.0 and gap > 2.0 * p.v + 10.0
                and abs(p.d - float(track.lane_centre(own))) < 0.6)
        roles = self.pilot.act(world)  # every frame: it keeps its own state
        if not self.gate.update(trouble, calm):
            return None
        return frozenset(key for key, on in zip(self.KEYS, roles, strict=True) if on)


def play(config: SimConfig, options: WindowOptions) -> list[dict[str, float]]:
    """Open the window and run until the player quits (Esc, closing it) or a limit is reached.
    Returns one summary per episode, the unfinished one included."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    pygame.display.init()
    pygame.font.init()
    hands = None
    try:
        size = (config.width * options.scale, config.height * options.scale)
        screen = pygame.display.set_mode(size)
        pygame.display.set_caption(WINDOW_TITLE)
        font = pygame.font.Font(None, max(16, size[1] // 18))
        keymap = {
            "throttle": (pygame.K_w, pygame.K_UP), "brake": (pygame.K_s, pygame.K_DOWN),
            "left": (pygame.K_a, pygame.K_LEFT), "right": (pygame.K_d, pygame.K_RIGHT),
        }
        env, pilot = SimEnv(config), Autopilot()
        seed = options.seed
        env.reset(seed=seed)
        hands = XHands(Guard.KEYS) if options.guard else None
        guard = Guard(config.fps, hands) if options.guard else None
        results: list[dict[str, float]] = []
        clock, start = pygame.time.Clock(), pygame.time.get_ticks()
        running, paused = True, False
        roles = (False, False, False, False)
        while running:
            quit_, pause, restart = _events(pygame)
            running = running and not quit_
            if pause:
                paused, roles = not paused, (False, False, False, False)
            if restart:
                results.append(_summary(seed, env, guard))
                env.reset(seed=seed)
                for driver in (pilot, guard or pilot):
                    driver.reset()
            if not paused and running:
                if options.autopilot:
                    roles = pilot.act(env.world)
                else:
                    if guard is not None:  # its keys reach the game as a person's: through the keyboard
                        guard.act(env.world)
                    pressed = pygame.key.get_pressed()
                    roles = tuple(any(pressed[k] for k in keymap[r]) for r in ("throttle", "brake", "left", "right"))
                _, _, terminated, truncated, _ = env.step(env.action_of(*roles))
                if terminated or truncated:
                    results.append(_summary(seed, env, guard))
                    seed += 1
                    env.reset(seed=seed)
                    for driver in (pilot, guard or pilot):
                        driver.reset()
                    if options.episodes is not None and len(results) >= options.episodes:
                        running = False
            frame = pygame.surfarray.make_surface(np.ascontiguousarray(env.frame.image.swapaxes(0, 1)))
            if options.scale != 1:
                frame = pygame.transform.scale(frame, size)
            screen.blit(frame, (0, 0))
            _draw_hud(screen, font, env, roles, paused, _driver(options, guard))
            pygame.display.flip()
            clock.tick(config.fps)
            if options.seconds is not None and pygame.time.get_ticks() - start > options.seconds * 1000:
                running = False
        if env.world.metrics.time > 0 or not results:  # the episode under way
            results.append(_summary(seed, env, guard))
        return results
    finally:
        if hands is not None:
            hands.close()
        pygame.quit()


def _events(pygame) -> tuple[bool, bool, bool]:
    """The window's own keys since the last frame: quit (Esc, closing it), pause (P), restart (R)."""
    quit_ = pause = restart = False
    for event in pygame.event.get():
        quit_ = quit_ or event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE)
        pause ^= event.type == pygame.KEYDOWN and event.key == pygame.K_p
        restart = restart or (event.type == pygame.KEYDOWN and event.key == pygame.K_r)
    return quit_, pause, restart


def _driver(options: WindowOptions, guard: Guard | None) -> str:
    """Who drives, for the HUD ("" the person at the keyboard)."""
    if options.autopilot:
        return "autopilot"
    return "" if guard is None else "guard: AUTOPILOT DRIVES" if guard.gate.driving else "guard"


def _summary(seed: int, env: SimEnv, guard: Guard | None) -> dict[str, float]:
    guarded = {} if guard is None else {"takeovers": guard.gate.takeovers, "guarded_frames": guard.gate.frames}
    return {"seed": seed, **env.world.metrics.summary(), **guarded}


def _draw_hud(screen, font, env: SimEnv, roles: tuple[bool, ...], paused: bool, driver: str) -> None:
    m: Metrics = env.world.metrics
    lines = [f"{3.6 * env.world.player.v:5.0f} km/h", f"{m.distance / 1000:5.2f} km",
             f"crashes {m.collisions}", "  ".join(k if on else "." for k, on in zip("WSAD", roles, strict=True))]
    if driver:
        lines.append(driver)
    if paused:
        lines.append("PAUSED  " + HELP)
    y = 4
    for text in lines:
        shadow = font.render(text, True, (0, 0, 0))
        screen.blit(shadow, (7, y + 1))
        screen.blit(font.render(text, True, (255, 255, 255)), (6, y))
        y += font.get_linesize()
