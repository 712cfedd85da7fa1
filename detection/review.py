"""The review tool: pure editing state (tested without a screen) and its OpenCV window.

Keys in the window: n / Space next frame, p previous, u next unreviewed, mouse drag draws a box of the current
class, click selects a box, d / Delete removes it, 0-9 set the class of the selected box (or of new boxes),
a accepts this frame as reviewed, A accepts every frame shown, z undoes, s saves, q saves and quits, Esc quits
without saving.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from crew2.data.session import NOT_ANNOTATED, REVIEWED, Session
from crew2.detection.store import write_annotations
from crew2.errors import Crew2Error


@dataclass
class ReviewState:
    frames: list[int]  # the frame indices under review, in order
    boxes: dict[int, np.ndarray]  # frame -> (M, 5)
    sources: dict[int, int]
    class_names: list[str]
    size: tuple[int, int]  # width, height
    pos: int = 0
    selected: int | None = None
    current_class: int = 0
    undo_stack: list[tuple] = field(default_factory=list)
    changed: set[int] = field(default_factory=set)

    @property
    def frame(self) -> int:
        return self.frames[self.pos]

    def _remember(self) -> None:
        self.undo_stack.append((self.frame, self.boxes[self.frame].copy(), self.sources[self.frame],
                                copy.copy(self.changed)))

    def next(self) -> None:
        self.pos, self.selected = min(self.pos + 1, len(self.frames) - 1), None

    def prev(self) -> None:
        self.pos, self.selected = max(self.pos - 1, 0), None

    def next_unreviewed(self) -> bool:
        for k in range(1, len(self.frames) + 1):
            j = (self.pos + k) % len(self.frames)
            if self.sources[self.frames[j]] != REVIEWED:
                self.pos, self.selected = j, None
                return True
        return False

    def add(self, x1: float, y1: float, x2: float, y2: float) -> None:
        """A box of the current class from two corners (any order), clipped to the frame; tiny drags ignored."""
        w, h = self.size
        x1, x2 = sorted((np.clip(x1, 0, w), np.clip(x2, 0, w)))
        y1, y2 = sorted((np.clip(y1, 0, h), np.clip(y2, 0, h)))
        if x2 - x1 < 2 or y2 - y1 < 2:
            return
        self._remember()
        self.boxes[self.frame] = np.vstack([self.boxes[self.frame], [[x1, y1, x2, y2, self.current_class]]]).astype(
            np.float32)
        self.selected = len(self.boxes[self.frame]) - 1
        self._touch()

    def select_at(self, x: float, y: float) -> int | None:
        """Select the smallest box under the point (the one a person means when boxes overlap)."""
        b = self.boxes[self.frame]
        hits = [j for j in range(len(b)) if b[j, 0] <= x <= b[j, 2] and b[j, 1] <= y <= b[j, 3]]
        self.selected = min(hits, key=lambda j: (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])) if hits else None
        return self.selected

    def delete(self) -> None:
        if self.selected is None:
            return
        self._remember()
        self.boxes[self.frame] = np.delete(self.boxes[self.frame], self.selected, axis=0)
        self.selected = None
        self._touch()

    def set_class(self, cls: int) -> None:
        if not 0 <= cls < len(self.class_names):
            raise Crew2Error(f"class {cls} does not exist: the classes are 0..{len(self.class_names) - 1}")
        self.current_class = cls
        if self.selected is not None:
            self._remember()
            self.boxes[self.frame][self.selected, 4] = cls
            self._touch()

    def accept(self) -> None:
        self._remember()
        self._touch()

    def accept_all(self) -> None:
        for f in self.frames:
            self.sources[f] = REVIEWED
            self.changed.add(f)
        self.undo_stack.clear()  # one step too big to undo

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        frame, boxes, source, changed = self.undo_stack.pop()
        self.boxes[frame], self.sources[frame], self.changed = boxes, source, changed
        self.pos, self.selected = self.frames.index(frame), None
        return True

    def _touch(self) -> None:
        self.sources[self.frame] = REVIEWED  # what a person looked at and edited is reviewed
        self.changed.add(self.frame)

    def updates(self) -> dict[int, tuple[np.ndarray, int]]:
        return {f: (self.boxes[f], self.sources[f]) for f in sorted(self.changed)}


def load_state(path: Path, class_names: list[str], only: str = "selected") -> ReviewState:
    """Frames to review: the session's `selected` ones if it has a selection (else every frame), or all."""
    s = Session(path)
    try:
        frames = list(range(len(s)))
        if only == "selected" and "selected" in s.f:
            frames = [int(i) for i in np.flatnonzero(s.f["selected"][: len(s)])] or frames
        elif only == "annotated":
            frames = [int(i) for i in np.flatnonzero(s.box_sources() != NOT_ANNOTATED)]
        if not frames:
            raise Crew2Error(f"{path}: no frames to review")
        sources = s.box_sources()
        return ReviewState(frames, {i: s.boxes(i).copy() for i in frames}, {i: int(sources[i]) for i in frames},
                           class_names, (s.meta.width, s.meta.height))
    finally:
        s.close()


