"""The Windows key reader, window source, elevation check, capture and key sender, tested up to the ctypes and
package boundaries with stand-ins that answer as Windows, windows-capture and pydirectinput-rgx do."""

from __future__ import annotations

import ctypes
import logging
import re
import sys
import threading
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from crew2.errors import Crew2Error
from crew2.io import win32
from crew2.keys import KEY_NAMES, default_profile, profile_from_keys

SELF = 4242  # crew2's own process id
GAME = r"C:\Program Files (x86)\Ubisoft\Ubisoft Game Launcher\games\The Crew 2\TheCrew2.exe"
TITLE_BAR = (8, 31)  # where the client area lies in the window as drawn: left border, title bar


class FakeWindows:
    """What user32, kernel32, advapi32 and dwmapi answer, held in Python: windows (hwnd -> title, visible, client
    rect, client origin on the screen, process id) and processes (pid -> program, elevated). As on Windows, any
    process may query another's name, but only an elevated one may read an elevated process's token."""

    def __init__(self):
        self.down: set[int] = set()
        self.windows = {101: ("Task Manager", True, (0, 0, 800, 600), (10, 10), 11),
                        202: ("The Crew 2 (hidden helper)", False, (0, 0, 10, 10), (0, 0), 33),
                        303: ("The Crew®2 - 1920x1080", True, (0, 0, 1280, 720), (320, 180), 33)}
        self.processes = {11: (r"C:\Windows\System32\Taskmgr.exe", True), 33: (GAME, False),
                          SELF: (r"C:\Python311\python.exe", False)}
        self.refused: set[int] = set()  # processes OpenProcess refuses (a protected process)
        self.handles: dict[int, tuple[str, int]] = {}  # open handle -> (what, pid)
        self.foreground = 101
        self.dpi_calls = 0
        self.error = 0

    def last_error(self):
        return self.error

    @staticmethod
    def _h(handle) -> int:
        """A handle as ctypes passes it: an int, or a HANDLE object (c_void_p) crew2 received before."""
        return handle.value if isinstance(handle, ctypes.c_void_p) else handle

    def _open(self, what, pid):
        handle = 1000 + len(self.handles) + 4 * max(self.handles, default=0)
        self.handles[handle] = (what, pid)
        return handle

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

    def DwmGetWindowAttribute(self, hwnd, attribute, rect_ref, size):
        assert attribute == win32.DWMWA_EXTENDED_FRAME_BOUNDS and size == ctypes.sizeof(rect_ref._obj)
        if hwnd not in self.windows:
            return -2147024890  # E_HANDLE
        (x, y), (_, _, w, h) = self.windows[hwnd][3], self.windows[hwnd][2]
        rect = rect_ref._obj
        rect.left, rect.top = x - TITLE_BAR[0], y - TITLE_BAR[1]
        rect.right, rect.bottom = x + w + TITLE_BAR[0], y + h + TITLE_BAR[0]
        return 0

    def GetWindowRect(self, hwnd, rect_ref):
        raise AssertionError("DwmGetWindowAttribute answered: GetWindowRect (which counts the invisible border) "
                             "is not needed")

    def GetForegroundWindow(self):
        return self.foreground

    def GetWindowThreadProcessId(self, hwnd, pid_ref):
        pid_ref._obj.value = self.windows[hwnd][4]
        return 1

    def SetProcessDpiAwarenessContext(self, context):
        assert isinstance(context, ctypes.c_void_p) and context.value == ctypes.c_void_p(-4).value
        self.dpi_calls += 1
        return 1

    def GetCurrentProcess(self):
        return -1  # a pseudo handle, never closed

    def OpenProcess(self, access, inherit, pid):
        assert access == win32.PROCESS_QUERY_LIMITED_INFORMATION
        if pid in self.refused or pid not in self.processes:
            self.error = win32.ERROR_ACCESS_DENIED
            return 0
        return self._open("process", pid)

    def CloseHandle(self, handle):
        assert self._h(handle) in self.handles, "only handles that were opened are closed"
        del self.handles[self._h(handle)]
        return 1

    def QueryFullProcessImageNameW(self, handle, flags, buf, size_ref):
        path = self.processes[self.handles[self._h(handle)][1]][0]
        buf.value = path
        size_ref._obj.value = len(path)
        return 1

    def OpenProcessToken(self, handle, access, token_ref):
        pid = SELF if handle == -1 else self.handles[self._h(handle)][1]
        if self.processes[pid][1] and not self.processes[SELF][1]:
            self.error = win32.ERROR_ACCESS_DENIED
            return 0
        token_ref._obj.value = self._open("token", pid)
        return 1

    def GetTokenInformation(self, token, what, value_ref, size, size_ref):
        assert what == win32.TOKEN_ELEVATION and size == ctypes.sizeof(ctypes.wintypes.DWORD)  # 4 on Windows
        value_ref._obj.value = int(self.processes[self.handles[self._h(token)][1]][1])
        size_ref._obj.value = size
        return 1


