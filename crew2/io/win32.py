"""Windows: key state (GetAsyncKeyState), game windows (found by title or process, client area, foreground),
whether the game runs elevated, and the window's capture (Windows Graphics Capture, `crew2.io.wgc`, or mss); keys
go out through `crew2.io.keyboard.DirectInputSender`.

Every call goes through an `api` object holding the user32, kernel32, advapi32 and dwmapi functions crew2 uses,
each declared with its argument and result types (`windows_api`); tests on other systems stand in for it and
exercise everything up to the ctypes boundary.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import ntpath
import string
from ctypes import wintypes
from types import SimpleNamespace

import numpy as np

from crew2 import x11
from crew2.errors import Crew2Error
from crew2.io.capture import ThreadedCapture, first_working, mss_region
from crew2.io.wgc import wgc_window

log = logging.getLogger(__name__)

# Virtual-key codes of crew2's key names (winuser.h).
VK = {
    **{c: ord(c.upper()) for c in string.ascii_lowercase}, **{d: ord(d) for d in string.digits},
    "up": 0x26, "down": 0x28, "left": 0x25, "right": 0x27, "space": 0x20, "shift": 0x10, "ctrl": 0x11,
    "alt": 0x12, "enter": 0x0D, "tab": 0x09, "esc": 0x1B, "backspace": 0x08, "home": 0x24, "end": 0x23,
    "pageup": 0x21, "pagedown": 0x22, "insert": 0x2D, "delete": 0x2E,
    **{f"f{i}": 0x6F + i for i in range(1, 13)},
}
KEY_DOWN = 0x8000  # GetAsyncKeyState: the high bit is set while the key is down
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
TOKEN_QUERY = 0x0008
TOKEN_ELEVATION = 20  # TOKEN_INFORMATION_CLASS.TokenElevation
ERROR_ACCESS_DENIED = 5
DWMWA_EXTENDED_FRAME_BOUNDS = 9  # the window as it is drawn (and captured), without its invisible resize border
_ENUM_PROC = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)
_HANDLE, _DWORD, _BOOL, _HWND = wintypes.HANDLE, wintypes.DWORD, wintypes.BOOL, wintypes.HWND
# dll -> function -> (result type, argument types): handles are pointers on 64-bit Windows, not C ints.
PROTOTYPES = {
    "user32": {
        "GetAsyncKeyState": (wintypes.SHORT, [ctypes.c_int]),
        "EnumWindows": (_BOOL, [_ENUM_PROC, wintypes.LPARAM]),
        "GetWindowTextLengthW": (ctypes.c_int, [_HWND]),
        "GetWindowTextW": (ctypes.c_int, [_HWND, wintypes.LPWSTR, ctypes.c_int]),
        "IsWindowVisible": (_BOOL, [_HWND]),
        "GetClientRect": (_BOOL, [_HWND, ctypes.POINTER(wintypes.RECT)]),
        "ClientToScreen": (_BOOL, [_HWND, ctypes.POINTER(wintypes.POINT)]),
        "GetWindowRect": (_BOOL, [_HWND, ctypes.POINTER(wintypes.RECT)]),
        "GetForegroundWindow": (_HWND, []),
        "GetWindowThreadProcessId": (_DWORD, [_HWND, ctypes.POINTER(_DWORD)]),
        "SetProcessDpiAwarenessContext": (_BOOL, [ctypes.c_void_p]),  # Windows 10 1703 on
        "SetProcessDPIAware": (_BOOL, []),
    },
    "kernel32": {
        "GetCurrentProcess": (_HANDLE, []),
        "OpenProcess": (_HANDLE, [_DWORD, _BOOL, _DWORD]),
        "CloseHandle": (_BOOL, [_HANDLE]),
        "QueryFullProcessImageNameW": (_BOOL, [_HANDLE, _DWORD, wintypes.LPWSTR, ctypes.POINTER(_DWORD)]),
    },
    "advapi32": {
        "OpenProcessToken": (_BOOL, [_HANDLE, _DWORD, ctypes.POINTER(_HANDLE)]),
        "GetTokenInformation": (_BOOL, [_HANDLE, ctypes.c_int, ctypes.c_void_p, _DWORD, ctypes.POINTER(_DWORD)]),
    },
    "dwmapi": {
        "DwmGetWindowAttribute": (ctypes.c_long, [_HWND, _DWORD, ctypes.c_void_p, _DWORD]),  # HRESULT: 0 is S_OK
    },
}


def windows_api(load=None) -> SimpleNamespace:
    """The functions of `PROTOTYPES`, typed, as attributes of one object (those this Windows lacks are absent), and
    `last_error()`. `load(dll name)` opens a library (ctypes.WinDLL with the thread's last error kept)."""
    if load is None:
        if not hasattr(ctypes, "WinDLL"):
            raise Crew2Error("the Windows key reader and window source need Windows")
        load = lambda name: ctypes.WinDLL(name, use_last_error=True)  # noqa: E731
    api = SimpleNamespace(last_error=getattr(ctypes, "get_last_error", lambda: 0))  # Windows only
    for dll, functions in PROTOTYPES.items():
        lib = load(dll)
        for name, (restype, argtypes) in functions.items():
            function = getattr(lib, name, None)
            if function is not None:
                function.restype, function.argtypes = restype, argtypes
                setattr(api, name, function)
    return api


class WinKeys:
    """Key reader on Windows: `keys` as a uint8 vector, plus the `extra` keys (hotkeys) by name. GetAsyncKeyState
    sees a person's keys and SendInput's alike (see `crew2.io.keyboard.X11Keys`)."""

    def __init__(self, keys, extra: tuple[str, ...] = (), api=None):
        self.api = api or windows_api()
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


def process_id(api, hwnd: int) -> int:
    pid = wintypes.DWORD()
    api.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
    return pid.value


@contextlib.contextmanager
def opened_process(api, pid: int):
    """A handle to process `pid` for queries (None when Windows refuses one), closed afterwards."""
    handle = api.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    try:
        yield handle or None
    finally:
        if handle:
            api.CloseHandle(handle)


def process_name(api, pid: int) -> str | None:
    """The file name of the program running as `pid` ("TheCrew2.exe"); None when Windows does not say."""
    with opened_process(api, pid) as handle:
        if handle is None:
            return None
        size, buf = wintypes.DWORD(1024), ctypes.create_unicode_buffer(1024)
        if not api.QueryFullProcessImageNameW(handle, 0, buf, ctypes.byref(size)):
            return None
        return ntpath.basename(buf.value[: size.value])


def elevated(api, handle) -> bool | None:
    """Whether the process behind `handle` runs elevated (as administrator); None when Windows does not say. A token
    that an unelevated process may not even read belongs to an elevated one."""
    token = wintypes.HANDLE()
    if not api.OpenProcessToken(handle, TOKEN_QUERY, ctypes.byref(token)):
        return True if api.last_error() == ERROR_ACCESS_DENIED else None
    try:
        value, size = wintypes.DWORD(), wintypes.DWORD()
        if not api.GetTokenInformation(token, TOKEN_ELEVATION, ctypes.byref(value), ctypes.sizeof(value),
                                       ctypes.byref(size)):
            return None
        return bool(value.value)
    finally:
        api.CloseHandle(token)


def check_elevation(api, hwnd: int, what: str) -> None:
    """An elevated game and an unelevated crew2: Windows drops every key crew2 sends it, without a word (User
    Interface Privilege Isolation), and SendInput still reports them sent. Say so before anything starts. `what`
    names the window in the message."""
    if elevated(api, api.GetCurrentProcess()):
        return  # an elevated crew2 reaches every game
    with opened_process(api, process_id(api, hwnd)) as handle:  # any process may query this much of another
        game = None if handle is None else elevated(api, handle)
    if game:
        raise Crew2Error(f"{what} runs as administrator and crew2 does not: Windows would drop every key crew2 "
                         "sends it (and may hide your keys from crew2); start crew2 from a terminal opened with "
                         "'Run as administrator', or start the game without it")
    if game is None:
        log.warning("could not tell whether %s runs as administrator: if crew2's keys do nothing in the game, "
                    "start crew2 from a terminal opened with 'Run as administrator'", what)


def check_front(api=None) -> None:
    """`check_elevation` for the window in front (--source screen: the game, once the countdown has let the person
    switch to it)."""
    api = api or windows_api()
    hwnd = api.GetForegroundWindow()
    if hwnd:
        check_elevation(api, hwnd, "the window in front")


def find_window(api, wanted: str) -> int:
    """The visible top-level window whose title contains `wanted`, or whose program is `wanted` ("TheCrew2.exe",
    "thecrew2"; `x11.is_program`), case aside; several are listed, not guessed (`x11.choose_window`)."""
    text, found = wanted.lower(), []

    def check(hwnd, _lparam) -> bool:
        length = api.GetWindowTextLengthW(hwnd)
        if length and api.IsWindowVisible(hwnd):
            buf = ctypes.create_unicode_buffer(length + 1)
            api.GetWindowTextW(hwnd, buf, length + 1)
            if text in buf.value.lower() or x11.is_program(process_name(api, process_id(api, hwnd)), wanted):
                found.append((hwnd, buf.value))
        return True

    api.EnumWindows(_ENUM_PROC(check), 0)
    return x11.choose_window(wanted, found)


class Win32Window:
    """A game window on Windows: client area in screen pixels (followed when it moves), focus, and its capture."""

    def __init__(self, title: str, api=None):
        self.api = api or windows_api()  # DPI awareness is the platform's, set once for all (`platform.prepare`)
        self.title = title
        self.hwnd = find_window(self.api, title)
        check_elevation(self.api, self.hwnd, f"'{title}'")

    def rect(self) -> x11.Rect:
        r, origin = wintypes.RECT(), wintypes.POINT(0, 0)
        if not self.api.GetClientRect(self.hwnd, ctypes.byref(r)) or \
                not self.api.ClientToScreen(self.hwnd, ctypes.byref(origin)):
            raise Crew2Error(f"the window '{self.title}' is gone")
        return x11.Rect(origin.x, origin.y, r.right - r.left, r.bottom - r.top)

    def client_in_frame(self) -> x11.Rect:
        """Where the client area lies in a capture of the whole window (Windows Graphics Capture: the window as drawn,
        title bar and border included; a borderless game's frame is its client area)."""
        client, bounds = self.rect(), wintypes.RECT()
        if self.api.DwmGetWindowAttribute(self.hwnd, DWMWA_EXTENDED_FRAME_BOUNDS, ctypes.byref(bounds),
                                          ctypes.sizeof(bounds)) != 0 and \
                not self.api.GetWindowRect(self.hwnd, ctypes.byref(bounds)):
            raise Crew2Error(f"the window '{self.title}' is gone")
        return x11.Rect(client.left - bounds.left, client.top - bounds.top, client.width, client.height)

    def focused(self) -> bool:
        return self.api.GetForegroundWindow() == self.hwnd

    def source(self, max_fps: float | None = 120.0, capture: str = "auto") -> ThreadedCapture:
        """The window's frames: "wgc" reads the window itself (even when covered), "mss" the screen where it is;
        "auto" is wgc where it starts, else mss."""
        name = f"window '{self.title}'"
        wgc = lambda: wgc_window(self.hwnd, self.client_in_frame, name)  # noqa: E731
        screen = lambda: mss_region(None, self.rect)  # noqa: E731
        opener = {"wgc": wgc, "mss": screen, "auto": lambda: first_working(wgc, screen)}[capture]
        return ThreadedCapture(opener, name, max_fps)

    def close(self) -> None:
        pass
