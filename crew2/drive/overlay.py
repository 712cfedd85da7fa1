"""What the driver sees, drawn: the frame with the network's boxes, the ego corridor of the crash-prevention
rules, each key's probability against its threshold, and the rules that fired. `draw` is pure (frame and
one FrameLog in, a BGR image out) so the same picture goes to `--show`, to videos and to the README."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from crew2.drive.fusion import Rules, in_corridor
from crew2.drive.loop import FrameLog

# BGR per obstacle class (car, truck, cone, barrier, then repeats), and the state colours.
CLASS_COLOURS = ((255, 200, 60), (255, 120, 200), (40, 160, 255), (60, 230, 255))
RED, GREEN, GREY, WHITE = (50, 50, 240), (80, 220, 80), (150, 150, 150), (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw(entry: FrameLog, keys: list[str], thresholds: list[float], class_names: list[str],
         rules: Rules | None, scale: int = 3, frame_rows: int | None = None) -> np.ndarray:
    """The annotated picture of one loop iteration, `scale` times the model's frame, plus a key panel. `frame_rows`:
    the frame's height where a horizon band is under it (`crew2.io.band`); the corridor and threats are the frame's."""
    frame = entry.frame
    if frame is None:
        raise ValueError("this FrameLog carries no frame")
    w = frame.shape[1]
    h = frame_rows or frame.shape[0]
    img = cv2.resize(np.ascontiguousarray(frame[:, :, 2::-1]), (w * scale, frame.shape[0] * scale),
                     interpolation=cv2.INTER_LINEAR)
    if h < frame.shape[0]:  # the band's top edge
        cv2.line(img, (0, h * scale), (w * scale, h * scale), WHITE, 1)
    braking = any(hit.action.startswith("release throttle, press brake") for hit in entry.hits)
    if rules is not None:  # the corridor: a band ahead narrowing to the horizon, as in fusion.in_corridor
        bottom, top = (rules.corridor + 0.02) * w, 0.02 * w
        poly = np.array([[w / 2 - bottom, h], [w / 2 - top, rules.horizon * h], [w / 2 + top, rules.horizon * h],
                         [w / 2 + bottom, h]]) * scale
        layer = img.copy()
        cv2.fillPoly(layer, [poly.astype(np.int32)], RED if braking else GREEN)
        img = cv2.addWeighted(layer, 0.18, img, 0.82, 0)
    taken: list[tuple[int, int, int, int]] = []  # the labels drawn so far: a label never covers another
    for x1, y1, x2, y2, score, cls in entry.boxes:
        box = np.array([x1, y1, x2, y2])
        threat = rules is not None and score >= rules.min_score and y2 <= h and in_corridor(box, w, h, rules)
        colour = RED if threat else CLASS_COLOURS[int(cls) % len(CLASS_COLOURS)]
        p1, p2 = (int(x1 * scale), int(y1 * scale)), (int(x2 * scale), int(y2 * scale))
        cv2.rectangle(img, p1, p2, colour, 2 if threat else 1, cv2.LINE_AA)
        name = class_names[int(cls)] if int(cls) < len(class_names) else str(int(cls))
        _label(img, f"{name} {score:.2f}", (p1[0], max(p1[1] - 4, 12)), colour, taken)
    y = 16
    for hit in entry.hits:
        numbers = " ".join(f"{k} {v:g}" for k, v in hit.numbers.items())
        _label(img, f"{hit.rule}: {hit.action}  {numbers}", (6, y), RED)
        y += 20
    if entry.closest_ttc is not None:
        _label(img, f"closest: time to contact {entry.closest_ttc:.1f} s", (6, y), WHITE)
    return np.vstack([img, _key_panel(img.shape[1], entry, keys, thresholds)])


def _label(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int],
           taken: list[tuple[int, int, int, int]] | None = None) -> None:
    """Text on a dark plate, legible on sky, road and grass alike; with `taken` (the plates already drawn), moved
    up a line at a time, or below them, until it covers none of them, and added to them."""
    (w, h), base = cv2.getTextSize(text, FONT, 0.45, 1)
    x, y = org
    if taken is not None:
        def clear(y: int) -> bool:
            return not any(x - 2 < r[2] and r[0] < x + w + 2 and y - h - 3 < r[3] and r[1] < y + base
                           for r in taken)
        step = h + base + 4
        y = next((c for c in (y - k * step for k in range(4)) if c - h - 3 >= 0 and clear(c)),
                 next((c for c in (y + k * step for k in range(1, 8)) if clear(c)), y))
        taken.append((x - 2, y - h - 3, x + w + 2, y + base))
    cv2.rectangle(img, (x - 2, y - h - 3), (x + w + 2, y + base), (20, 20, 20), -1)
    cv2.putText(img, text, (x, y), FONT, 0.45, colour, 1, cv2.LINE_AA)


def _key_panel(width: int, entry: FrameLog, keys: list[str], thresholds: list[float]) -> np.ndarray:
    """One bar per key: its probability, a tick at its threshold, green while pressed."""
    panel = np.full((34, width, 3), 24, np.uint8)
    slot = width // max(len(keys), 1)
    for i, (key, p, thr) in enumerate(zip(keys, entry.probs, thresholds, strict=True)):
        x0, bar = i * slot + 8, slot - 60
        on = key in entry.pressed
        cv2.putText(panel, key.upper(), (x0, 23), FONT, 0.6, GREEN if on else GREY, 2 if on else 1, cv2.LINE_AA)
        left = x0 + 40
        cv2.rectangle(panel, (left, 10), (left + bar, 24), GREY, 1)
        cv2.rectangle(panel, (left, 10), (left + int(bar * float(np.clip(p, 0, 1))), 24), GREEN if on else GREY, -1)
        tick = left + int(bar * thr)
        cv2.line(panel, (tick, 6), (tick, 28), WHITE, 1)
    if not entry.sent:
        _label(panel, "not sending", (width - 110, 23), RED)
    return panel


class ShowWindow:
    """`--show`: an OpenCV window with `draw`'s picture, refreshed at most `max_hz`; Space toggles pause and
    Esc or Q stops, through the callbacks."""

    TITLE = "crew2 drive"

    def __init__(self, keys: list[str], thresholds: list[float], class_names: list[str], rules: Rules | None,
                 on_pause: Callable[[], None], on_stop: Callable[[], None], max_hz: float = 30.0,
                 frame_rows: int | None = None):
        self.keys, self.thresholds, self.class_names, self.rules = keys, thresholds, class_names, rules
        self.frame_rows = frame_rows
        self.on_pause, self.on_stop = on_pause, on_stop
        self.period, self.last = 1.0 / max_hz, -np.inf
        cv2.namedWindow(self.TITLE, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no toolbar: just the frames

    def __call__(self, entry: FrameLog, now: float) -> None:
        if now - self.last < self.period or entry.frame is None:
            return
        self.last = now
        cv2.imshow(self.TITLE, draw(entry, self.keys, self.thresholds, self.class_names, self.rules,
                                    frame_rows=self.frame_rows))
        key = cv2.waitKey(1) & 0xFF
        if key == ord(" "):
            self.on_pause()
        elif key in (27, ord("q")):
            self.on_stop()

    def close(self) -> None:
        cv2.destroyWindow(self.TITLE)
        cv2.waitKey(1)