def test_every_key_name_has_a_virtual_key_code():
    assert set(win32.VK) == set(KEY_NAMES)
    assert win32.VK["w"] == 0x57 and win32.VK["up"] == 0x26 and win32.VK["f9"] == 0x78


def test_key_reader_reads_the_high_bit_in_profile_order():
    api = FakeWindows()
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
    api = FakeWindows()
    win = win32.Win32Window("the crew", api=api)
    assert win.hwnd == 303, "the invisible helper window is skipped"
    r = win.rect()
    assert (r.left, r.top, r.width, r.height) == (320, 180, 1280, 720)
    api.windows[303] = (api.windows[303][0], True, (0, 0, 1280, 720), (500, 40), 33)  # the window moved
    assert (win.rect().left, win.rect().top) == (500, 40)
    assert not win.focused()
    api.foreground = 303
    assert win.focused()


def test_missing_or_closed_window_is_a_clear_error():
    api = FakeWindows()
    with pytest.raises(Crew2Error, match="no window titled like 'Forza'"):
        win32.Win32Window("Forza", api=api)
    win = win32.Win32Window("crew", api=api)
    del api.windows[303]
    with pytest.raises(Crew2Error, match="is gone"):
        win.rect()


def test_several_windows_titled_alike_are_listed_not_guessed():
    api = FakeWindows()
    api.processes[44] = (r"C:\Program Files\Mozilla Firefox\firefox.exe", False)
    api.windows[404] = ("The Crew 2 tips - Mozilla Firefox", True, (0, 0, 1600, 900), (0, 0), 44)
    api.windows[505] = ("The Crew 2", True, (0, 0, 1920, 1080), (0, 0), 33)
    assert win32.Win32Window("the crew 2", api=api).hwnd == 505, "the one titled exactly so"
    with pytest.raises(Crew2Error) as e:
        win32.Win32Window("crew", api=api)
    message = str(e.value)
    assert message.startswith("3 windows are titled like 'crew'") and "'The Crew 2 tips - Mozilla Firefox'" in message
    assert "The Crew®2 - 1920x1080" in message and "hidden helper" not in message and "\n" not in message
    api.windows[606] = ("The Crew 2", True, (0, 0, 10, 10), (0, 0), 33)  # the same title twice: one window's parts
    assert win32.Win32Window("the crew 2", api=api).hwnd == 505


@pytest.mark.parametrize("source", ["window", "screen"])
def test_dpi_awareness_is_set_once_at_the_start_for_every_source(source, monkeypatch):
    """Without it, on a screen scaled to 150% a region or a window's rectangle names the wrong pixels."""
    import contextlib
    import dataclasses

    from crew2.io import platform

    api, opened = FakeWindows(), []

    def nothing_there(*args, **kwargs):
        opened.append(api.dpi_calls)  # what had been set when the source was opened
        raise Crew2Error("nothing to capture here")

    monkeypatch.setattr(win32, "windows_api", lambda: api)
    monkeypatch.setattr(platform, "screen_source", nothing_there)
    windows = dataclasses.replace(platform.PLATFORMS["win32"], window=nothing_there)
    with contextlib.ExitStack() as stack, pytest.raises(Crew2Error, match="nothing to capture"):
        platform.open_screen_game(stack, source, fps=20, window="The Crew", platform=windows)
    assert opened == [1] and api.dpi_calls == 1