def save(path: Path, state: ReviewState) -> int:
    n = write_annotations(path, state.updates(), state.class_names) if state.changed else 0
    state.changed.clear()
    return n


COLOURS = [(255, 0, 255), (0, 200, 255), (0, 140, 255), (60, 60, 255), (255, 200, 0), (120, 255, 120)]


def draw(frame: np.ndarray, state: ReviewState, keys: list[str], pressed: np.ndarray, scale: int) -> np.ndarray:
    """The frame enlarged with its boxes (the selected one thick), class names, keys and status (BGR)."""
    h, w = frame.shape[:2]
    img = cv2.resize(frame[:, :, ::-1], (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    for j, (x1, y1, x2, y2, c) in enumerate(state.boxes[state.frame]):
        colour = COLOURS[int(c) % len(COLOURS)]
        p1, p2 = (int(x1 * scale), int(y1 * scale)), (int(x2 * scale), int(y2 * scale))
        cv2.rectangle(img, p1, p2, colour, 3 if j == state.selected else 1)
        cv2.putText(img, state.class_names[int(c)], (p1[0], max(p1[1] - 3, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    colour, 1)
    source = {0: "not annotated", 1: "sim truth", 2: "teacher", 3: "reviewed"}[state.sources[state.frame]]
    status = (f"frame {state.frame} ({state.pos + 1}/{len(state.frames)})  {source}  new boxes: "
              f"{state.class_names[state.current_class]}  keys: "
              + "".join(k.upper() if on else "." for k, on in zip(keys, pressed, strict=True))
              + ("  *unsaved*" if state.changed else ""))
    cv2.rectangle(img, (0, 0), (img.shape[1], 20), (0, 0, 0), -1)
    cv2.putText(img, status, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1)
    return img


# The review window's keys: N or Space next, P previous, U next unreviewed, D or Delete delete the box, A accept the
# frame, Shift+A accept every frame, Z undo, 0-9 the box's class, S save, Q save and quit, Esc quit.
KEYS = {"n": "next", " ": "next", "p": "prev", "u": "next_unreviewed", "d": "delete", "a": "accept", "A": "accept_all",
        "z": "undo", "s": "save", "q": "quit"}
EDITS = {"next", "prev", "next_unreviewed", "delete", "accept", "accept_all", "undo"}  # ReviewState's methods


def _command(key: int) -> str:
    """A key code from cv2.waitKeyEx -> its command in KEYS, "escape", or the digit typed."""
    low = key & 0xFF
    if low == 0xFF:  # Delete
        return "delete"
    if low == 27:
        return "escape"
    ch = chr(low) if low < 128 else ""
    return KEYS.get(ch, ch)


def review(path: Path, class_names: list[str], scale: int = 3, only: str = "selected") -> int:
    """Open the review window; returns the number of frames saved."""
    import os
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise Crew2Error("no display to open the review window on")
    state = load_state(path, class_names, only)
    s = Session(path)
    keys_all, names = s.keys(), s.meta.keys
    title = f"crew2 annotate review: {path.name}"
    drag: dict[str, tuple[float, float] | None] = {"start": None}

    def on_mouse(event, x, y, _flags, _param) -> None:
        fx, fy = x / scale, (y / scale)
        if event == cv2.EVENT_LBUTTONDOWN:
            drag["start"] = (fx, fy)
        elif event == cv2.EVENT_LBUTTONUP and drag["start"] is not None:
            x0, y0 = drag["start"]
            drag["start"] = None
            if abs(fx - x0) < 2 and abs(fy - y0) < 2:
                state.select_at(fx, fy)
            else:
                state.add(x0, y0, fx, fy)

    saved = 0
    try:
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        cv2.setMouseCallback(title, on_mouse)
        while True:
            cv2.imshow(title, draw(s.frame(state.frame), state, names, keys_all[state.frame], scale))
            k = cv2.waitKeyEx(50)
            if k == -1:
                if cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1:
                    break
                continue
            command = _command(k)
            if command in EDITS:
                getattr(state, command)()
            elif command.isdigit() and int(command) < len(class_names):
                state.set_class(int(command))
            elif command in ("save", "quit"):
                s.close()  # h5py will not open a file for writing while this process reads it; reopens lazily
                saved += save(path, state)
                if command == "quit":
                    break
            elif command == "escape":
                break
    finally:
        cv2.destroyAllWindows()
        s.close()
    return saved
