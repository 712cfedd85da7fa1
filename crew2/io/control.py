"""What every loop that plays along with a game shares: the stop/pause flags other threads set, the pacer, the
countdown before the first key, the hotkeys and the per-stage timer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from crew2.io.keyboard import KeyReader


@dataclass
class Control:
    """Set from other threads (hotkeys, signals, a window's buttons): a loop reads it every tick."""

    stop: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)
    discard_seconds: float = 0.0  # recording: > 0 drops that many seconds of what was recorded, then back to 0


class Pacer:
    """Ticks at `fps` on `clock`: `wait` sleeps until the next tick and says whether this one came more than a
    period late (the work or the machine too slow); a late tick does not try to catch up with a burst."""

    def __init__(self, fps: float, clock: Callable[[], float] = time.perf_counter):
        self.period, self.clock = 1.0 / fps, clock
        self.next_tick = clock()

    def wait(self) -> bool:
        now = self.clock()
        late = now - self.next_tick > self.period
        if now < self.next_tick:
            time.sleep(self.next_tick - now)
        elif late:
            self.next_tick = now
        self.next_tick += self.period
        return late

    def restart(self) -> None:
        """After a pause: the next tick is now, and not late."""
        self.next_tick = self.clock()


def countdown(seconds: float, show: Callable[[float], None] | None = None) -> None:
    """Time to switch to the game before anything starts; `show` gets the seconds left, four times a second."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if show is not None:
            show(left)
        time.sleep(min(0.25, left))


class StageTimer:
    """Milliseconds per named stage of one iteration: `lap(stage)` ends the stage that ran since the last lap."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.ms: dict[str, float] = {}
        self.last = clock()

    def start(self, at: float | None = None) -> None:
        self.ms, self.last = {}, self.clock() if at is None else at

    def lap(self, stage: str) -> float:
        now = self.clock()
        self.ms[stage] = round(1000 * (now - self.last), 3)
        self.last = now
        return now


class Hotkeys:
    """Edge-triggered hotkeys (`bindings`: action -> key) read from a key reader (None: no keyboard, e.g. the
    in-process sim), plus the focus guard: while the game window is not in front, `control` is paused.
    Actions: pause (toggles), stop, discard (recording: drop the last `discard` seconds)."""

    def __init__(self, keys: KeyReader | None, control: Control, focused: Callable[[], bool] = lambda: True,
                 bindings: dict[str, str] | None = None, discard: float = 0.0):
        self.keys, self.control, self.focused, self.discard = keys, control, focused, discard
        self.bindings = bindings or {}
        self.was_down = {name: False for name in self.bindings}
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
