"""Frame sources for recording and driving. Each is a context manager with `grab() -> RGB frame`."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from crew2 import x11
from crew2.data.session import SIM_TRUTH
from crew2.errors import Crew2Error
from crew2.keys import KeyProfile
from crew2.sim.autopilot import Autopilot, NoisyAutopilot
from crew2.sim.env import SimEnv
from crew2.sim.world import SimConfig


class FrameSource(Protocol):
    name: str

    def __enter__(self) -> FrameSource: ...
    def __exit__(self, *exc) -> None: ...
    def grab(self) -> np.ndarray:
        """The newest frame, (H, W, 3) uint8 RGB."""
        ...


class KeyReader(Protocol):
    def read(self) -> np.ndarray:
        """The key vector now, (K,) uint8 in the profile's order."""
        ...


class SimSource:
    """The built-in game, in-process. Its autopilot plays (with optional DART noise); as a key reader it
    returns what the expert wanted for the last grabbed frame, and `boxes` that frame's ground truth.
    Episodes follow each other with seeds seed, seed + 1, ...; one also ends when the car has stood still
    for `STANDING` seconds (a noisy drive that left it where the expert cannot get out, say between two
    closed lanes: minutes of standing frames would teach a network to stand)."""

    STANDING = 5.0

    name = "sim"

    def __init__(self, config: SimConfig, profile: KeyProfile, seed: int = 0, noise: float = 0.0,
                 late: float = 0.0):
        self.env = SimEnv(config, profile)
        self.seed, self.noise, self.late = seed, noise, late
        self.label = np.zeros(len(profile.keys), np.uint8)
        self.truth = np.zeros((0, 5), np.float32)
        self.box_source = SIM_TRUTH

    def __enter__(self) -> SimSource:
        self._new_episode()
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _new_episode(self) -> None:
        self.env.reset(seed=self.seed)
        self.standing = 0
        self.driver = NoisyAutopilot(Autopilot(), self.noise, seed=self.seed, fps=self.env.config.fps,
                                     late=self.late)

    def grab(self) -> np.ndarray:
        frame = self.env.frame
        self.truth = frame.truth()
        executed, label = self.driver.act(self.env.world)
        self.label = self.env.action_of(*label).astype(np.uint8)
        _, _, terminated, truncated, _ = self.env.step(self.env.action_of(*executed))
        self.standing = self.standing + 1 if self.env.world.player.v < 0.5 else 0
        if terminated or truncated or self.standing > self.STANDING * self.env.config.fps:
            self.seed += 1
            self._new_episode()
        return frame.image

    def read(self) -> np.ndarray:
        return self.label

    def boxes(self) -> np.ndarray:
        return self.truth


class ThreadedCapture:
    """Grabs in its own thread and keeps only the newest frame, so the recording (or driving) loop never
    waits for a capture in progress and always gets the latest one. By default it grabs at `max_fps`; a
    paced consumer that says when it will read next (`expect`) gets grabs timed to finish just before
    then, so the frame it reads is fresh (about one grab old) instead of up to a capture period old."""

    def __init__(self, open_grabber, name: str, max_fps: float = 120.0):
        self._open, self.name = open_grabber, name
        self.period = 1.0 / max_fps  # grabbing faster than the loop consumes only burns a core
        self._frame: np.ndarray | None = None
        self._error: BaseException | None = None
        self._fresh = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by `expect` and on stop
        self._expected: float | None = None
        self._served: float | None = None  # the expected read the newest grab was timed for
        self.grabs = 0
        self.grab_seconds = 0.0  # smoothed duration of one grab
        self._started = self.frame_started = 0.0  # perf_counter() when the grab of the newest frame began

    def __enter__(self) -> ThreadedCapture:
        self._thread = threading.Thread(target=self._run, name=f"crew2-capture-{self.name}", daemon=True)
        self._thread.start()
        with self._fresh:  # the first frame, or the error that prevented it
            self._fresh.wait_for(lambda: self._frame is not None or self._error is not None, timeout=10)
        if self._error is not None:
            self.__exit__()
            raise self._error
        if self._frame is None:
            self.__exit__()
            raise Crew2Error(f"{self.name}: no frame captured within 10 s")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def expect(self, when: float) -> None:
        """The consumer will read at perf_counter() == `when`: time the next grab to end just before."""
        self._expected = when
        self._wake.set()

    def _next_start(self, last_start: float) -> float:
        """When to begin the next grab: early enough to end before the expected read, else at the rate."""
        expected = self._expected
        if expected is not None and expected != self._served:
            return expected - 1.5 * self.grab_seconds - 0.001
        return last_start + self.period

    def _run(self) -> None:
        try:
            with self._open() as grab_once:  # capture handles belong to the thread that uses them
                while not self._stop.is_set():
                    started = time.perf_counter()
                    frame = grab_once()
                    took = time.perf_counter() - started
                    with self._fresh:
                        self._frame, self._started = frame, started
                        self.grabs += 1
                        self._fresh.notify_all()
                    self.grab_seconds = took if self.grabs == 1 else 0.8 * self.grab_seconds + 0.2 * took
                    expected = self._expected
                    if expected is not None and expected - time.perf_counter() < 2 * self.grab_seconds + 0.002:
                        self._served = expected  # this grab is the one for that read: wait for the next word
                    self._wake.clear()
                    while (wait := self._next_start(started) - time.perf_counter()) > 0 and not self._stop.is_set():
                        if self._wake.wait(wait):
                            self._wake.clear()
        except BaseException as e:
            with self._fresh:
                self._error = e
                self._fresh.notify_all()

    def grab(self) -> np.ndarray:
        with self._fresh:
            if isinstance(self._error, Crew2Error):  # already says what happened (the window closed)
                raise self._error
            if self._error is not None:
                raise Crew2Error(f"{self.name}: capture failed: {self._error}") from self._error
            self.frame_started = self._started
            return self._frame


