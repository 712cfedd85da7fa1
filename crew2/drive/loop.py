"""The drive loop: newest frame -> network -> key decoder -> crash prevention -> keys sent, every frame,
timed per stage and paced. Keys are released on every way out: the end, Ctrl+C, SIGTERM, an exception
anywhere, and a watchdog when an iteration stalls; no key is sent while the game is not in front."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from crew2.drive.decoder import KeyDecoder
from crew2.drive.fusion import FusionState, Hit, Rules, fuse, picture_motion, scenery
from crew2.drive.takeover import Takeover
from crew2.io.band import Band
from crew2.io.capture import FrameSource
from crew2.io.control import Control, Pacer, StageTimer
from crew2.io.keyboard import KeySender
from crew2.io.picture import Blindness, picture, shrink
from crew2.model.engine import Engine
from crew2.signals import stop_on_signals

STAGES = ("capture", "preprocess", "infer", "decode", "fusion", "send")
NO_BOXES = np.zeros((0, 6), np.float32)  # what crash prevention sees with the box rules off


@dataclass
class FrameLog:
    """What happened in one iteration: enough to render telemetry and to write a JSONL log."""

    step: int
    t: float
    ms: dict[str, float]
    probs: list[float]
    pressed: list[str]
    hits: list[Hit]
    obstacles: int
    closest_ttc: float | None
    sent: bool
    late: bool
    boxes: list[list[float]] = field(default_factory=list)  # x1, y1, x2, y2 (frame px), score, class
    frame: np.ndarray | None = field(default=None, repr=False, compare=False)  # what the model saw (RGB)
    driver: str = "model"  # "person" while the person has taken over (`crew2.drive.takeover`)
    person: list[str] = field(default_factory=list)  # the person's keys down in this frame, while they drive
    takeovers: int = 0  # so far

    def to_json(self) -> dict:
        """The record `--log` writes: everything but the frame."""
        return {**{k: v for k, v in self.__dict__.items() if k != "frame"}, "hits": [h.__dict__ for h in self.hits]}


@dataclass
class DriveStats:
    steps: int = 0
    late: int = 0
    bad_frames: int = 0
    blind_frames: int = 0  # black or frozen pictures: no keys (`Blindness`)
    watchdog_releases: int = 0
    elapsed: float = 0.0
    takeovers: int = 0
    person_steps: int = 0  # frames the person drove


def as_frame(frame, size: tuple[int, int], band: Band | None = None) -> np.ndarray | None:
    """Any capture -> (H, W, 3) uint8 RGB at the model's size (with `band`: the frame with the band under it);
    None when it is not an image at all."""
    a = np.asarray(frame) if frame is not None else None
    if a is None or a.ndim not in (2, 3) or a.size == 0 or min(a.shape[:2]) < 2:
        return None
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    a = a[:, :, :3] if a.shape[2] >= 3 else np.repeat(a[:, :, :1], 3, axis=2)
    if band is not None:
        return band.stack(a, band.frame_size(size))
    if (a.shape[1], a.shape[0]) != size:
        a = shrink(a, size)
    return np.ascontiguousarray(a)


class Watchdog:
    """Releases every key if the loop's heartbeat stops for longer than `limit` seconds; passes each beat on to
    `outside`, a guard that can release them even when this process cannot run at all."""

    def __init__(self, sender: KeySender, limit: float, stats: DriveStats, outside: Callable[[], None] | None = None):
        self.sender, self.limit, self.stats, self.outside = sender, limit, stats, outside
        self.beat = time.monotonic()
        self.tripped = False
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="crew2-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(2)

    def heartbeat(self) -> None:
        self.beat = time.monotonic()
        self.tripped = False
        if self.outside is not None:  # the key guard outside this process (crew2.io.keyguard)
            self.outside()

    def _run(self) -> None:
        while not self._stop.wait(self.limit / 4):
            if not self.tripped and time.monotonic() - self.beat > self.limit:
                self.sender.release_all()
                self.tripped = True
                self.stats.watchdog_releases += 1


def drive_loop(source: FrameSource, engine: Engine, decoder: KeyDecoder, sender: KeySender, *, fps: float,
               rules: Rules | None = None, box_rules: bool = True, max_steps: int | None = None, realtime: bool = True,
               focused: Callable[[], bool] = lambda: True, dry_run: bool = False, watchdog: float = 0.5,
               control: Control | None = None, on_frame: Callable[[FrameLog], None] | None = None,
               poll: Callable[[], None] | None = None, takeover: Takeover | None = None,
               clock: Callable[[], float] = time.perf_counter, outside: Callable[[], None] | None = None,
               stale: float = 0.5, on_skip: Callable[[str], None] | None = None) -> DriveStats:
    """Drive until `control.stop`, `max_steps`, the source running dry, Ctrl+C or SIGTERM. `rules` None turns crash
    prevention off; `box_rules` False hides the network's boxes from it (an untrained obstacle head), so that only
    its rule without boxes acts (going around when the car stands; standing is then judged on the whole picture).
    Keys are released whenever the game is not in front, while paused, while the person has taken over
    (`takeover`, read right before each grab) and at the end.
    `poll` runs once per iteration before keys go out (hotkeys that pause or stop through `control`). A frame whose
    grab began more than `stale` seconds ago (a hung capture) counts as bad: keys are released, nothing decided.
    A black picture, or one that does not change while throttle is down, gets no keys (see Blindness). `on_skip` hears
    of every frame not driven, with why: "bad" (not an image, or stale), "black" or "frozen".
    `outside` gets every heartbeat (see Watchdog)."""
    info = engine.info
    band, size = Band.of(info.band), info.frame_size  # crash prevention sees the frame, not the band under it
    control = control or Control()
    stats = DriveStats()
    role_of = {key: role for role, key in info.roles.items()}
    role_index = {role: info.keys.index(key) for role, key in info.roles.items()}  # once, not every frame
    history: deque[np.ndarray] = deque(maxlen=info.frames)
    recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=2)  # the last two (`picture`, `scenery`)s
    fusion_state = FusionState()
    blindness, ticks = Blindness(), 0
    pacer, timer, start = Pacer(fps, clock), StageTimer(clock), clock()
    try:
        with stop_on_signals(control.stop), Watchdog(sender, watchdog, stats, outside) as dog:
            while not control.stop.is_set() and (max_steps is None or stats.steps < max_steps) and not source.done:
                late = realtime and pacer.wait()
                if poll is not None:
                    poll()
                ticks += 1
                now_s = clock() - start if realtime else (ticks - 1) / fps
                # Where keys go and who drives, asked of the X server before the grab: its round trips do not age
                # the picture the keys are chosen from
                in_front = focused() and not control.paused.is_set()  # else keys typed elsewhere are no takeover
                person = takeover is not None and in_front and takeover.update(now_s, sender.down)
                if person:
                    sender.release_all()  # the person drives from this frame on: nothing of the model's stays down
                timer.start()
                raw = source.grab()
                # A capture that grabbed the screen before we asked: time the frame from its grab's start
                timer.start(min(timer.last, source.frame_started or timer.last))
                timer.lap("capture")
                frame = as_frame(raw, info.size, band)
                hung = realtime and source.frame_started and time.perf_counter() - source.frame_started > stale
                grey = None if frame is None or hung else picture(frame[:size[1]])
                throttle_down = info.roles.get("throttle") in sender.down
                blind = None if grey is None else blindness(grey, now_s, throttle_down)
                if frame is None or hung or blind:
                    stats.bad_frames += not blind
                    stats.blind_frames += bool(blind)
                    sender.release_all()
                    dog.heartbeat()
                    if on_skip is not None:
                        on_skip(blind or "bad")
                    continue
                history.append(frame)
                while len(history) < info.frames:
                    history.appendleft(history[0])
                x = np.concatenate(list(history), axis=2)[None]  # (1, H, W, 3 * frames)
                timer.lap("preprocess")
                pred = engine(x)[0]
                timer.lap("infer")
                keys = decoder(pred.key_probs, now_s)
                by_role = {role: bool(keys[i]) for role, i in role_index.items()}
                timer.lap("decode")
                hits: list[Hit] = []
                if rules is not None:  # is the car moving: does the scenery outside the obstacles' boxes move
                    boxes = NO_BOXES
                    if box_rules:  # in the frame's pixels
                        boxes = pred.boxes if band is None else band.to_frame(pred.boxes, size)
                    seen = (grey, scenery(boxes, size, rules.min_score))
                    keep = np.logical_and.reduce([seen[1], *(k for _, k in recent)])
                    motion = picture_motion(seen[0], *(p for p, _ in recent), keep=keep) if recent else None
                    recent.append(seen)
                    by_role, hits = fuse(by_role, boxes, info.class_names, size, fusion_state, now_s, rules, motion)
                want = {k: (by_role[role_of[k]] if k in role_of else bool(keys[i])) for i, k in enumerate(info.keys)}
                timer.lap("fusion")
                sent = in_front and not (dry_run or person)
                if sent:
                    sender.apply(want)
                else:
                    sender.release_all()
                timer.lap("send")
                dog.heartbeat()
                stats.steps += 1
                stats.late += late
                stats.person_steps += bool(person)
                ttcs = [h.numbers.get("ttc_s") for h in hits if "ttc_s" in h.numbers]
                if on_frame is not None:
                    on_frame(FrameLog(stats.steps, now_s, dict(timer.ms), [float(p) for p in pred.key_probs],
                                      [k for k, on in want.items() if on], hits, len(pred.boxes),
                                      min(ttcs) if ttcs else None, sent, late,
                                      [[round(float(v), 2) for v in b] for b in pred.boxes], frame,
                                      "person" if person else "model", takeover.keys if person else [],
                                      takeover.count if takeover is not None else 0))
    except KeyboardInterrupt:
        pass  # a second Ctrl+C or SIGTERM (the first stops the loop at its next check)
    finally:
        sender.release_all()
        stats.elapsed = clock() - start
        if takeover is not None:
            stats.takeovers = takeover.count
    return stats
