"""The recording loop: paced ticks, newest frame + keys now, resize, hand to the background writer."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crew2.io.band import Band
from crew2.io.capture import FrameSource
from crew2.io.control import Control, Pacer
from crew2.io.keyboard import KeyReader
from crew2.io.picture import WHAT_TO_DO, Blindness, picture, shrink
from crew2.record.writer import BackgroundWriter, Sample
from crew2.signals import stop_on_signals


@dataclass
class RecordStats:
    frames: int = 0  # handed to the writer
    dropped: int = 0  # the writer's queue was full
    late: int = 0  # ticks that started more than a period late (capture or the machine too slow)
    discarded: int = 0
    elapsed: float = 0.0  # s of recording, pauses excluded
    keys: np.ndarray | None = None
    blank: str | None = None  # "black" or "frozen": what the picture has shown for BLANK_AFTER s, up to now
    blank_for: float = 0.0  # s the picture has shown nothing to learn from, up to now
    blank_frames: int = 0  # recorded while `blank`

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0


BLANK_AFTER = 3.0  # s of a black picture, or of one unchanged for Blindness's frozen_s before that, to warn
BLANK_HINT = {"black": "the picture has been black for {s:.0f} s",
              "frozen": "the picture has not changed for {s:.0f} s"}


def blank_warning(stats: RecordStats) -> str | None:
    """One line on what the picture shows, while it shows nothing to learn from."""
    return None if stats.blank is None else f"{BLANK_HINT[stats.blank].format(s=stats.blank_for)}: {WHAT_TO_DO}"


def record_loop(source: FrameSource, reader: KeyReader, writer: BackgroundWriter, *, fps: float,
                size: tuple[int, int], realtime: bool = True, max_frames: int | None = None,
                max_seconds: float | None = None, control: Control | None = None,
                on_tick: Callable[[RecordStats], None] | None = None,
                poll: Callable[[], None] | None = None,
                clock: Callable[[], float] = time.perf_counter, band: Band | None = None) -> RecordStats:
    """Record until `control.stop`, `max_frames` or `max_seconds`. With `realtime`, ticks are paced at
    `fps` and timestamps are wall time; without (the sim), frames come as fast as they are made and
    timestamps are frame index / fps. Boxes are stored when the source provides them. `poll` runs every
    iteration, paused or not (hotkeys, focus); Ctrl+C and SIGTERM end the loop like a stop. With `band`, each
    frame of `size` is stored with the horizon band under it, its boxes in both (`crew2.io.band`)."""
    stats, control = RecordStats(), control or Control()
    try:
        with stop_on_signals(control.stop):
            return _loop(source, reader, writer, fps, size, realtime, max_frames, max_seconds, control, stats,
                         on_tick, poll, clock, band)
    except KeyboardInterrupt:  # a second Ctrl+C
        return stats


def _loop(source, reader, writer, fps, size, realtime, max_frames, max_seconds, control, stats, on_tick, poll,
          clock, band) -> RecordStats:
    w, h = size
    pacer = Pacer(fps, clock)
    blindness, blank_since = Blindness(frozen_s=2.0, retry_s=math.inf), None
    start = clock()  # timestamps are wall time from here: pauses and discards leave gaps (cuts)
    paused_total, paused_at = 0.0, None
    while not control.stop.is_set():
        if poll is not None:
            poll()
        if max_frames is not None and stats.frames >= max_frames:
            break
        if max_seconds is not None and stats.elapsed >= max_seconds:
            break
        if control.paused.is_set():
            paused_at = paused_at or clock()
            time.sleep(0.02)
            continue
        if paused_at is not None:  # resume: a pause is no recording time, and no late tick
            paused_total += clock() - paused_at
            pacer.restart()
            paused_at = None
        if control.discard_seconds > 0:
            n = min(stats.frames, round(control.discard_seconds * fps))
            writer.discard_last(n)
            stats.frames -= n
            stats.discarded += n
            control.discard_seconds = 0.0
        if realtime:
            stats.late += pacer.wait()
        frame = source.grab()
        keys = reader.read()
        t = (clock() - start) if realtime else stats.frames / fps
        boxes = source.boxes()
        if band is not None:
            if boxes is not None:
                boxes = band.truth(boxes, (frame.shape[1], frame.shape[0]), (w, h))
            frame = band.stack(frame, (w, h))
        elif frame.shape[1] != w or frame.shape[0] != h:
            sx, sy = w / frame.shape[1], h / frame.shape[0]
            frame = shrink(frame, (w, h))
            if boxes is not None and len(boxes):
                boxes = boxes * np.array([sx, sy, sx, sy, 1], np.float32)
        why = blindness(picture(frame[:h]), t, pressing=True)
        blank_since = None if why is None else t if blank_since is None else blank_since
        stats.blank = why if why is not None and t - blank_since >= BLANK_AFTER else None
        stats.blank_for = 0.0 if blank_since is None else t - blank_since
        sample = Sample(frame, keys.copy(), t, boxes, source.box_source if boxes is not None else 0)
        if writer.submit(sample, block=not realtime):
            stats.frames += 1
            stats.blank_frames += stats.blank is not None
        else:
            stats.dropped += 1
        stats.keys = keys
        stats.elapsed = clock() - start - paused_total if realtime else stats.frames / fps
        if on_tick is not None:
            on_tick(stats)
    return stats
