"""Windows Graphics Capture of one game window, through the windows-capture package (Windows 10 1903 on): the
window's own pixels, even where another window covers it, as the game presents them (flip model and HDR included,
which GDI captures such as mss see black or stale)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np

from crew2 import x11
from crew2.errors import Crew2Error
from crew2.io.capture import rgb

FIRST_FRAME_S = 5.0  # a capture that shows nothing by then will not (a minimised window, a refused capture)


@contextmanager
def wgc_window(hwnd: int, client: Callable[[], x11.Rect], name: str, module=None):
    """Yields grab_once() -> the newest frame's client area (`client()`: where it lies in the captured window), RGB.
    Frames arrive on the package's own thread whenever the game presents one; a window that draws nothing new
    gives its last frame again."""
    if module is None:
        try:
            import windows_capture as module
        except ImportError as e:
            raise Crew2Error(f"{name}: Windows Graphics Capture needs the windows-capture package "
                             "(pip install windows-capture)") from e
    state = threading.Condition()
    newest: list[np.ndarray] = []  # the last frame that arrived, BGRA
    closed, stopping = threading.Event(), threading.Event()

    def on_frame_arrived(frame, capture_control) -> None:
        if stopping.is_set():
            capture_control.stop()
            return
        bgra = frame.frame_buffer.copy()  # the package's buffer is only valid inside this call
        with state:
            newest[:] = [bgra]
            state.notify_all()

    def on_closed() -> None:
        with state:
            closed.set()
            state.notify_all()

    control, error = None, None
    for border in (False, None):  # no yellow border where Windows allows it (Windows 11); else Windows' default
        try:
            capture = module.WindowsCapture(cursor_capture=False, draw_border=border, window_hwnd=hwnd)
            capture.event(on_frame_arrived)
            capture.event(on_closed)
            control = capture.start_free_threaded()
            break
        except Exception as e:  # the package raises plain Exceptions with Windows' reason in the text
            error = e
    if control is None:
        raise Crew2Error(f"{name}: Windows Graphics Capture did not start ({error})") from error
    try:
        with state:
            if not state.wait_for(lambda: newest or closed.is_set(), timeout=FIRST_FRAME_S) or not newest:
                raise Crew2Error(f"{name}: Windows Graphics Capture gave no frame in {FIRST_FRAME_S:g} s "
                                 "(is the window minimised?)")

        def grab_once() -> np.ndarray:
            if closed.is_set() or control.is_finished():
                raise Crew2Error(f"{name} closed" if closed.is_set() else f"{name}: Windows Graphics Capture stopped")
            with state:
                bgra = newest[0]
            r = client()
            top, left = max(r.top, 0), max(r.left, 0)
            client_area = bgra[top: r.top + r.height, left: r.left + r.width]  # (h, w, 4)
            if client_area.size == 0:
                raise Crew2Error(f"{name} shows no picture (minimised?)")
            return rgb(client_area)

        yield grab_once
    finally:
        stopping.set()
        if not control.is_finished():  # a closed window has ended the capture already
            control.stop()
