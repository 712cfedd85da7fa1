"""What the picture itself says, on every source: a small grey picture of the road, and whether it shows
anything (black: a loading screen or a capture that sees nothing; frozen: a paused game, or a capture that
keeps returning its last image). Recording warns about it; driving sends no keys into it."""

from __future__ import annotations

import cv2
import numpy as np

PICTURE = (64, 36)  # width, height of the grey picture whose lower half (the road) shows whether the car moves
# What a person can do about a picture that shows nothing (said by record and drive alike).
WHAT_TO_DO = ("if the game is running, crew2 does not see it: use borderless windowed mode, or another --capture "
              "(Windows) or --source (a covered window, exclusive full screen and HDR give black or stale pictures "
              "to a screen capture)")


def shrink(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) uint8 -> (height, width, C) at `size` (width, height), as OpenCV's INTER_AREA gives it, which
    recordings are made with. Where both axes shrink by a whole number and a half from 4.5 up (1920x1080 to 256x144:
    7.5), every 2n+1 pixels make two, and the sums are taken in numpy: the same pixels, 3-4.5 ms from 1080p against
    OpenCV's 7-8.5, whose area resize takes a slow path at such scales (`crew2 drive` on a 1080p window: 5.3-5.9
    ms preprocessing against 8.8-9.0). At 2.5 (640x360) OpenCV is the faster in the loop (1.5 against 2.1-2.3 ms)."""
    h, w = frame.shape[:2]
    p, q = 2 * w // size[0], 2 * h // size[1]  # pixels that make two, across and down
    if not (frame.ndim == 3 and frame.dtype == np.uint8 and p % 2 and q % 2 and p >= 9 and q >= 9
            and p * size[0] == 2 * w and q * size[1] == 2 * h):
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    wide = np.uint16 if p * q * 255 <= np.iinfo(np.uint16).max else np.uint32
    rows = _pairs(frame.reshape(h // q, q, w, -1), wide).reshape(size[1], w, -1)
    cols = np.ascontiguousarray(rows.transpose(1, 0, 2)).reshape(w // p, p, size[1], -1)  # across, as rows
    out = _pairs(cols, wide).reshape(size[0], size[1], -1).transpose(1, 0, 2)
    return np.rint(out * np.float32(1 / (p * q))).astype(np.uint8)


def _pairs(a: np.ndarray, wide) -> np.ndarray:
    """(G, 2n+1, ...) groups of pixels -> (G, 2, ...): twice the sum of each half, the middle pixel counted once in
    both (its half is each half's), as `wide` integers."""
    n = a.shape[1] // 2
    middle = a[:, n].astype(wide)
    halves = np.empty((a.shape[0], 2, *a.shape[2:]), wide)
    for i, part in enumerate((a[:, :n], a[:, n + 1:])):
        np.add.reduce(part, axis=1, dtype=wide, out=halves[:, i])
    halves *= 2
    halves += middle[:, None]
    return halves


def picture(frame: np.ndarray) -> np.ndarray:
    """What shows whether the car moves: the lower half of an RGB frame, grey, at 64x36 -> (18, 64) uint8."""
    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), PICTURE, interpolation=cv2.INTER_AREA)[PICTURE[1] // 2:]


class Blindness:
    """A picture that shows nothing to drive by: black (a loading screen), or the same picture for `frozen_s` while
    throttle is pressed (a paused or hung game, a capture that returns its last image; a car standing on the brake
    may see a still picture). No keys then, until the picture changes, or for `retry_s` before keys are tried again
    (a game that ignores keys for a while)."""

    def __init__(self, frozen_s: float = 1.0, retry_s: float = 3.0):
        self.frozen_s, self.retry_s = frozen_s, retry_s
        self.last: np.ndarray | None = None
        self.still_since: float | None = None  # the picture has not changed, with keys down, since
        self.frozen_at: float | None = None

    def __call__(self, grey: np.ndarray, now: float, pressing: bool) -> str | None:
        """"black", "frozen" or None (drive) for a frame's `picture` (grey, the lower half: the road); `pressing`:
        throttle was down since the last frame."""
        thumb = grey.astype(np.int16)  # the frame's `picture`: the drive loop computes it once for this and fusion
        same = self.last is not None and np.abs(thumb - self.last).max() <= 2
        self.last = thumb
        if thumb.max() < 16:
            return "black"
        if not same:
            self.still_since = self.frozen_at = None
            return None
        if self.frozen_at is not None:
            if now - self.frozen_at < self.retry_s:
                return "frozen"
            self.frozen_at = self.still_since = None  # try the keys again
            return None
        if pressing:
            self.still_since = now if self.still_since is None else self.still_since
            if now - self.still_since >= self.frozen_s:
                self.frozen_at = now
                return "frozen"
        return None
