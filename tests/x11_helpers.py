"""Helpers for the tests that run real windows under Xvfb."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager

from crew2 import x11
from crew2.errors import Crew2Error


@contextmanager
def plain_window(display: str, title: str, x: int, y: int, width: int, height: int):
    """A black X window that no program draws into, mapped at (x, y); yields (connection, window), then destroys
    it."""
    dpy = x11.open_display(display)
    screen = dpy.screen()
    win = screen.root.create_window(x, y, width, height, 0, screen.root_depth, background_pixel=screen.black_pixel)
    win.set_wm_name(title)
    win.map()
    dpy.sync()
    time.sleep(0.2)
    try:
        yield dpy, win
    finally:
        win.destroy()
        dpy.close()


def wait_for_window(dpy, title: str, proc: subprocess.Popen, timeout: float = 30.0, min_width: int = 0):
    """The window titled like `title`, once the process that opens it has and it is at least `min_width`
    wide (OpenCV maps an autosized window small, before its first image sizes it); fails if it dies first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            win = x11.find_window(dpy, title)
            if x11.window_rect(dpy, win).width >= min_width:
                return win
        except Crew2Error:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return x11.find_window(dpy, title)  # raises if there is none; the caller checks the size
        time.sleep(0.2)


def tap(dpy, key: str) -> None:
    """Press and release a key through XTest, held long enough for a poller to see it."""
    x11.send_key(dpy, key, down=True)
    time.sleep(0.15)
    x11.send_key(dpy, key, down=False)


class Animate:
    """Repaints a window in a new shade every `period` seconds from its own connection, as a game's picture
    moves (crew2 drives no keys into a picture that stands still under throttle)."""

    def __init__(self, display: str, window_id: int, period: float = 0.03):
        import threading

        self.display, self.window_id, self.period = display, window_id, period
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Animate:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)

    def _run(self) -> None:
        dpy = x11.open_display(self.display)
        try:
            win = dpy.create_resource_object("window", self.window_id)
            shade = 0
            while not self.stop.wait(self.period):
                shade = (shade + 37) % 200
                gc = win.create_gc(foreground=(shade << 16) | (shade << 8) | shade)
                geometry = win.get_geometry()
                win.fill_rectangle(gc, 0, 0, geometry.width, geometry.height)
                gc.free()
                dpy.sync()
        finally:
            dpy.close()