def test_window_is_found_by_its_program_too_and_every_handle_is_closed():
    """The Crew 2's title carries a ® and the resolution; its program is TheCrew2.exe whatever the title says."""
    api = FakeWindows()
    for name in ("TheCrew2.exe", "thecrew2"):
        assert win32.Win32Window(name, api=api).hwnd == 303, "the visible window of the program, not its helper"
    assert not api.handles, "every process and token handle opened was closed"
    api.refused = {33}  # Windows refuses to name the program: only the title can match
    with pytest.raises(Crew2Error, match=re.escape("no window titled like 'TheCrew2.exe'")):
        win32.Win32Window("TheCrew2.exe", api=api)
    assert win32.Win32Window("crew®2", api=api).hwnd == 303


def test_an_elevated_game_and_an_unelevated_crew2_is_an_error_before_anything_starts(caplog):
    """Windows (UIPI) drops the keys an unelevated process sends to an elevated one, and SendInput says nothing."""
    api = FakeWindows()
    api.processes[33] = (GAME, True)  # the game, or the launcher that started it, runs as administrator
    with pytest.raises(Crew2Error, match="runs as administrator and crew2 does not") as e:
        win32.Win32Window("TheCrew2.exe", api=api)
    assert "Run as administrator" in str(e.value) and "\n" not in str(e.value)
    api.processes[SELF] = (api.processes[SELF][0], True)  # crew2 elevated too: its keys reach the game
    assert win32.Win32Window("TheCrew2.exe", api=api).hwnd == 303
    api.processes[SELF] = (api.processes[SELF][0], False)
    api.processes[33] = (GAME, False)
    assert win32.Win32Window("TheCrew2.exe", api=api).hwnd == 303
    assert not api.handles
    api.refused = {33}  # Windows will not say: a note, not an error
    with caplog.at_level(logging.WARNING, logger="crew2.io.win32"):
        assert win32.Win32Window("crew®2", api=api).hwnd == 303
    assert "could not tell whether 'crew®2' runs as administrator" in caplog.text
    api.refused = set()
    api.processes[33] = (GAME, True)
    api.foreground = 303  # --source screen: the game is in front once the countdown ends
    with pytest.raises(Crew2Error, match=r"^the window in front runs as administrator and crew2 does not"):
        win32.check_front(api)
    api.foreground = 0  # nothing in front (a desktop switch): nothing to check
    win32.check_front(api)


def test_every_windows_function_crew2_calls_is_declared_with_its_types():
    """Undeclared, a handle is returned and passed as a 32-bit C int: 64-bit Windows' handles are pointers."""
    called = {name for name in dir(FakeWindows) if name[0].isupper()}  # the fake answers every call crew2 makes
    declared = {name for functions in win32.PROTOTYPES.values() for name in functions}
    assert called <= declared, f"called but not declared: {sorted(called - declared)}"

    class Dll:  # a loaded library: functions to set types on; one this Windows lacks
        def __init__(self, name):
            self.name = name

        def __getattr__(self, function):
            if function == "SetProcessDpiAwarenessContext":
                raise AttributeError(function)  # before Windows 10 1703
            return SimpleNamespace(name=function)

    api = win32.windows_api(load=Dll)
    assert not hasattr(api, "SetProcessDpiAwarenessContext") and hasattr(api, "SetProcessDPIAware")
    assert api.GetForegroundWindow.restype is ctypes.wintypes.HWND
    assert api.OpenProcess.restype is ctypes.wintypes.HANDLE and api.OpenProcess.argtypes[2] is ctypes.wintypes.DWORD
    for functions in win32.PROTOTYPES.values():
        for name, (restype, argtypes) in functions.items():
            if hasattr(api, name):
                assert getattr(api, name).restype is restype and getattr(api, name).argtypes == argtypes


