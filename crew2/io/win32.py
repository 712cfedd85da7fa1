"""Windows: key state (GetAsyncKeyState) and game windows (found by title, client area, foreground); keys go out
through `crew2.io.keyboard.DirectInputSender`.

All calls go through a `user32` object (ctypes.WinDLL("user32") on Windows), passed in so that tests on
other systems can stand in for it and exercise everything up to the ctypes boundary.
"""

from __future__ import annotations

import ctypes
import string
from ctypes import wintypes

import numpy as np

from crew2 import x11
from crew2.errors import Crew2Error
from crew2.io.capture import ThreadedCapture, mss_region

# Virtual-key codes of crew2's key names (winuser.h).
VK = {
    **{c: ord(c.upper()) for c in string.ascii_lowercase}, **{d: ord(d) for d in string.digits},
    "up": 0x26, "down": 0x28, "left": 0x25, "right": 0x27, "space": 0x20, "shift": 0x10, "ctrl": 0x11,
    "alt": 0x12, "enter": 0x0D, "tab": 0x09, "esc": 0x1B, "backspace": 0x08, "home": 0x24, "end": 0x23,
    "pageup": 0x21, "pagedown": 0x22, "insert": 0x2D, "delete": 0x2E,
    **{f"f{i}": 0x6F + i for i in range(1, 13)},
}
KEY_DOWN = 0x8000  # GetAsyncKeyState: the high bit is set while the key is down
_ENUM_PROC = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)


def user32():
    if not hasattr(ctypes, "WinDLL"):
        raise Crew2Error("the Windows key reader and window source need Windows")
    return ctypes.WinDLL("user32", use_last_error=True)


class WinKeys:
    """Key reader on Windows: `keys` as a uint8 vector, plus the `extra` keys (hotkeys) by name. GetAsyncKeyState
    sees a person's keys and SendInput's alike (see `crew2.io.keyboard.X11Keys`)."""

    def __init__(self, keys, extra: tuple[str, ...] = (), api=None):
        self.api = api or user32()
        self.n = len(keys)
        self.codes = [VK[k] for k in (*keys, *extra)]
        self.extra = extra
        self.last: list[bool] = []

    def read(self) -> np.ndarray:
        self.last = [bool(self.api.GetAsyncKeyState(vk) & KEY_DOWN) for vk in self.codes]
        return np.array(self.last[: self.n], np.uint8)

    def down(self, key: str) -> bool:
        return bool(self.last and self.last[self.n + self.extra.index(key)])

    def close(self) -> None:
        pass


def make_dpi_aware(api) -> None:
    """Per-monitor DPI awareness, so window rectangles are in real pixels (what mss captures)."""
    per_monitor_v2 = ctypes.c_void_p(-4)  # DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2
    if hasattr(api, "SetProcessDpiAwarenessContext"):
        api.SetProcessDpiAwarenessContext(per_monitor_v2)
    elif hasattr(api, "SetProcessDPIAware"):
        api.SetProcessDPIAware()


def find_window(api, title: str) -> int:
    """The visible top-level window titled like `title` (`x11.choose_window`: several are listed, not guessed)."""
    wanted, found = title.lower(), []

    def check(hwnd, _lparam) -> bool:
        length = api.GetWindowTextLengthW(hwnd)
        if length and api.IsWindowVisible(hwnd):
            buf = ctypes.create_unicode_buffer(length + 1)
            api.GetWindowTextW(hwnd, buf, length + 1)
            if wanted in buf.value.lower():
                found.append((hwnd, buf.value))
        return True

    api.EnumWindows(_ENUM_PROC(check), 0)
    return x11.choose_window(title, found)


class Win32Window:
    """A game window on Windows: client area in screen pixels (followed when it moves) and focus."""

    def __init__(self, title: str, api=None):
        self.api = api or user32()  # DPI awareness is the platform's, set once for every source (`platform.prepare`)
        self.title = title
        self.hwnd = find_window(self.api, title)

    def rect(self) -> x11.Rect:
        r, origin = wintypes.RECT(), wintypes.POINT(0, 0)
        if not self.api.GetClientRect(self.hwnd, ctypes.byref(r)) or \
                not self.api.ClientToScreen(self.hwnd, ctypes.byref(origin)):
            raise Crew2Error(f"the window '{self.title}' is gone")
        return x11.Rect(origin.x, origin.y, r.right - r.left, r.bottom - r.top)

    def focused(self) -> bool:
        return self.api.GetForegroundWindow() == self.hwnd

    def source(self, max_fps: float = 120.0) -> ThreadedCapture:
        return ThreadedCapture(lambda: mss_region(None, self.rect), f"window '{self.title}'", max_fps)

    def close(self) -> None:
        pass
