"""The one platform table: what reads the keyboard, finds the game's window, captures the screen and sends keys on
this machine. X11 covers Linux desktops and games run through Proton; win32 is Windows (its calls are in
`crew2.io.win32`). `open_screen_game` puts a game on the screen together the same way for record and drive."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from crew2 import x11
from crew2.errors import Crew2Error
from crew2.io.capture import CAPTURES, FrameSource, ThreadedCapture, X11Window, screen_size, screen_source
from crew2.io.keyboard import DirectInputSender, KeyReader, KeySender, X11Keys, XTestSender

SCREEN_SOURCES = ("screen", "window")  # what a game on the screen is captured as (besides the in-process sim)


class GameWindow(Protocol):
    title: str

    def rect(self) -> x11.Rect: ...
    def focused(self) -> bool: ...
    def source(self, max_fps: float | None = 120.0, capture: str = "auto") -> ThreadedCapture: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Platform:
    name: str
    keys: Callable[[Sequence[str], str | None, tuple[str, ...]], KeyReader]  # (keys, display, hotkeys)
    window: Callable[[str, str | None], GameWindow]  # (title, display)
    sender: Callable[[Sequence[str], str | None], KeySender]  # (keys, display)
    display: bool  # whether a display name (--display) means anything here
    prepare: Callable[[], None] = lambda: None  # once, before any capture: what pixels mean on this machine
    captures: tuple[str, ...] = ("mss",)  # how a window can be captured here (--capture; "auto": the first)
    check_front: Callable[[], None] = lambda: None  # the window in front takes our keys, or a clear error


def _win_keys(keys, display, extra):
    from crew2.io.win32 import WinKeys

    return WinKeys(keys, extra)


def _win_prepare() -> None:
    from crew2.io.win32 import make_dpi_aware, windows_api

    make_dpi_aware(windows_api())  # for every source: a region or window in scaled pixels names the wrong pixels


def _win_check_front() -> None:
    from crew2.io.win32 import check_front

    check_front()


def _win_window(title, display):
    from crew2.io.win32 import Win32Window

    return Win32Window(title)


PLATFORMS = {
    "x11": Platform("x11", lambda keys, display, extra: X11Keys(keys, display, extra), X11Window,
                    lambda keys, display: XTestSender(display), display=True),
    "win32": Platform("win32", _win_keys, _win_window, lambda keys, display: DirectInputSender(list(keys)),
                      display=False, prepare=_win_prepare, captures=("wgc", "mss"), check_front=_win_check_front),
}


def current() -> Platform:
    return PLATFORMS["win32" if sys.platform == "win32" else "x11"]


@dataclass
class ScreenGame:
    """A game on the screen as record and drive see it: frames, the keyboard, and whether it is in front."""

    source: FrameSource
    keys: KeyReader | None  # the watched keys (+ hotkeys); None when nobody asked for the keyboard
    focused: Callable[[], bool]
    region: x11.Rect | None  # what is captured, in screen pixels (None: a whole monitor)
    size: tuple[int, int]  # the captured picture's width and height, in pixels


def open_screen_game(stack: contextlib.ExitStack, source: str, *, fps: float, window: str | None = None,
                     region: x11.Rect | None = None, monitor: int = 1, display: str | None = None,
                     keys: Sequence[str] | None = None, hotkeys: tuple[str, ...] = (),
                     capture: str = "auto", on_demand: bool = False,
                     platform: Platform | None = None) -> ScreenGame:
    """Open (on `stack`) the capture of a window by title or of a screen region, and a reader of `keys` plus
    `hotkeys` (keys None: no reader). Captures run at up to twice `fps`, so a paced loop always finds a fresh one,
    or, `on_demand`, each when the loop reads (`ThreadedCapture`).
    The focus guard is the window's; a screen region is always "in front". `capture` picks how a window is read
    (`CAPTURES`; a screen region is always mss)."""
    platform = platform or current()
    check_capture(capture, source, platform)
    platform.prepare()
    display = display if platform.display else None
    reader = None
    if keys is not None:
        reader = platform.keys(keys, display, hotkeys)
        stack.callback(reader.close)
    focused: Callable[[], bool] = lambda: True  # noqa: E731
    rate = None if on_demand else 2 * fps
    if source == "window":
        win = platform.window(window, display)
        stack.callback(win.close)
        frames, focused, region = win.source(max_fps=rate, capture=capture), win.focused, win.rect()
    else:
        frames = screen_source(region, monitor, display, max_fps=rate)
    stack.enter_context(frames)
    whole = region or screen_size(display, monitor)
    return ScreenGame(frames, reader, focused, region, (whole.width, whole.height))


def check_capture(capture: str, source: str, platform: Platform) -> None:
    """--capture names a way this platform has to read this source."""
    if capture not in CAPTURES:
        raise Crew2Error(f"unknown capture '{capture}': use one of {', '.join(CAPTURES)}")
    if capture != "auto" and capture not in platform.captures:
        raise Crew2Error(f"--capture {capture} needs Windows: on {platform.name} windows are captured with "
                         f"{', '.join(platform.captures)}")
    if capture == "wgc" and source != "window":
        raise Crew2Error("--capture wgc reads one window: use it with --source window")
