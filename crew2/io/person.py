"""A scripted person at the keyboard, for benchmarks of human takeover: hands that press keys through XTest as
a person's keyboard does, and the gate that decides when the person takes the wheel from crew2 and gives it back.
The games' own scripts (crew2.carracing.expert.Guard, the simulator window's --guard) say what trouble is."""

from __future__ import annotations

from collections.abc import Collection, Sequence

OPPOSITE = {"up": "down", "down": "up", "left": "right", "right": "left", "w": "s", "s": "w", "a": "d", "d": "a"}


class XHands:
    """Keys pressed and released through XTest, as a person's fingers. With someone else at the same keyboard
    (crew2, `shared`), a key already down is theirs: it is not pressed again, and not released from here."""

    def __init__(self, keys: Sequence[str], display: str | None = None):
        from crew2 import x11

        self.x11, self.keys = x11, tuple(keys)
        self.dpy = x11.open_display(display)
        self.state = x11.KeyState(self.dpy, list(self.keys))
        self.mine: set[str] = set()  # the keys these hands pressed and hold

    def _down(self) -> set[str]:
        return {k for k, on in zip(self.keys, self.state.read(), strict=True) if on}

    def hold(self, keys: Collection[str], shared: bool = False, down: set[str] | None = None) -> None:
        """Hold `keys` and release the others these hands pressed. `shared`: read the keyboard first (or take
        `down`, read just before), as another driver may have pressed or released a key since."""
        shared = shared or down is not None
        down = (down if down is not None else self._down()) if shared else self.mine
        for key in self.keys:
            if key in keys and key not in down:
                self.x11.send_key(self.dpy, key, True)
                self.mine.add(key)
            elif key not in keys and key in self.mine:
                self.x11.send_key(self.dpy, key, False)
                self.mine.discard(key)
        if shared:
            self.mine &= down | set(keys)  # a key someone else released is no longer held here

    def take(self, keys: Collection[str]) -> None:
        """Drive with `keys` while another driver may still hold some: a person cannot lift crew2's finger, but
        steers or brakes against it, so each key held by the other and not wanted gets its opposite pressed."""
        down = self._down()
        against = {OPPOSITE[k] for k in down - self.mine - set(keys) if OPPOSITE.get(k) in self.keys}
        self.hold(set(keys) | against, down=down)

    def close(self) -> None:
        self.hold(frozenset())
        self.dpy.close()


class Gate:
    """When the person drives: from the first frame in `trouble` until `settle` frames in a row were `calm`.
    Counts the takeovers and the frames the person drove."""

    def __init__(self, settle: int):
        self.settle = settle
        self.driving, self.steady, self.takeovers, self.frames = False, 0, 0, 0

    def update(self, trouble: bool, calm: bool) -> bool:
        """This frame's verdicts; True while the person drives."""
        if not self.driving and trouble:
            self.driving, self.steady = True, 0
            self.takeovers += 1
        elif self.driving:
            self.steady = self.steady + 1 if calm else 0
            self.driving = self.steady < self.settle
        self.frames += self.driving
        return self.driving