def bgra_window(client_bgr, size=(36, 64), border=(200, 200, 200)) -> np.ndarray:
    """A captured window as Windows Graphics Capture gives it: BGRA, title bar and borders around the client area."""
    h, w = size
    frame = np.full((h + TITLE_BAR[1] + TITLE_BAR[0], w + 2 * TITLE_BAR[0], 4), (*border, 255), np.uint8)
    frame[TITLE_BAR[1]: TITLE_BAR[1] + h, TITLE_BAR[0]: TITLE_BAR[0] + w, :3] = client_bgr
    return frame


def fake_windows_capture(frames, *, refuse=None, refuse_border=False, close=False):
    """The windows-capture package as crew2 uses it: `WindowsCapture(window_hwnd=...)`, handlers set by name with
    `event`, `start_free_threaded()` -> a control. Frames arrive on the package's thread, one after another, in a
    buffer that is valid only during the call; then nothing (as when a window stops drawing), or the window closes."""
    made = []

    class Control:
        def __init__(self, thread, stopped):
            self.thread, self.stopped = thread, stopped

        def stop(self):
            self.stopped.set()
            self.thread.join(5)

        def is_finished(self):
            return not self.thread.is_alive()

    class WindowsCapture:
        def __init__(self, cursor_capture=True, draw_border=None, secondary_window=None, minimum_update_interval=None,
                     dirty_region=None, monitor_index=None, window_name=None, window_hwnd=None):
            made.append({"draw_border": draw_border, "window_hwnd": window_hwnd, "cursor_capture": cursor_capture})
            self.draw_border, self.handlers = draw_border, {}

        def event(self, handler):
            assert handler.__name__ in ("on_frame_arrived", "on_closed"), "the package knows handlers by name"
            self.handlers[handler.__name__] = handler
            return handler

        def start_free_threaded(self):
            if refuse:
                raise Exception(refuse)
            if refuse_border and self.draw_border is False:
                raise Exception("Failed to create capture session: BorderConfigUnsupported")
            stopped = threading.Event()

            def run():
                for frame in frames:
                    if stopped.wait(0.005):
                        return
                    buffer = frame.copy()
                    self.handlers["on_frame_arrived"](SimpleNamespace(frame_buffer=buffer), SimpleNamespace(
                        stop=stopped.set))
                    buffer[:] = 77  # the mapped texture is gone once the handler returns
                if close:
                    self.handlers["on_closed"]()
                    return
                stopped.wait()

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            return Control(thread, stopped)

    return SimpleNamespace(WindowsCapture=WindowsCapture, made=made)


@contextmanager
def screen_grabs(shade: int):
    """mss's grabber, standing in for the screen where the window is."""
    yield lambda: np.full((36, 64, 3), shade, np.uint8)


@pytest.fixture
def game_window(monkeypatch):
    api = FakeWindows()
    api.windows[303] = ("The Crew®2", True, (0, 0, 64, 36), (320, 180), 33)
    monkeypatch.setattr(win32, "mss_region", lambda display, rect: screen_grabs(99))
    return win32.Win32Window("TheCrew2.exe", api=api)


def test_windows_graphics_capture_reads_the_client_area_of_the_window_itself(game_window, monkeypatch):
    frames = [bgra_window((10 * i, 20, 30)) for i in range(1, 6)]
    module = fake_windows_capture(frames)
    monkeypatch.setitem(sys.modules, "windows_capture", module)
    with game_window.source(max_fps=200, capture="wgc") as source:
        seen = []
        while (30, 20, 50) not in seen and len(seen) < 1000:  # the newest frame each time, until the last one
            frame = source.grab()
            assert frame.shape == (36, 64, 3) and (frame == frame[0, 0]).all(), "the client area, no title bar"
            seen.append(tuple(frame[0, 0].tolist()))
            threading.Event().wait(0.002)
    assert set(seen) <= {(30, 20, 10 * i) for i in range(1, 6)} and seen[-1] == (30, 20, 50), \
        "RGB, frames as they arrived, copied before their buffer is gone"
    assert module.made == [{"draw_border": False, "window_hwnd": 303, "cursor_capture": False}]


