"""`crew2 record` put together: a validated config, the parts chosen by name, hotkeys, focus, countdown."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crew2 import x11
from crew2.data.session import SessionMeta
from crew2.errors import Crew2Error
from crew2.io.band import Band
from crew2.io.control import Control, Hotkeys, countdown
from crew2.io.platform import SCREEN_SOURCES, check_capture, current, open_screen_game
from crew2.keys import KeyProfile, default_profile
from crew2.record.recorder import RecordStats, blank_warning, record_loop
from crew2.record.writer import BackgroundWriter
from crew2.sim.sources import SimSource
from crew2.sim.world import CLASSES, SimConfig

log = logging.getLogger(__name__)
SOURCES = ("sim", *SCREEN_SOURCES)
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
    window: str | None = None  # title substring or program, --source window
    capture: str = "auto"  # how a window is read (crew2.io.capture.CAPTURES)
    region: x11.Rect | None = None  # --source screen
    monitor: int = 1
    countdown: float = 3.0
    discard_seconds: float = 5.0
    display: str | None = None  # X11 display name; None = $DISPLAY
    sim: SimConfig | None = None
    seed: int = 0
    noise: float = 0.0
    late: float = 0.0  # sim: share of the autopilot's lane changes held back (see NoisyAutopilot)
    band: Band | None = None  # the horizon band stored under each frame (crew2.io.band)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise Crew2Error(f"unknown source '{self.source}': use one of {', '.join(SOURCES)}")
        if not 1 <= self.fps <= 60:
            raise Crew2Error(f"--fps must be between 1 and 60, not {self.fps}")
        if self.source in SCREEN_SOURCES:  # before any device is opened
            check_capture(self.capture, self.source, current())
        if not 50 <= self.quality <= 100:
            raise Crew2Error(f"--quality must be between 50 and 100, not {self.quality}")
        if self.width < 32 or self.height < 18:
            raise Crew2Error(f"frame size {self.width}x{self.height} is too small: use at least 32x18")
        if self.width > 4096 or self.height > 4096:  # a network input, not a screenshot: 256x144 is the default
            raise Crew2Error(f"frame size {self.width}x{self.height} is too large: use at most 4096x4096")
        if self.source == "window" and not self.window:
            raise Crew2Error("--source window needs --window TITLE (a part of the game window's title)")
        if self.source == "sim" and self.seconds is None and self.frames is None:
            raise Crew2Error("the sim records until told: give --seconds or --frames")
        if not 0 <= self.late <= 1:
            raise Crew2Error(f"--late must be between 0 and 1, not {self.late}")
        if self.countdown < 0 or self.discard_seconds < 0:
            raise Crew2Error("--countdown and --discard-seconds must be zero or more")
        if (self.frames is not None and self.frames < 1) or (self.seconds is not None and self.seconds <= 0):
            raise Crew2Error("--frames must be 1 or more and --seconds more than zero")
        self.out = self.out or Path("sessions") / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.source}.h5"


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
        game = open_screen_game(stack, config.source, fps=config.fps, window=config.window, region=config.region,
                                monitor=config.monitor, display=config.display, keys=config.profile.keys,
                                hotkeys=tuple(HOTKEYS.values()), capture=config.capture)
        if config.band is not None:  # before the session file is made: a window too small leaves none
            config.band.check(game.size, (config.width, config.height))
        writer = BackgroundWriter(config.out, _meta(config, game.region))
        stack.callback(writer.close)
        countdown(config.countdown, on_countdown)
        control = Control()
        hotkeys = Hotkeys(game.keys, control, game.focused, HOTKEYS, config.discard_seconds)
        return record_loop(game.source, game.keys, writer, fps=config.fps, size=(config.width, config.height),
                           max_frames=config.frames, max_seconds=config.seconds, control=control,
                           on_tick=on_tick, poll=hotkeys.poll, band=config.band)


def _record_sim(config: RecordConfig, on_tick) -> RecordStats:
    sim = config.sim or SimConfig(width=config.width, height=config.height, fps=config.fps)
    if config.band is not None:
        sim = sim.for_band(config.band, (config.width, config.height))
    meta = _meta(config, None, driver="autopilot")
    meta.sim = {"seed": config.seed, "noise": config.noise, "late": config.late, "config": dataclasses.asdict(sim)}
    writer = BackgroundWriter(config.out, meta)
    try:
        with SimSource(sim, config.profile, seed=config.seed, noise=config.noise, late=config.late) as src:
            stats = record_loop(src, src, writer, fps=config.fps, size=(config.width, config.height),
                                realtime=False, max_frames=config.frames, max_seconds=config.seconds,
                                on_tick=on_tick, band=config.band)
    finally:
        writer.close()
    return stats


def _meta(config: RecordConfig, region: x11.Rect | None, driver: str = "human") -> SessionMeta:
    size = (config.width, config.height)
    width, height = config.band.stacked(size) if config.band is not None else size
    return SessionMeta.for_profile(
        config.profile, fps=config.fps, width=width, height=height, source=config.source, driver=driver,
        band=config.band.to_dict() if config.band is not None else None, jpeg_quality=config.quality,
        region=None if region is None else [region.left, region.top, region.width, region.height],
        class_names=list(CLASSES) if config.source == "sim" else [])


def status_line(stats: RecordStats, config: RecordConfig, final: bool = False) -> str:
    """One line of recording status (pure: a function of the stats and the config)."""
    size = config.out.stat().st_size / 1e6 if config.out.exists() else 0.0
    pressed = "".join(k.upper() if on else "." for k, on in zip(config.profile.keys, stats.keys, strict=True)) \
        if stats.keys is not None else ""
    head = f"wrote {config.out}" if final else f"recording {config.out}"
    return (f"{head}: {stats.frames} frames, {stats.elapsed:.1f} s, {stats.fps:.1f}/{config.fps:g} fps, "
            f"{stats.dropped} dropped, {stats.late} late, {stats.discarded} discarded, {size:.1f} MB"
            + (f", {stats.blank_frames} with nothing to see" if final and stats.blank_frames else "")
            + ("" if final else f"  keys {pressed}")
            + (f"\n{warning}" if not final and (warning := blank_warning(stats)) else ""))