@contextmanager
def _mss_region(display: str | None, region_fn):
    """Yields grab_once() -> RGB frame of region_fn()'s rectangle (re-evaluated each grab)."""
    import mss

    kwargs = {"display": display} if display and sys.platform.startswith("linux") else {}
    with mss.MSS(**kwargs) as sct:
        def grab_once() -> np.ndarray:
            r = region_fn()
            shot = sct.grab({"left": r.left, "top": r.top, "width": r.width, "height": r.height})
            return np.asarray(shot)[:, :, 2::-1].copy()  # BGRA -> RGB
        yield grab_once


def screen_size(display: str | None = None, monitor: int = 1) -> x11.Rect:
    import mss

    kwargs = {"display": display} if display and sys.platform.startswith("linux") else {}
    with mss.MSS(**kwargs) as sct:
        if not 0 <= monitor < len(sct.monitors):
            raise Crew2Error(f"monitor {monitor} does not exist: this screen has {len(sct.monitors) - 1}")
        m = sct.monitors[monitor]
    return x11.Rect(m["left"], m["top"], m["width"], m["height"])


def screen_source(region: x11.Rect | None = None, monitor: int = 1, display: str | None = None,
                  max_fps: float = 120.0) -> ThreadedCapture:
    """A monitor, or a region of it (screen coordinates); a region outside the screen is an error."""
    screen = screen_size(display, monitor)
    r = region or screen
    if (r.width <= 0 or r.height <= 0 or r.left < screen.left or r.top < screen.top
            or r.left + r.width > screen.left + screen.width or r.top + r.height > screen.top + screen.height):
        raise Crew2Error(f"region {r.left},{r.top},{r.width},{r.height} is not inside monitor {monitor} "
                         f"({screen.left},{screen.top},{screen.width},{screen.height})")
    return ThreadedCapture(lambda: _mss_region(display, lambda: r), "screen", max_fps)


class X11Window:
    """A game window on X11, found by title: its client area (followed when it moves) and its focus."""

    def __init__(self, title: str, display: str | None = None):
        self.display = display
        self.dpy = x11.open_display(display)
        self.win = x11.find_window(self.dpy, title)
        self.title = title

    def rect(self) -> x11.Rect:
        return self._rect(self.dpy, self.win)

    def _rect(self, dpy, win) -> x11.Rect:
        """The window's client area through this X connection (the capture thread has its own)."""
        with self._gone():
            return x11.window_rect(dpy, win)

    def focused(self) -> bool:
        with self._gone():
            return x11.is_related(self.dpy, x11.focused_window(self.dpy), self.win)

    @contextmanager
    def _gone(self):
        """The game closed its window (BadWindow): a clear error, not an X protocol traceback."""
        from Xlib.error import XError

        try:
            yield
        except XError as e:
            raise Crew2Error(f"the window '{self.title}' closed") from e

    def source(self, max_fps: float = 120.0) -> ThreadedCapture:
        def open_grabber():
            dpy = x11.open_display(self.display)  # its own connection: Xlib is not thread-safe
            win = dpy.create_resource_object("window", self.win.id)
            return _mss_region(self.display, lambda: self._rect(dpy, win))
        return ThreadedCapture(open_grabber, f"window '{self.title}'", max_fps)

    def close(self) -> None:
        self.dpy.close()


class X11Keys:
    """Key reader on X11: the profile's keys as a uint8 vector, plus any other key by name."""

    def __init__(self, profile: KeyProfile, display: str | None = None, extra: tuple[str, ...] = ()):
        self.dpy = x11.open_display(display)
        self.n = len(profile.keys)
        self.state = x11.KeyState(self.dpy, [*profile.keys, *extra])
        self.extra = extra
        self.last: list[bool] = []

    def read(self) -> np.ndarray:
        self.last = self.state.read()
        return np.array(self.last[: self.n], np.uint8)

    def down(self, key: str) -> bool:
        """Whether an extra key (a hotkey) was down at the last read."""
        return bool(self.last and self.last[self.n + self.extra.index(key)])

    def close(self) -> None:
        self.dpy.close()