def test_capture_without_border_where_windows_refuses_it_and_auto_falls_back_to_the_screen(game_window, monkeypatch,
                                                                                          caplog):
    module = fake_windows_capture([bgra_window((0, 0, 255))], refuse_border=True)
    monkeypatch.setitem(sys.modules, "windows_capture", module)
    with game_window.source(capture="auto") as source:
        assert source.grab()[0, 0].tolist() == [255, 0, 0], "Windows 10's yellow border rather than no capture"
    assert [m["draw_border"] for m in module.made] == [False, None]

    monkeypatch.setitem(sys.modules, "windows_capture", fake_windows_capture([], refuse="Failed to find window"))
    with pytest.raises(Crew2Error, match=re.escape("Windows Graphics Capture did not start (Failed to find window)")):
        game_window.source(capture="wgc").__enter__()
    with caplog.at_level(logging.WARNING, logger="crew2.io.capture"), game_window.source(capture="auto") as source:
        assert source.grab()[0, 0].tolist() == [99, 99, 99], "the screen where the window is"
    assert "did not start" in caplog.text and "capturing the screen where the window is instead" in caplog.text

    monkeypatch.setitem(sys.modules, "windows_capture", None)  # not installed
    with pytest.raises(Crew2Error, match="needs the windows-capture package"):
        game_window.source(capture="wgc").__enter__()
    with game_window.source(capture="auto") as source:
        assert source.grab()[0, 0].tolist() == [99, 99, 99]
    with game_window.source(capture="mss") as source:
        assert source.grab()[0, 0].tolist() == [99, 99, 99]


def test_a_window_that_closes_or_shows_nothing_is_named(game_window, monkeypatch):
    monkeypatch.setitem(sys.modules, "windows_capture", fake_windows_capture([bgra_window(0)] * 3, close=True))
    with game_window.source(max_fps=200, capture="wgc") as source, pytest.raises(Crew2Error, match="closed"):
        for _ in range(500):
            source.grab()
            threading.Event().wait(0.005)
    monkeypatch.setitem(sys.modules, "windows_capture", fake_windows_capture([bgra_window(0)]))
    with game_window.source(max_fps=200, capture="wgc") as source:
        game_window.api.windows[303] = ("The Crew®2", True, (0, 0, 0, 0), (320, 180), 33)  # minimised now
        with pytest.raises(Crew2Error, match=re.escape("shows no picture (minimised?)")):
            for _ in range(500):
                source.grab()
                threading.Event().wait(0.005)
    monkeypatch.setitem(sys.modules, "windows_capture", fake_windows_capture([]))  # minimised: no frame at all
    monkeypatch.setattr("crew2.io.wgc.FIRST_FRAME_S", 0.3)
    with pytest.raises(Crew2Error, match=re.escape("gave no frame in 0.3 s (is the window minimised?)")):
        game_window.source(capture="wgc").__enter__()


class NoKeys:
    def read(self):
        return np.zeros(4, np.uint8)


@pytest.mark.parametrize("frames, blank, n", [
    ([bgra_window(0)], "black", 100),  # a black window: named from 3 s on
    ([bgra_window(np.random.default_rng(i).integers(0, 256, (36, 64, 3))) for i in range(4)], "frozen", 140),
])
def test_recording_names_a_black_or_frozen_capture(frames, blank, n, game_window, monkeypatch, tmp_path):
    """Through the real recorder and writer: a black window, and one that stops drawing (its capture then gives its
    last frame again)."""
    from crew2.data.session import SessionMeta
    from crew2.record.recorder import blank_warning, record_loop
    from crew2.record.writer import BackgroundWriter

    monkeypatch.setitem(sys.modules, "windows_capture", fake_windows_capture(frames))
    meta = SessionMeta.for_profile(default_profile(), fps=20, width=64, height=36, source="window", driver="human")
    writer = BackgroundWriter(tmp_path / "s.h5", meta)
    with game_window.source(max_fps=200, capture="wgc") as source:
        threading.Event().wait(0.2)  # every frame has arrived: what follows is the last one, again
        stats = record_loop(source, NoKeys(), writer, fps=20, size=(64, 36), realtime=False, max_frames=n)
    writer.close()
    assert stats.blank == blank and stats.blank_frames > 0
    assert "borderless windowed mode" in blank_warning(stats)


