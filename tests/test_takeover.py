"""Human takeover: who drives, and the corrections session, end to end on a real X server."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from crew2 import x11
from crew2.data.session import Session
from crew2.drive.run import DriveConfig, drive
from crew2.drive.takeover import Takeover
from crew2.errors import Crew2Error
from crew2.io.control import Control
from tests.drive_helpers import INFO, ScriptedEngine
from tests.x11_helpers import Animate


class Keyboard:
    """A key reader over a set the test changes."""

    def __init__(self, keys):
        self.keys, self.held = list(keys), set()

    def read(self) -> np.ndarray:
        return np.array([k in self.held for k in self.keys], np.uint8)


def test_a_key_crew2_did_not_press_takes_over_until_the_person_lets_go():
    board = Keyboard("wasd")
    gate = Takeover(board, board.keys, handback=0.5)
    board.held = {"w", "d"}  # crew2's own keys
    assert not gate.update(0.0, {"w", "d"}) and gate.count == 0
    board.held = {"w", "d", "a"}
    assert gate.update(0.1, {"w", "d"}) and gate.keys == ["a"] and gate.count == 1
    board.held = {"a"}  # crew2 released: every key down is the person's
    assert gate.update(0.2, set()) and gate.keys == ["a"]
    board.held = set()
    assert gate.update(0.6, set()) and gate.keys == []  # 0.4 s after the last key: still the person's
    assert not gate.update(0.75, set()) and gate.driver == "model"
    board.held = {"s"}
    assert gate.update(1.0, set()) and gate.count == 2
    board.held = set()
    assert not gate.update(1.6, set())
    board.held = {"w", "d"}  # the person presses W, which crew2 holds too, and D, which it does not
    assert gate.update(1.7, {"w"}) and gate.keys == ["d"], "only the key crew2 does not hold is known to be theirs"
    assert gate.update(1.75, set()) and gate.keys == ["w", "d"], "once crew2 let go, both are"


def test_keys_typed_while_the_game_is_not_in_front_or_paused_take_nothing_over():
    from crew2.drive.decoder import DecoderConfig, KeyDecoder
    from crew2.drive.loop import drive_loop
    from tests.drive_helpers import FrameSource, RecordingSender

    for focused, paused in ((False, False), (True, True)):
        board, control, logs = Keyboard(INFO.keys), Control(), []
        board.held = {"a"}  # typed in another window, or while F9 holds crew2 back
        if paused:
            control.paused.set()
        gate = Takeover(board, INFO.keys)
        drive_loop(FrameSource(), ScriptedEngine(), KeyDecoder(INFO.keys, INFO.roles, INFO.thresholds,
                                                               DecoderConfig()),
                   RecordingSender(), fps=50, max_steps=5, realtime=False, focused=lambda f=focused: f,
                   control=control, takeover=gate, on_frame=logs.append)
        assert gate.count == 0 and all(e.driver == "model" and not e.sent for e in logs)


def test_corrections_need_a_person_at_a_keyboard():
    with pytest.raises(Crew2Error, match="--corrections"):
        DriveConfig(weights=Path("m.pt"), source="sim", corrections=Path("c.h5"))
    with pytest.raises(Crew2Error, match="--corrections"):
        DriveConfig(weights=Path("m.pt"), window="game", takeover=False, corrections=Path("c.h5"))


@pytest.mark.x11
def test_takeover_end_to_end_under_xvfb(xvfb, tmp_path):
    """The model drives a real window through XTest (W and D); the person presses A, later S, through XTest. The
    model's keys are up by the next frame; the corrections session holds exactly the person's frames plus the margin
    before each takeover, with the person's keys; after the hand-back the model drives again."""
    from Xlib import X

    dpy = x11.open_display(xvfb)
    root = dpy.screen().root
    win = root.create_window(0, 0, 160, 90, 0, X.CopyFromParent, background_pixel=dpy.screen().white_pixel)
    win.set_wm_name("takeover test game")
    win.map()
    dpy.sync()
    x11.focus(dpy, win)
    fps, margin, handback = 20.0, 0.2, 0.4
    cfg = DriveConfig(weights=Path("unused.pt"), source="window", window="takeover test game", display=xvfb,
                      fps=fps, fusion=False, countdown=0, log=tmp_path / "drive.jsonl", seconds=20,
                      corrections=tmp_path / "fix.h5", margin=margin, handback=handback)
    control = Control()
    person_dpy = x11.open_display(xvfb)
    state = x11.KeyState(person_dpy, ["w", "a", "s", "d"])

    def person() -> None:
        try:
            deadline = time.monotonic() + 10
            while state.read() != [True, False, False, True] and time.monotonic() < deadline:
                time.sleep(0.01)  # the model holds W and D
            time.sleep(0.5)
            for key, hold in (("a", 0.6), ("s", 0.3)):
                x11.send_key(person_dpy, key, True)
                time.sleep(hold)
                x11.send_key(person_dpy, key, False)
                time.sleep(handback + 0.6)  # the model drives again
        finally:
            control.stop.set()

    thread = threading.Thread(target=person)
    thread.start()
    try:
        with Animate(xvfb, win.id):
            result = drive(cfg, control=control, engine=ScriptedEngine())
    finally:
        thread.join()
        for key in "wasd":
            x11.send_key(person_dpy, key, False)
        person_dpy.close()
        win.destroy()
        dpy.close()

    log = [json.loads(line) for line in (tmp_path / "drive.jsonl").read_text().splitlines()]
    drivers = "".join("p" if e["driver"] == "person" else "m" for e in log)
    assert result.stats.takeovers == 2 and drivers.strip("m").count("pm") == 1, drivers
    starts = [i for i in range(1, len(log)) if drivers[i - 1:i + 1] == "mp"]
    for i, first in zip(starts, ("a", "s"), strict=True):
        assert log[i - 1]["pressed"] == ["w", "d"] and log[i - 1]["sent"]  # the model drove till then
        assert log[i]["person"] == [first] and not log[i]["sent"]  # the frame the person's key was first seen
        assert log[i + 1]["person"] == [first]  # ... and by the next read the model's W and D were up
    ends = [i for i in range(1, len(log)) if drivers[i - 1:i + 1] == "pm"]
    assert all(log[i]["sent"] and log[i]["pressed"] == ["w", "d"] for i in ends)  # the model again
    last_keys = [max(j for j in range(i) if log[j]["person"]) for i in ends]
    for i, last in zip(ends, last_keys, strict=True):  # it came back `handback` after the person's last key
        assert handback <= log[i]["t"] - log[last]["t"] <= handback + 3 / fps

    # Stored: the margin before each takeover and the person's frames up to their last key (the wait before the
    # hand-back is not a demonstration); the margin and the takeover frame carry the keys of the frame after it.
    n = round(margin * fps)
    expected = sorted({j for i in starts for j in range(i - n, i)}
                      | {j for i, last in zip(starts, last_keys, strict=True) for j in range(i, last + 1)})
    label = {i: log[i]["person"] for i in expected}
    for start in starts:
        label.update({j: log[start + 1]["person"] for j in range(start - n, start + 1)})
    session = Session(tmp_path / "fix.h5")
    assert session.meta.driver == "correction" and session.meta.keys == ["w", "a", "s", "d"]
    assert np.allclose(session.times(), [log[i]["t"] for i in expected])
    want = np.array([[k in label[i] for k in INFO.keys] for i in expected], np.uint8)
    assert np.array_equal(session.keys(), want)
    assert session.frame(0).shape == (36, 64, 3)
    session.close()


@pytest.mark.x11
def test_scripted_hands_share_the_keyboard_with_crew2(xvfb):
    """The benchmarks' person: a key crew2 holds is not pressed again nor released from the person's hands; to take
    over against a key crew2 holds, they press its opposite, and let go of it once crew2 has let go."""
    from crew2.io.keyboard import XTestSender
    from crew2.io.person import XHands

    keys = ["up", "down", "left", "right"]
    with XTestSender(xvfb) as crew2:
        hands = XHands(keys, xvfb)
        state = x11.KeyState(hands.dpy, keys)
        down = lambda: {k for k, on in zip(keys, state.read(), strict=True) if on}  # noqa: E731
        try:
            crew2.apply({"up": True, "left": True})
            hands.take({"up"})  # crew2 steers left, the person wants straight on: right against it
            assert down() == {"up", "left", "right"} and hands.mine == {"right"}
            crew2.release_all()  # crew2 saw a key it did not press: it lets go of everything
            hands.take({"up"})
            assert down() == {"up"} and hands.mine == {"up"}
            hands.hold(frozenset(), shared=True)  # the hand-back
            assert down() == set()
        finally:
            hands.close()
