"""`crew2 drive` put together: a validated config; source, sender and focus guard chosen by name."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from crew2 import x11
from crew2.drive.decoder import DecoderConfig, KeyDecoder
from crew2.drive.fusion import Rules
from crew2.drive.loop import DriveStats, FrameLog, drive_loop
from crew2.drive.takeover import HANDBACK, MARGIN, Corrections, Takeover
from crew2.errors import Crew2Error
from crew2.io.band import Band
from crew2.io.control import Control, Hotkeys, countdown
from crew2.io.keyguard import KeyGuard
from crew2.io.platform import SCREEN_SOURCES, check_capture, current, open_screen_game
from crew2.keys import KeyProfile
from crew2.model.checkpoint import detector_trained
from crew2.model.engine import Engine, ModelInfo, load_engine
from crew2.outputs import check_output
from crew2.sim.world import SimConfig

SOURCES = ("sim", *SCREEN_SOURCES)
HOTKEYS = {"pause": "f9", "stop": "f10"}
BOX_RULES = ("auto", "on", "off")  # auto: on when the obstacle head was trained (checkpoint.detector_trained)


@dataclass
class DriveConfig:
    weights: Path
    source: str = "window"
    window: str | None = None
    capture: str = "auto"  # how a window is read (crew2.io.capture.CAPTURES)
    region: x11.Rect | None = None
    engine: str = "auto"
    fps: float | None = None  # control rate; None: `control_rate`
    fusion: bool = True
    rules: Path | None = None
    box_rules: str = "auto"  # crash prevention's rules that act on the network's boxes: auto, on or off
    dry_run: bool = False
    countdown: float = 3.0
    seconds: float | None = None
    log: Path | None = None
    display: str | None = None
    seed: int = 0  # --source sim
    sim: SimConfig | None = None
    show: bool = False  # the debug window; the sim then runs in real time
    record: Path | None = None  # also store the session (frames and the keys sent), driver "model"
    expert_labels: bool = False  # --source sim --record: store the autopilot's keys for each frame (DAgger)
    mp4: Path | None = None  # a video of what --show shows
    hotkeys: bool = True  # F9 pause/resume, F10 stop (window and screen sources)
    takeover: bool = True  # a key of the profile that the person presses takes over (window and screen sources)
    handback: float = HANDBACK  # s after the person's last key, the model drives again
    corrections: Path | None = None  # store the takeovers (+ `margin` s before each) as a corrections session
    margin: float = MARGIN

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise Crew2Error(f"unknown source '{self.source}': use one of {', '.join(SOURCES)}")
        if self.source == "window" and not self.window:
            raise Crew2Error("--source window needs --window TITLE")
        if self.source in SCREEN_SOURCES:  # before any device is opened
            check_capture(self.capture, self.source, current())
        if self.box_rules not in BOX_RULES:
            raise Crew2Error(f"--box-rules must be one of {', '.join(BOX_RULES)}, not '{self.box_rules}'")
        if self.fps is not None and not 1 <= self.fps <= 120:
            raise Crew2Error(f"--fps must be between 1 and 120, not {self.fps}")
        if self.expert_labels and (self.source != "sim" or self.record is None):
            raise Crew2Error("--expert-labels needs --source sim and --record FILE (it labels what is recorded)")
        if self.corrections is not None and (self.source == "sim" or not self.takeover):
            raise Crew2Error("--corrections stores a person's takeovers: it needs --source window or screen "
                             "and --takeover")
        if self.handback < 0 or self.margin < 0:
            raise Crew2Error("--handback and --margin must be zero or more")
        if self.countdown < 0 or (self.seconds is not None and self.seconds <= 0):
            raise Crew2Error("--countdown must be zero or more and --seconds more than zero")
        check_output(self.log, "log")
        check_output(self.mp4, "video")


@dataclass
class DriveResult:
    stats: DriveStats
    sim: dict[str, float] | None


def sim_for(info: ModelInfo, **kw) -> SimConfig:
    """The simulator drawn for this model: at its frame size, or with a horizon band as it was recorded
    (`SimConfig.for_band`)."""
    band = Band.of(info.band)
    if band is None:
        return SimConfig(width=info.size[0], height=info.size[1], **kw)
    return SimConfig(**kw).for_band(band, info.frame_size)


def box_rules(setting: str, info: ModelInfo) -> tuple[bool, str]:
    """Whether crash prevention acts on the network's boxes, and a line that says so and why. "auto": only
    when the obstacle head was trained (`checkpoint.detector_trained`); boxes from a head that never saw an
    annotated frame are noise, and braking, lifting and keeping clear for them is worse than nothing. Going
    around when the car stands needs no boxes: it stays."""
    if setting not in BOX_RULES:
        raise Crew2Error(f"--box-rules must be one of {', '.join(BOX_RULES)}, not '{setting}'")
    trained, why = detector_trained(info.detector)
    on = trained if setting == "auto" else setting == "on"
    line = f"crash prevention: {why}: box rules {'on' if on else 'off'}"
    if setting != "auto":
        line += f" (--box-rules {setting})"
    return on, line + ("" if on else "; only going around when the car stands stays on")


SCREEN_FPS = 40.0  # a single-frame model on a real-time game (see `control_rate`)
RECORD_FPS = 20.0  # crew2 record's default rate, which a frame-stacked model learnt its frame interval at


def control_rate(cfg: DriveConfig, frames: int) -> float:
    """`cfg.fps`, else: a single-frame model on a window or the screen decides as often as a desktop keeps up with,
    40 a second, twice the recording's rate (on CarRacing through its window, 4 drives at 40 scored 0.80 of the
    expert's, 6 at 20 scored 0.64: the game does not wait for crew2, and a late decision there is a spin); a
    frame-stacked model runs at the rate it was recorded at, and the simulator at its own 20 steps a second."""
    if cfg.fps is not None:
        return cfg.fps
    return SCREEN_FPS if cfg.source != "sim" and frames == 1 else RECORD_FPS


def drive(cfg: DriveConfig, on_frame: Callable[[FrameLog], None] | None = None,
          on_countdown: Callable[[float], None] | None = None, control: Control | None = None,
          engine: Engine | None = None, on_skip: Callable[[str], None] | None = None) -> DriveResult:
    """Drive with `cfg`; `engine`, when the caller has already loaded the model, is used as is. `on_skip`: see
    `drive_loop`."""
    engine = engine or load_engine(cfg.weights, cfg.engine)
    info = engine.info
    cfg = replace(cfg, fps=control_rate(cfg, info.frames))
    decoder = KeyDecoder(info.keys, info.roles, info.thresholds, DecoderConfig())
    rules = Rules.load(cfg.rules) if cfg.fusion else None
    boxes_on, _ = box_rules(cfg.box_rules, info)
    profile = KeyProfile("model", tuple(info.keys), dict(info.roles))
    control = control or Control()
    with contextlib.ExitStack() as stack:
        hooks: list[Callable[[FrameLog], None]] = [on_frame] if on_frame is not None else []
        if cfg.log:
            log = stack.enter_context(open(cfg.log, "w"))
            hooks.append(lambda entry: log.write(json.dumps(entry.to_json()) + "\n"))
        focused: Callable[[], bool] = lambda: True  # noqa: E731
        keys, takeover, outside = None, None, None  # the keyboard: hotkeys and the person's keys; the key guard
        if cfg.source == "sim":
            from crew2.sim.sources import SimGame

            sim = cfg.sim or sim_for(info, fps=cfg.fps)
            game = stack.enter_context(SimGame(sim, profile, cfg.seed, expert=cfg.expert_labels))
            source, sender, realtime = game, game.sender, cfg.show
        else:
            sender = stack.enter_context(current().sender(info.keys, cfg.display))
            if not cfg.dry_run:  # keys released even if this process is killed or stopped
                outside = stack.enter_context(KeyGuard(info.keys, cfg.display)).beat
            watch = cfg.hotkeys or cfg.takeover
            # Ultralytics (NMS, crash prevention's box maths) is imported before the capture thread starts: its
            # import sets OpenCV's thread count, which killed that thread inside an OpenCV call (SIGFPE).
            import ultralytics  # noqa: F401

            screen = open_screen_game(stack, cfg.source, fps=cfg.fps, window=cfg.window, region=cfg.region,
                                      display=cfg.display, keys=info.keys if watch else None,
                                      hotkeys=tuple(HOTKEYS.values()) if cfg.hotkeys else (), capture=cfg.capture,
                                      on_demand=True)
            source, focused, keys, realtime = screen.source, screen.focused, screen.keys, True
            if (band := Band.of(info.band)) is not None:  # before corrections or --record make a file
                band.check(screen.size, info.frame_size)
            if cfg.takeover:
                takeover = Takeover(keys, info.keys, cfg.handback)
            if cfg.corrections is not None:
                corrections = Corrections(cfg.corrections, profile, cfg.fps, info.size, cfg.source, cfg.margin,
                                          info.band)
                stack.callback(corrections.close)
                hooks.append(corrections)
        hotkeys = Hotkeys(keys if cfg.hotkeys else None, control, bindings=HOTKEYS)  # the loop guards focus
        if cfg.record is not None:
            hooks.append(_recorder(stack, cfg, profile, info, game if cfg.source == "sim" else None))
        if cfg.mp4 is not None:
            hooks.append(_video(stack, cfg.mp4, cfg.fps, info, rules))
        if cfg.show:
            from crew2.drive.overlay import ShowWindow

            window_view = ShowWindow(info.keys, info.thresholds, info.class_names, rules,
                                     on_pause=hotkeys.toggle_pause, on_stop=control.stop.set,
                                     frame_rows=info.frame_size[1])
            stack.callback(window_view.close)
            hooks.append(lambda entry: window_view(entry, time.monotonic()))
        countdown(cfg.countdown, on_countdown)  # time to switch to the game before any key goes out
        if cfg.source == "screen" and not cfg.dry_run:  # a window source was checked when it was found
            current().check_front()
        max_steps = None if cfg.seconds is None else int(cfg.seconds * cfg.fps)
        if realtime and cfg.seconds is not None:  # frames not driven (a black picture) do not count as steps
            timer = threading.Timer(cfg.seconds, control.stop.set)
            timer.daemon = True
            timer.start()
            stack.callback(timer.cancel)
        stats = drive_loop(source, engine, decoder, sender, fps=cfg.fps, rules=rules, box_rules=boxes_on,
                           max_steps=max_steps, realtime=realtime, focused=focused, dry_run=cfg.dry_run,
                           control=control, on_frame=lambda entry: [hook(entry) for hook in hooks], poll=hotkeys.poll,
                           takeover=takeover, outside=outside, on_skip=on_skip)
        return DriveResult(stats, source.metrics if cfg.source == "sim" else None)


def _video(stack: contextlib.ExitStack, path: Path, fps: float, info,
           rules: Rules | None) -> Callable[[FrameLog], None]:
    """`--mp4`: every frame with the overlays of `--show` (boxes, corridor, keys, rules), at the control rate."""
    from crew2.drive.overlay import draw
    from crew2.video import Mp4Writer

    writer = stack.enter_context(Mp4Writer(path, fps))

    def add(entry: FrameLog) -> None:
        if entry.frame is not None:
            writer.write(draw(entry, info.keys, info.thresholds, info.class_names, rules,
                              frame_rows=info.frame_size[1]))
    return add


def _recorder(stack: contextlib.ExitStack, cfg: DriveConfig, profile: KeyProfile, info: ModelInfo,
              game=None) -> Callable[[FrameLog], None]:
    """`--record`: a session like `crew2 record` writes, driver "model": each frame the model saw and the
    keys that went out for it (after crash prevention), or with `--expert-labels` the keys the autopilot
    would have pressed there. Frames where nothing was sent are left out. From the simulator (`game`) every
    frame also carries its ground-truth boxes, as `crew2 record --source sim` sessions do."""
    import dataclasses

    import numpy as np

    from crew2.data.session import SIM_TRUTH, SessionMeta
    from crew2.record.writer import BackgroundWriter, Sample
    from crew2.sim.world import CLASSES

    size, band = info.size, Band.of(info.band)
    meta = SessionMeta.for_profile(profile, fps=cfg.fps, width=size[0], height=size[1], source=cfg.source,
                                   driver="model", jpeg_quality=90, region=None, band=info.band,
                                   class_names=list(CLASSES) if game is not None else [])
    if game is not None:
        sim = game.env.config
        meta.sim = {"seed": cfg.seed, "labels": "expert" if cfg.expert_labels else "sent",
                    "config": dataclasses.asdict(sim)}
        scale = np.array([size[0] / sim.width, size[1] / sim.height] * 2 + [1], np.float32)
    writer = BackgroundWriter(cfg.record, meta)
    stack.callback(writer.close)

    def add(entry: FrameLog) -> None:
        if not (entry.sent or cfg.dry_run) or entry.frame is None:
            return
        keys = game.label if cfg.expert_labels else np.array([k in entry.pressed for k in profile.keys], np.uint8)
        boxes = None  # frames without boxes are stored unannotated
        if game is not None:  # the sim's truth, in the pixels the model saw
            boxes = game.boxes() * scale if band is None else band.truth(game.boxes(), (sim.width, sim.height),
                                                                          info.frame_size)
        writer.submit(Sample(entry.frame, keys, entry.t, boxes, SIM_TRUTH),
                      block=cfg.source == "sim")  # a game does not wait
    return add