def fake_pydirectinput(refused=()):
    """pydirectinput-rgx as crew2 uses it: key names to scan codes (extended keys carry 0xE000), keyDown/keyUp that
    say whether SendInput inserted every event (here: False for the keys in `refused`), its pause and fail-safe."""
    sent = []
    extended = {"up", "down", "left", "right", "home", "end", "pageup", "pagedown", "insert", "delete"}
    mapping = {k: (0xE000 if k in extended else 0) + i for i, k in enumerate(KEY_NAMES, 1)}

    def key(what):
        def call(name, logScreenshot=None, _pause=True, *, auto_shift=False):
            if name not in mapping:
                return False
            sent.append((what, name))
            return name not in refused
        return call

    return SimpleNamespace(PAUSE=0.01, FAILSAFE=True, KEYBOARD_MAPPING=mapping, keyDown=key("down"), keyUp=key("up"),
                           scancode_keyDown=None, sent=sent)


def test_key_sender_sends_changes_only_and_releases_everything_it_pressed():
    from crew2.io.keyboard import DirectInputSender

    module = fake_pydirectinput()
    with DirectInputSender(["w", "a", "s", "d"], module=module) as sender:
        assert module.PAUSE == 0 and module.FAILSAFE is False, "no sleep per call, no mouse-corner abort"
        sender.apply({"w": True, "a": False, "s": False, "d": True})
        sender.apply({"w": True, "a": False, "s": False, "d": True})  # nothing changed: nothing sent
        sender.apply({"w": True, "a": True, "s": False, "d": False})
    assert module.sent == [("down", "w"), ("down", "d"), ("down", "a"), ("up", "d"), ("up", "a"), ("up", "w")]
    with pytest.raises(Crew2Error, match="pydirectinput has no key named f13"):
        DirectInputSender(["w", "f13"], module=module)


def test_a_key_windows_refuses_is_an_error_and_the_other_keys_are_released_all_the_same():
    from crew2.io.keyboard import DirectInputSender

    module = fake_pydirectinput(refused={"a"})
    sender = DirectInputSender(["w", "a", "up"], module=module)
    sender.apply({"w": True, "up": True})
    with pytest.raises(Crew2Error, match=re.escape("Windows refused to press 'a' (SendInput): no key reaches")):
        sender.apply({"a": True})
    assert sender.down == {"w", "up"}, "a key that did not go down is not held"
    sender.down.add("a")  # as if it had gone down
    module.keyUp = lambda name, **kw: module.sent.append(("up", name)) or name != "a"
    with pytest.raises(Crew2Error, match="refused to release 'a'"):
        sender.close()
    assert {("up", "up"), ("up", "w")} <= set(module.sent) and not sender.down, "the others released all the same"


def test_the_unmaintained_pydirectinput_is_named_not_used():
    """pydirectinput 1.0 sends page up/down, home, end, insert and delete as numpad keys and reports nothing; its
    fork installs under the same name."""
    from crew2.io.keyboard import DirectInputSender

    old = fake_pydirectinput()
    del old.scancode_keyDown
    with pytest.raises(Crew2Error, match=r"pydirectinput 1\.0 is installed.*pip install pydirectinput-rgx"):
        DirectInputSender(["w"], module=old)


def test_capture_choices_are_checked_against_the_platform_and_the_source():
    from crew2.io.platform import PLATFORMS, check_capture

    check_capture("wgc", "window", PLATFORMS["win32"])
    check_capture("auto", "screen", PLATFORMS["x11"])
    check_capture("mss", "window", PLATFORMS["x11"])
    with pytest.raises(Crew2Error, match="--capture wgc needs Windows: on x11 windows are captured with mss"):
        check_capture("wgc", "window", PLATFORMS["x11"])
    with pytest.raises(Crew2Error, match="--capture wgc reads one window: use it with --source window"):
        check_capture("wgc", "screen", PLATFORMS["win32"])
    with pytest.raises(Crew2Error, match="unknown capture 'dxcam': use one of auto, wgc, mss"):
        check_capture("dxcam", "window", PLATFORMS["win32"])
