"""X11 plumbing (python-xlib): find a window by title, where it is on screen, and XTest key events."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crew2.errors import Crew2Error

# crew2 key names (crew2.keys.KEY_NAMES) that are not their own X keysym names.
_KEYSYMS = {
    "up": "Up", "down": "Down", "left": "Left", "right": "Right", "space": "space", "shift": "Shift_L",
    "ctrl": "Control_L", "alt": "Alt_L", "enter": "Return", "tab": "Tab", "esc": "Escape",
    "backspace": "BackSpace", "home": "Home", "end": "End", "pageup": "Prior", "pagedown": "Next",
    "insert": "Insert", "delete": "Delete", **{f"f{i}": f"F{i}" for i in range(1, 13)},
}


@dataclass(frozen=True)
class Rect:
    left: int
    top: int
    width: int
    height: int


@contextlib.contextmanager
def virtual_display(size: str = "1280x1024x24", first: int = 140) -> Iterator[str]:
    """An Xvfb display (":N", the first free N from `first`) for as long as this holds. -noreset: by default Xvfb
    resets whenever its last client leaves, which races with the next client's connection ("connection closed
    by server", key presses that go nowhere)."""
    exe = shutil.which("Xvfb")
    if exe is None:
        raise Crew2Error("no display and no Xvfb: install it (apt-get install xvfb) or run under a desktop")
    n = next(n for n in range(first, first + 100)
             if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists())
    proc = subprocess.Popen([exe, f":{n}", "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise Crew2Error(f"Xvfb :{n} did not start")
            time.sleep(0.05)
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(10)


def open_display(name: str | None = None):
    from Xlib import display, error

    try:
        return display.Display(name)
    except (error.DisplayError, error.DisplayNameError) as e:
        raise Crew2Error(f"cannot open the X display {name or '$DISPLAY'}: {e}") from e


def _title(win) -> str:
    from Xlib.error import XError

    try:
        name = win.get_full_text_property(win.display.get_atom("_NET_WM_NAME")) or win.get_wm_name()
    except XError:  # a window can vanish while we look at it (BadWindow): it has no title then
        return ""
    return name if isinstance(name, str) else ""


def choose_window(wanted: str, found: list[tuple[object, str]]):
    """The window a user means by `wanted` among the visible windows that match it (handle, title; by title or by
    program): the only one, or the only one titled exactly so (case aside); windows that share one title count
    once (a window manager's frame and the window it holds). Several others: a one-line error that lists them."""
    if not found:
        raise Crew2Error(f"no window titled like '{wanted}', or of a program so named, is open")
    titles = list(dict.fromkeys(title for _, title in found))
    exact = [t for t in titles if t.lower() == wanted.lower()]
    if len(titles) == 1 or len(exact) == 1:
        title = titles[0] if len(titles) == 1 else exact[0]
        return next(handle for handle, t in found if t == title)
    listed = ", ".join(f"'{t}'" for t in titles[:5]) + (", ..." if len(titles) > 5 else "")
    raise Crew2Error(f"{len(titles)} windows are titled like '{wanted}' ({listed}): give more of the title")


def is_program(name: str | None, wanted: str) -> bool:
    """Whether a process named `name` is the program a user means by `wanted` ("TheCrew2.exe" or "thecrew2", case
    aside; Linux keeps the first 15 characters of a process name)."""
    if not name:
        return False
    name, wanted = name.lower(), wanted.lower()
    return any(name in (w, w[:15]) for w in (wanted, f"{wanted}.exe"))


def _program(dpy, win) -> str | None:
    """The name of the process that owns `win` (_NET_WM_PID; Wine and Proton name a game's process after its .exe)."""
    from Xlib import X

    prop = win.get_full_property(dpy.get_atom("_NET_WM_PID"), X.AnyPropertyType)
    if prop is None or not len(prop.value):
        return None
    try:
        return Path(f"/proc/{int(prop.value[0])}/comm").read_text().strip()
    except OSError:  # gone, or another machine's process (a remote X client)
        return None


def find_window(dpy, wanted: str):
    """The viewable window whose title contains `wanted`, or whose process is the program `wanted` (`is_program`),
    searched depth-first; several are listed, not guessed (`choose_window`)."""
    from Xlib import X
    from Xlib.error import XError

    text, found = wanted.lower(), []
    stack = [dpy.screen().root]
    while stack:
        win = stack.pop()
        name = _title(win)
        try:
            if (text in name.lower() or (name and is_program(_program(dpy, win), wanted))) \
                    and win.get_attributes().map_state == X.IsViewable:
                found.append((win, name))
        except XError:  # vanished while we looked
            pass
        try:
            stack.extend(reversed(win.query_tree().children))
        except XError:
            continue
    return choose_window(wanted, found)


def window_rect(dpy, win) -> Rect:
    """The window's client area in root (screen) coordinates."""
    geom = win.get_geometry()
    pos = win.translate_coords(dpy.screen().root, 0, 0)
    return Rect(-pos.x, -pos.y, geom.width, geom.height)


def keycode(dpy, key: str) -> int:
    """The keycode of a crew2 key name on this X server."""
    from Xlib import XK

    sym = XK.string_to_keysym(_KEYSYMS.get(key, key))
    code = dpy.keysym_to_keycode(sym) if sym else 0
    if not code:
        raise Crew2Error(f"the X server has no key for '{key}'")
    return code


def send_key(dpy, key: str, down: bool) -> None:
    """Press or release one key through XTest, as if typed on the keyboard."""
    from Xlib import X
    from Xlib.ext import xtest

    xtest.fake_input(dpy, X.KeyPress if down else X.KeyRelease, keycode(dpy, key))
    dpy.sync()


def focus(dpy, win) -> None:
    """Give `win` the keyboard focus (there may be no window manager to do it)."""
    from Xlib import X

    win.set_input_focus(X.RevertToParent, X.CurrentTime)
    dpy.sync()


def focused_window(dpy):
    """The window that has the keyboard focus; with no window manager (focus = PointerRoot), the
    top-level window under the pointer."""
    from Xlib import X

    focus = dpy.get_input_focus().focus
    if isinstance(focus, int) or focus in (X.PointerRoot, X.NONE):
        child = dpy.screen().root.query_pointer().child
        return None if isinstance(child, int) or child == X.NONE else child
    return focus


def is_related(dpy, a, b) -> bool:
    """True if windows a and b are the same, or one contains the other (a WM frame and its client)."""
    if a is None or b is None:
        return False
    root = dpy.screen().root.id
    for x, y in ((a, b), (b, a)):
        w = x
        while w is not None and w.id != root:
            if w.id == y.id:
                return True
            w = w.query_tree().parent
    return False


class KeyState:
    """Which keys are down on this X server now (XQueryKeymap): keys a person presses and keys injected
    with XTest alike."""

    def __init__(self, dpy, keys: list[str]):
        self.dpy = dpy
        self.codes = [keycode(dpy, k) for k in keys]

    def read(self) -> list[bool]:
        bitmap = self.dpy.query_keymap()  # 32 bytes, one bit per keycode
        return [bool(bitmap[c // 8] & (1 << (c % 8))) for c in self.codes]
