"""Frame sources, the one protocol every game feeds record, drive and takeover through: a context manager with
`grab() -> RGB frame`, plus what a loop may ask of any source (`done`, `boxes`, `frame_started`), with
defaults in `Source` so that no loop probes for them."""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from typing import NoReturn, Protocol

import cv2
import numpy as np

from crew2 import x11
from crew2.errors import Crew2Error

log = logging.getLogger(__name__)
CAPTURES = ("auto", "wgc", "mss")  # --capture: Windows Graphics Capture of the window itself, or the screen (mss)


class FrameSource(Protocol):
    name: str
    done: bool  # the source has run dry (the simulator's episode ended); a loop stops
    box_source: int  # how `boxes` were made (crew2.data.session's box sources); 0: none
    frame_started: float | None  # perf_counter() when the grab of the newest frame began; None: at the call

    def __enter__(self) -> FrameSource: ...
    def __exit__(self, *exc) -> None: ...
    def grab(self) -> np.ndarray:
        """The newest frame, (H, W, 3) uint8 RGB."""
        ...
    def boxes(self) -> np.ndarray | None:
        """The last grabbed frame's ground-truth boxes, (M, 5) x1, y1, x2, y2, class; None when unknown."""
        ...


class Source:
    """The defaults of `FrameSource`: never done, no boxes, grabbed when asked."""

    name = "source"
    done = False
    box_source = 0
    frame_started: float | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def grab(self) -> np.ndarray:
        raise NotImplementedError

    def boxes(self) -> np.ndarray | None:
        return None


class ThreadedCapture(Source):
    """Grabs in its own thread, so that no loop is ever stuck inside a capture that hangs. At `max_fps` it grabs
    on its own and keeps only the newest frame, so the recording loop never waits for a capture in progress. With
    `max_fps` None it grabs when asked: `grab()` wakes it and waits for a grab that ends after the request (at
    most `ASK_WAIT`, then it hands back the newest there is, which a hung capture leaves to go stale), so a paced
    loop that waits between frames anyway (drive) gets a frame one grab old (`crew2 bench loop`: 0.7-0.9 ms p50
    from the grab's start to the read, against 2.1-2.3 ms for grabs timed to end just before the read). A grabber
    with a `follow()` (`_RegionGrab`) is told to find its window again after each frame is out."""

    ASK_WAIT = 0.1  # seconds a read waits for the grab it asked for

    def __init__(self, open_grabber, name: str, max_fps: float | None = 120.0):
        self._open, self.name = open_grabber, name
        self.period = None if max_fps is None else 1.0 / max_fps  # grabbing faster than it is read burns a core
        self._frame: np.ndarray | None = None
        self._error: BaseException | None = None
        self._fresh = threading.Condition()
        self._stop = threading.Event()
        self._asked = threading.Event()  # on demand: a read waits for a grab (and set on stop)
        self.grabs = 0
        self._started = self.frame_started = 0.0  # perf_counter() when the grab of the newest frame began

    def __enter__(self) -> ThreadedCapture:
        self._thread = threading.Thread(target=self._run, name=f"crew2-capture-{self.name}", daemon=True)
        self._thread.start()
        with self._fresh:  # the first frame, or the error that prevented it
            self._fresh.wait_for(lambda: self._frame is not None or self._error is not None, timeout=10)
        if self._error is not None:
            self.__exit__()
            self._raise()
        if self._frame is None:
            self.__exit__()
            raise Crew2Error(f"{self.name}: no frame captured within 10 s")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._asked.set()
        self._thread.join(5)

    def _raise(self) -> NoReturn:
        """What stopped the capture thread, in one line: its own words when it knew what happened (the window
        closed), else the library's."""
        if isinstance(self._error, Crew2Error):
            raise self._error
        raise Crew2Error(f"{self.name}: capture failed: {self._error or type(self._error).__name__}") from self._error

    def _run(self) -> None:
        try:
            with self._open() as grab_once:  # capture handles belong to the thread that uses them
                follow = getattr(grab_once, "follow", None)  # where the next grab is, asked while a frame is used
                while not self._stop.is_set():
                    started = time.perf_counter()
                    frame = grab_once()
                    with self._fresh:
                        self._frame, self._started = frame, started
                        self.grabs += 1
                        self._fresh.notify_all()
                    if follow is not None:
                        follow()
                    if self.period is None:
                        self._asked.wait()
                        self._asked.clear()
                    else:
                        self._stop.wait(started + self.period - time.perf_counter())
        except BaseException as e:
            with self._fresh:
                self._error = e
                self._fresh.notify_all()

    def grab(self) -> np.ndarray:
        with self._fresh:
            if self.period is None:
                asked = self.grabs
                self._asked.set()
                self._fresh.wait_for(lambda: self.grabs > asked or self._error is not None, timeout=self.ASK_WAIT)
            if self._error is not None:
                self._raise()
            self.frame_started = self._started
            return self._frame


