"""`crew2 record` put together: a validated config, the parts chosen by name, hotkeys, focus, countdown."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crew2 import x11
from crew2.data.session import SessionMeta
from crew2.errors import Crew2Error
from crew2.keys import KeyProfile, default_profile
from crew2.record.recorder import RecordControl, RecordStats, record_loop
from crew2.record.sources import SimSource, X11Keys, X11Window, screen_source
from crew2.record.writer import BackgroundWriter
from crew2.sim.world import CLASSES, SimConfig

log = logging.getLogger(__name__)
SOURCES = ("sim", "screen", "window")
HOTKEYS = {"pause": "f9", "stop": "f10", "discard": "f8"}  # F8 drops the last `discard_seconds`


@dataclass
class RecordConfig:
    source: str = "sim"
    out: Path | None = None
    fps: float = 20.0
    width: int = 256
    height: int = 144
    quality: int = 90
    seconds: float | None = None
    frames: int | None = None
    profile: KeyProfile = field(default_factory=default_profile)
    window: str | None = None  # title substring, --source window
    region: x11.Rect | None = None  # --source screen
    monitor: int = 1
    countdown: float = 3.0
    discard_seconds: float = 5.0
    display: str | None = None  # X11 display name; None = $DISPLAY
    sim: SimConfig | None = None
    seed: int = 0
    noise: float = 0.0
    late: float = 0.0  # sim: share of the autopilot's lane changes held back (see NoisyAutopilot)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise Crew2Error(f"unknown source '{self.source}': use one of {', '.join(SOURCES)}")
        if not 1 <= self.fps <= 60:
            raise Crew2Error(f"--fps must be between 1 and 60, not {self.fps}")
        if not 50 <= self.quality <= 100:
            raise Crew2Error(f"--quality must be between 50 and 100, not {self.quality}")
        if self.width < 32 or self.height < 18:
            raise Crew2Error(f"frame size {self.width}x{self.height} is too small: use at least 32x18")
        if self.source == "window" and not self.window:
            raise Crew2Error("--source window needs --window TITLE (a part of the game window's title)")
        if self.source == "sim" and self.seconds is None and self.frames is None:
            raise Crew2Error("the sim records until told: give --seconds or --frames")
        if not 0 <= self.late <= 1:
            raise Crew2Error(f"--late must be between 0 and 1, not {self.late}")
        if self.countdown < 0 or self.discard_seconds < 0:
            raise Crew2Error("--countdown and --discard-seconds must be zero or more")
        self.out = self.out or Path("sessions") / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.source}.h5"


def _win32_keys(config: RecordConfig, extra: tuple[str, ...]):
    from crew2.record.win32 import WinKeys

    return WinKeys(config.profile, extra)


def _win32_window(config: RecordConfig):
    from crew2.record.win32 import Win32Window

    return Win32Window(config.window)


# Key readers and game windows per platform (X11 covers Linux desktops and games run through Proton).
KEY_READERS = {"x11": lambda c, extra: X11Keys(c.profile, c.display, extra), "win32": _win32_keys}
WINDOWS = {"x11": lambda c: X11Window(c.window, c.display), "win32": _win32_window}
PLATFORM = "win32" if sys.platform == "win32" else "x11"  # the key in those tables for this machine


def parse_region(text: str) -> x11.Rect:
    """'LEFT,TOP,WIDTH,HEIGHT' -> Rect."""
    try:
        left, top, width, height = (int(v) for v in text.split(","))
    except ValueError:
        raise Crew2Error(f"--region must be LEFT,TOP,WIDTH,HEIGHT in pixels, not '{text}'") from None
    return x11.Rect(left, top, width, height)


def record(config: RecordConfig, on_tick: Callable[[RecordStats], None] | None = None,
           on_countdown: Callable[[float], None] | None = None) -> RecordStats:
    """Record one session into `config.out`. Ctrl+C stops cleanly; the file is always closed with what
    was captured."""
    if config.source == "sim":
        return _record_sim(config, on_tick)
    with contextlib.ExitStack() as stack:
        keys = KEY_READERS[PLATFORM](config, tuple(HOTKEYS.values()))
        stack.callback(keys.close)
        focused: Callable[[], bool] = lambda: True  # noqa: E731
        if config.source == "window":
            window = WINDOWS[PLATFORM](config)
            stack.callback(window.close)
            source, focused = window.source(max_fps=2 * config.fps), window.focused
            region = window.rect()
        else:
            display = config.display if PLATFORM == "x11" else None
            source = screen_source(config.region, config.monitor, display, max_fps=2 * config.fps)
            region = config.region
        meta = _meta(config, region)
        writer = BackgroundWriter(config.out, meta)
        stack.callback(writer.close)
        stack.enter_context(source)
        _countdown(config.countdown, on_countdown)
        control = RecordControl()
        hotkeys = Hotkeys(keys, control, focused, HOTKEYS, config.discard_seconds)
        stats = record_loop(source, keys, writer, fps=config.fps, size=(config.width, config.height),
                            max_frames=config.frames, max_seconds=config.seconds, control=control,
                            on_tick=on_tick, poll=hotkeys.poll)
        return stats


def _record_sim(config: RecordConfig, on_tick) -> RecordStats:
    sim = config.sim or SimConfig(width=config.width, height=config.height, fps=config.fps)
    meta = _meta(config, None, driver="autopilot")
    meta.sim = {"seed": config.seed, "noise": config.noise, "late": config.late, "config": dataclasses.asdict(sim)}
    writer = BackgroundWriter(config.out, meta)
    try:
        with SimSource(sim, config.profile, seed=config.seed, noise=config.noise, late=config.late) as src:
            stats = record_loop(src, src, writer, fps=config.fps, size=(config.width, config.height),
                                realtime=False, max_frames=config.frames, max_seconds=config.seconds,
                                on_tick=on_tick)
    finally:
        writer.close()
    return stats


def _meta(config: RecordConfig, region: x11.Rect | None, driver: str = "human") -> SessionMeta:
    return SessionMeta.for_profile(
        config.profile, fps=config.fps, width=config.width, height=config.height, source=config.source,
        driver=driver, jpeg_quality=config.quality,
        region=None if region is None else [region.left, region.top, region.width, region.height],
        class_names=list(CLASSES) if config.source == "sim" else [])


def _countdown(seconds: float, show: Callable[[float], None] | None) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if show is not None:
            show(left)
        time.sleep(min(0.25, left))


class Hotkeys:
    """Edge-triggered hotkeys (`bindings`: action -> key) read from a key reader (None: no keyboard, e.g. the
    in-process sim), plus the focus guard: while the game window is not in front, `control` is paused.
    Actions: pause (toggles), stop, discard (recording: drop the last `discard` seconds)."""

    def __init__(self, keys: X11Keys | None, control, focused: Callable[[], bool], bindings: dict[str, str],
                 discard: float = 0.0):
        self.keys, self.control, self.focused, self.bindings, self.discard = keys, control, focused, bindings, discard
        self.was_down = {name: False for name in bindings}
        self.user_paused = False

    def toggle_pause(self) -> None:
        self.user_paused = not self.user_paused

    def poll(self) -> None:
        if self.keys is not None:
            self.keys.read()
            for name, key in self.bindings.items():
                down = self.keys.down(key)
                if down and not self.was_down[name]:
                    if name == "stop":
                        self.control.stop.set()
                    elif name == "pause":
                        self.toggle_pause()
                    elif name == "discard":
                        self.control.discard_seconds = self.discard
                self.was_down[name] = down
        if self.user_paused or not self.focused():
            self.control.paused.set()
        else:
            self.control.paused.clear()


def status_line(stats: RecordStats, config: RecordConfig, final: bool = False) -> str:
    """One line of recording status (pure: a function of the stats and the config)."""
    size = config.out.stat().st_size / 1e6 if config.out.exists() else 0.0
    pressed = "".join(k.upper() if on else "." for k, on in zip(config.profile.keys, stats.keys, strict=True)) \
        if stats.keys is not None else ""
    head = f"wrote {config.out}" if final else f"recording {config.out}"
    return (f"{head}: {stats.frames} frames, {stats.elapsed:.1f} s, {stats.fps:.1f}/{config.fps:g} fps, "
            f"{stats.dropped} dropped, {stats.late} late, {stats.discarded} discarded, {size:.1f} MB"
            + ("" if final else f"  keys {pressed}"))
