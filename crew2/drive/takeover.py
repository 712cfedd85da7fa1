"""Human takeover (HG-DAgger, Kelly et al. 2019): while crew2 drives, the person corrects it with the game's own
keys, and the corrections become training data.

A key of the profile that is down but that crew2 did not press is the person's: from that frame on the person
drives, crew2 releases its keys and sends nothing, and the game reads the person's keyboard as it always does.
Control returns to the model `handback` seconds after the person's last key. The keyboard cannot say who pressed a
key that crew2 holds too (X11 and Windows report one state per key): a person who wants the throttle while crew2
holds it takes over with any other key of the profile.

`Corrections` stores each takeover as a session marked as corrections (driver "correction"): every frame the
person drove with their keys, and the `margin` seconds of frames before it with the keys they held first (they saw
the trouble before their hands moved). The first keys are read in the frame after the takeover, once crew2's keys
are up: in the takeover frame itself a key both held is not known to be the person's. Frames with no key at the end
of a takeover (the wait before the hand-back) are left out: the person let go to give the car back, not to coast.
Timestamps keep the gaps between takeovers, so each is its own stretch and a frame stack never reaches across two.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crew2.data.session import SessionMeta
from crew2.io.keyboard import KeyReader
from crew2.keys import KeyProfile
from crew2.record.writer import BackgroundWriter, Sample

HANDBACK = 0.5  # s after the person's last key: long enough to let go of one key and press another
MARGIN = 0.3  # s of frames before a takeover stored with it: about a person's reaction time


class Takeover:
    """Who drives. `update` reads the keyboard once a frame; `driver`, `keys` (the person's, while they drive) and
    `count` (takeovers so far) say what it found."""

    def __init__(self, reader: KeyReader, keys: Sequence[str], handback: float = HANDBACK):
        if handback < 0:
            raise ValueError(f"handback must be zero or more, not {handback}")
        self.reader, self.names, self.handback = reader, list(keys), handback
        self.driver = "model"
        self.keys: list[str] = []
        self.count = 0
        self.last = 0.0  # when the person last had a key down

    def update(self, now: float, model_down: set[str] | frozenset[str]) -> bool:
        """Read the keyboard at `now` (s) with crew2 holding `model_down`; True while the person drives."""
        down = [k for k, on in zip(self.names, self.reader.read(), strict=True) if on]
        if self.driver == "model":
            self.keys = [k for k in down if k not in model_down]
            if self.keys:
                self.driver, self.last = "person", now
                self.count += 1
        else:  # crew2 holds nothing while the person drives: every key down is theirs
            self.keys = down
            if down:
                self.last = now
            elif now - self.last >= self.handback:
                self.driver = "model"
        return self.driver == "person"


class Corrections:
    """The drive loop's frames -> a corrections session: what the person drove, plus a margin before each takeover.
    Call with each `FrameLog`; `close` when the drive ends."""

    def __init__(self, path: Path, profile: KeyProfile, fps: float, size: tuple[int, int], source: str,
                 margin: float = MARGIN, band: dict | None = None):
        meta = SessionMeta.for_profile(profile, fps=fps, width=size[0], height=size[1], source=source,
                                       driver="correction", jpeg_quality=90, region=None, class_names=[], band=band)
        self.writer = BackgroundWriter(path, meta)
        self.keys = list(profile.keys)
        self.before: deque = deque(maxlen=max(0, round(margin * fps)))
        self.first: list = []  # the margin and the takeover frame, until the person's first keys are known
        self.idle: list = []  # the person's frames with no key since their last key
        self.takeovers = 0  # the FrameLog count of the takeover under way

    def _write(self, entry, pressed: list[str]) -> None:
        sample = Sample(entry.frame, np.array([k in pressed for k in self.keys], np.uint8), entry.t, None, 0)
        self.writer.submit(sample)

    def _flush_first(self, pressed: list[str]) -> None:
        for earlier in self.first:
            self._write(earlier, pressed)
        self.first = []

    def __call__(self, entry) -> None:
        if entry.frame is None:
            return
        if entry.driver != "person":
            if self.first:  # a takeover of one frame: its own keys are all there is
                self._flush_first(self.first[-1].person)
            self.idle = []  # the wait before the hand-back
            self.before.append(entry)
        elif entry.takeovers != self.takeovers:  # the first frame of a takeover
            self.takeovers, self.idle = entry.takeovers, []
            self.first = [*self.before, entry]
            self.before.clear()
        else:
            if self.first:  # the frame after the takeover: crew2's keys are up, every key down is the person's
                self._flush_first(entry.person)
            if not entry.person:
                self.idle.append(entry)
                return
            for waited in self.idle:  # a pause between two keys, not the end: part of the correction
                self._write(waited, [])
            self.idle = []
            self._write(entry, entry.person)

    def close(self) -> None:
        if self.first:
            self._flush_first(self.first[-1].person)
        self.writer.close()
