"""The Windows key reader and window source, tested up to the ctypes boundary with a stand-in user32."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from crew2.errors import Crew2Error
from crew2.io import win32
from crew2.keys import KEY_NAMES, default_profile, profile_from_keys


class FakeUser32:
    """What user32 answers, held in Python: windows (hwnd -> title, visible, client rect, origin)."""

    def __init__(self):
        self.down: set[int] = set()
        self.windows = {101: ("Task Manager", True, (0, 0, 800, 600), (10, 10)),
                        202: ("The Crew 2 (hidden helper)", False, (0, 0, 10, 10), (0, 0)),
                        303: ("The Crew®2 - 1920x1080", True, (0, 0, 1280, 720), (320, 180))}
        self.foreground = 101
        self.dpi_calls = 0

    def GetAsyncKeyState(self, vk):
        return -32768 if vk in self.down else 0  # the high bit, as a SHORT

    def EnumWindows(self, callback, lparam):
        for hwnd in self.windows:
            if not callback(hwnd, lparam):
                break
        return True

    def GetWindowTextLengthW(self, hwnd):
        return len(self.windows[hwnd][0])

    def GetWindowTextW(self, hwnd, buf, size):
        buf.value = self.windows[hwnd][0][: size - 1]
        return len(buf.value)

    def IsWindowVisible(self, hwnd):
        return self.windows[hwnd][1]

    def GetClientRect(self, hwnd, rect_ref):
        if hwnd not in self.windows:
            return 0
        rect = rect_ref._obj
        rect.left, rect.top, rect.right, rect.bottom = self.windows[hwnd][2]
        return 1

    def ClientToScreen(self, hwnd, point_ref):
        point = point_ref._obj
        dx, dy = self.windows[hwnd][3]
        point.x, point.y = point.x + dx, point.y + dy
        return 1

    def GetForegroundWindow(self):
        return self.foreground

    def SetProcessDpiAwarenessContext(self, context):
        assert isinstance(context, ctypes.c_void_p) and context.value == ctypes.c_void_p(-4).value
        self.dpi_calls += 1
        return 1


def test_every_key_name_has_a_virtual_key_code():
    assert set(win32.VK) == set(KEY_NAMES)
    assert win32.VK["w"] == 0x57 and win32.VK["up"] == 0x26 and win32.VK["f9"] == 0x78


def test_key_reader_reads_the_high_bit_in_profile_order():
    api = FakeUser32()
    keys = win32.WinKeys(default_profile().keys, extra=("f9",), api=api)
    api.down = {win32.VK["w"], win32.VK["d"], win32.VK["f9"]}
    vector = keys.read()
    assert vector.dtype == np.uint8 and vector.tolist() == [1, 0, 0, 1] and keys.down("f9")
    api.down = {win32.VK["a"]}
    assert keys.read().tolist() == [0, 1, 0, 0] and not keys.down("f9")
    arrows = win32.WinKeys(profile_from_keys("up,left,right,down").keys, api=api)
    api.down = {win32.VK["up"], win32.VK["right"]}
    assert arrows.read().tolist() == [1, 0, 1, 0]


def test_window_is_found_by_title_visible_only_and_gives_its_client_area():
    api = FakeUser32()
    win = win32.Win32Window("the crew", api=api)
    assert win.hwnd == 303, "the invisible helper window is skipped"
    r = win.rect()
    assert (r.left, r.top, r.width, r.height) == (320, 180, 1280, 720)
    api.windows[303] = (api.windows[303][0], True, (0, 0, 1280, 720), (500, 40))  # the window moved
    assert (win.rect().left, win.rect().top) == (500, 40)
    assert not win.focused()
    api.foreground = 303
    assert win.focused()


def test_missing_or_closed_window_is_a_clear_error():
    api = FakeUser32()
    with pytest.raises(Crew2Error, match="no window titled like 'Forza'"):
        win32.Win32Window("Forza", api=api)
    win = win32.Win32Window("crew", api=api)
    del api.windows[303]
    with pytest.raises(Crew2Error, match="is gone"):
        win.rect()


def test_several_windows_titled_alike_are_listed_not_guessed():
    api = FakeUser32()
    api.windows[404] = ("The Crew 2 tips - Mozilla Firefox", True, (0, 0, 1600, 900), (0, 0))
    api.windows[505] = ("The Crew 2", True, (0, 0, 1920, 1080), (0, 0))
    assert win32.Win32Window("the crew 2", api=api).hwnd == 505, "the one titled exactly so"
    with pytest.raises(Crew2Error) as e:
        win32.Win32Window("crew", api=api)
    message = str(e.value)
    assert message.startswith("3 windows are titled like 'crew'") and "'The Crew 2 tips - Mozilla Firefox'" in message
    assert "The Crew®2 - 1920x1080" in message and "hidden helper" not in message and "\n" not in message
    api.windows[606] = ("The Crew 2", True, (0, 0, 10, 10), (0, 0))  # the same title twice: one window's parts
    assert win32.Win32Window("the crew 2", api=api).hwnd == 505


@pytest.mark.parametrize("source", ["window", "screen"])
def test_dpi_awareness_is_set_once_at_the_start_for_every_source(source, monkeypatch):
    """Without it, on a screen scaled to 150% a region or a window's rectangle names the wrong pixels."""
    import contextlib
    import dataclasses

    from crew2.io import platform

    api, opened = FakeUser32(), []

    def nothing_there(*args, **kwargs):
        opened.append(api.dpi_calls)  # what had been set when the source was opened
        raise Crew2Error("nothing to capture here")

    monkeypatch.setattr(win32, "user32", lambda: api)
    monkeypatch.setattr(platform, "screen_source", nothing_there)
    windows = dataclasses.replace(platform.PLATFORMS["win32"], window=nothing_there)
    with contextlib.ExitStack() as stack, pytest.raises(Crew2Error, match="nothing to capture"):
        platform.open_screen_game(stack, source, fps=20, window="The Crew", platform=windows)
    assert opened == [1] and api.dpi_calls == 1