def rgb(bgra: np.ndarray) -> np.ndarray:
    """(H, W, 4) BGRA, as screen grabs come, -> a new (H, W, 3) RGB array. OpenCV's conversion: numpy's reversed
    channel slice copied 0.87 ms of a 640x360 grab and 7.3 ms of a 1080p one, cvtColor 0.02 and 0.13 ms."""
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB)


class _RegionGrab:
    """grab_once() -> RGB frame of the rectangle `region_fn()` gave at the last `follow()`. `ThreadedCapture` follows
    right after each frame is out, so finding a window (two X round trips, 0.36 ms) is not part of a frame's age; a
    window that moves is followed from the next grab on."""

    def __init__(self, sct, region_fn):
        self.sct, self.region_fn = sct, region_fn
        self.follow()

    def follow(self) -> None:
        r = self.region_fn()
        self.region = {"left": r.left, "top": r.top, "width": r.width, "height": r.height}

    def __call__(self) -> np.ndarray:
        return rgb(np.asarray(self.sct.grab(self.region)))


@contextmanager
def mss_region(display: str | None, region_fn):
    """Yields grab_once() -> RGB frame of region_fn()'s rectangle, asked again at each `follow()` (`_RegionGrab`)."""
    import mss

    kwargs = {"display": display} if display and sys.platform.startswith("linux") else {}
    with mss.MSS(**kwargs) as sct:
        yield _RegionGrab(sct, region_fn)


@contextmanager
def first_working(first, second):
    """`first()`'s grabber where it starts, else `second()`'s, with a note that says why (--capture auto)."""
    with ExitStack() as stack:
        try:
            grab_once = stack.enter_context(first())
        except Crew2Error as e:
            log.warning("%s; capturing the screen where the window is instead (covered parts of the window are "
                        "recorded as what covers them)", e)
            grab_once = stack.enter_context(second())
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
                  max_fps: float | None = 120.0) -> ThreadedCapture:
    """A monitor, or a region of it (screen coordinates); a region outside the screen is an error."""
    screen = screen_size(display, monitor)
    r = region or screen
    if (r.width <= 0 or r.height <= 0 or r.left < screen.left or r.top < screen.top
            or r.left + r.width > screen.left + screen.width or r.top + r.height > screen.top + screen.height):
        raise Crew2Error(f"region {r.left},{r.top},{r.width},{r.height} is not inside monitor {monitor} "
                         f"({screen.left},{screen.top},{screen.width},{screen.height})")
    return ThreadedCapture(lambda: mss_region(display, lambda: r), "screen", max_fps)


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
        """The window's client area through this X connection (the capture thread has its own). One that reaches
        past the screen is an error: the screen is what is captured, and the X server refuses the rest."""
        with self._gone():
            r = x11.window_rect(dpy, win)
        screen = dpy.screen()
        w, h = screen.width_in_pixels, screen.height_in_pixels
        if r.left < 0 or r.top < 0 or r.left + r.width > w or r.top + r.height > h:
            raise Crew2Error(f"the window '{self.title}' ({r.width}x{r.height} at {r.left},{r.top}) reaches past the "
                             f"screen ({w}x{h}): crew2 captures the screen where the window is; move the window "
                             "fully onto the screen or make it smaller")
        return r

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

    def source(self, max_fps: float | None = 120.0, capture: str = "auto") -> ThreadedCapture:
        """The window's part of the screen (mss; `capture` has only that choice on X11); `max_fps` None: grabbed
        when read (`ThreadedCapture`)."""
        def open_grabber():
            dpy = x11.open_display(self.display)  # its own connection: Xlib is not thread-safe
            win = dpy.create_resource_object("window", self.win.id)
            return mss_region(self.display, lambda: self._rect(dpy, win))
        return ThreadedCapture(open_grabber, f"window '{self.title}'", max_fps)

    def close(self) -> None:
        self.dpy.close()
