"""The keyboard, both ways. Key readers: which keys are down now (the person's, for recording, hotkeys and
takeover). Key senders: what crew2 presses reaches the game here; each sends only changes (press what became
pressed, release what became released), is thread-safe (the watchdog releases from its own thread), and
releases every key it pressed when it is closed, whatever ended the drive."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from crew2 import x11
from crew2.errors import Crew2Error


class KeyReader(Protocol):
    def read(self) -> np.ndarray:
        """The watched keys now, (K,) uint8 in the order they were given."""
        ...

    def down(self, key: str) -> bool:
        """Whether an extra key (a hotkey) was down at the last read."""
        ...

    def close(self) -> None: ...


class X11Keys:
    """Key reader on X11: `keys` as a uint8 vector, plus the `extra` keys (hotkeys) by name. XQueryKeymap sees
    a person's keys and XTest's alike: who pressed what is for the caller to know (`KeySender.down`)."""

    def __init__(self, keys: Sequence[str], display: str | None = None, extra: tuple[str, ...] = ()):
        self.dpy = x11.open_display(display)
        self.n = len(keys)
        self.state = x11.KeyState(self.dpy, [*keys, *extra])
        self.extra = extra
        self.last: list[bool] = []

    def read(self) -> np.ndarray:
        self.last = self.state.read()
        return np.array(self.last[: self.n], np.uint8)

    def down(self, key: str) -> bool:
        return bool(self.last and self.last[self.n + self.extra.index(key)])

    def close(self) -> None:
        self.dpy.close()


class KeySender:
    name = "base"

    def __init__(self):
        self.down: set[str] = set()
        self.lock = threading.RLock()

    def _press(self, key: str) -> None:
        raise NotImplementedError

    def _release(self, key: str) -> None:
        raise NotImplementedError

    def apply(self, want: dict[str, bool]) -> None:
        """Hold exactly the keys set True in `want` (among its keys); send only what changes."""
        with self.lock:
            for key, on in want.items():
                if on and key not in self.down:
                    self._press(key)
                    self.down.add(key)
                elif not on and key in self.down:
                    self._release(key)
                    self.down.discard(key)

    def release_all(self) -> None:
        """Release every held key; one that fails does not keep the others down (the first error is raised after)."""
        with self.lock:
            failed = None
            for key in sorted(self.down):
                try:
                    self._release(key)
                except Exception as e:
                    failed = failed or e
            self.down.clear()
            if failed is not None:
                raise failed

    def close(self) -> None:
        self.release_all()

    def __enter__(self) -> KeySender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VectorSender(KeySender):
    """Holds the keys as a vector for an in-process game (the simulator reads `vector` each step)."""

    name = "sim"

    def __init__(self, keys: list[str]):
        super().__init__()
        self.keys = list(keys)
        self.vector = np.zeros(len(keys), np.int8)

    def _press(self, key: str) -> None:
        self.vector[self.keys.index(key)] = 1

    def _release(self, key: str) -> None:
        self.vector[self.keys.index(key)] = 0


class XTestSender(KeySender):
    """X11 (Linux desktops, games under Proton): key events injected through XTest."""

    name = "x11"

    def __init__(self, display: str | None = None):
        super().__init__()
        self.dpy = x11.open_display(display)

    def _press(self, key: str) -> None:
        x11.send_key(self.dpy, key, True)

    def _release(self, key: str) -> None:
        x11.send_key(self.dpy, key, False)

    def close(self) -> None:
        super().close()
        self.dpy.close()


class DirectInputSender(KeySender):
    """Windows: scan codes through SendInput (pydirectinput-rgx, the maintained pydirectinput), which DirectX games
    need; arrows, home/end, page up/down, insert and delete go out with the extended-key flag, so they are not read
    as numpad keys (pydirectinput 1.0 sent them so). Each call says whether Windows took every event: a refused one
    is an error, not a key silently missing. Its pause after every call and its mouse-corner fail-safe are off."""

    name = "win32"

    def __init__(self, keys: list[str], module=None):
        super().__init__()
        if module is None:
            try:
                import pydirectinput as module
            except ImportError as e:
                raise Crew2Error("sending keys on Windows needs pydirectinput-rgx (pip install pydirectinput-rgx)") \
                    from e
        if not hasattr(module, "scancode_keyDown"):  # both install as `pydirectinput`
            raise Crew2Error("pydirectinput 1.0 is installed: it sends page up/down, home, end, insert and delete as "
                             "numpad keys and reports nothing; pip uninstall pydirectinput, then pip install "
                             "pydirectinput-rgx")
        self.di = module
        self.di.PAUSE = 0
        self.di.FAILSAFE = False
        unknown = [k for k in keys if k not in self.di.KEYBOARD_MAPPING]  # crew2's names are pydirectinput's
        if unknown:  # pydirectinput ignores unknown names: refuse them instead
            raise Crew2Error(f"pydirectinput has no key named {', '.join(unknown)}")

    def _sent(self, key: str, what: str, ok: bool) -> None:
        if not ok:  # SendInput inserted fewer events than it was given
            raise Crew2Error(f"Windows refused to {what} '{key}' (SendInput): no key reaches a game while the screen "
                             "is locked or a User Account Control prompt is up")

    def _press(self, key: str) -> None:
        self._sent(key, "press", self.di.keyDown(key))

    def _release(self, key: str) -> None:
        self._sent(key, "release", self.di.keyUp(key))
