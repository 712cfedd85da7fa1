"""The horizon band: a strip across the far end of the road, seen `zoom` times closer than the frame and stacked
under it, so that one network, in one forward pass, sees far obstacles at a size its detector finds.

At 256x144 a cone 40 m ahead is 2.7 px tall and the obstacle head finds 8% of the cones under 5 px. The same
weights fine-tuned for 10 minutes on 4x horizon crops (320x64 of a 1024x576 render) found, 40-60 m ahead, 90% of
the barriers (small frame: 2%) and 96% of the cars (71%); cones 35% (none). The band is cut from the capture at its
own resolution (a 1080p game is 7.5 times a 256x144 frame), shrunk to the frame's width, and the network's input
is the frame with the band under it: 256x144 + 48 rows = 256x192, a multiple of the network's stride (no padding),
1.2 times the pixels of the padded 256x160 frame.

Boxes in the band are in the stacked image's pixels (rows from the frame's height down); `to_frame` maps them back
to the frame's, where crash prevention and the overlay want them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from crew2.errors import Crew2Error
from crew2.io.picture import shrink

MIN_VISIBLE = 0.5  # a box cut by the band's edge counts in the band when this share of its width and height is in it
MIN_BOX = 2.0  # px: smaller boxes in the band are not kept as truth (the frame's own boxes are kept as they are)


@dataclass(frozen=True)
class Band:
    zoom: float = 4.0  # how many times closer than the frame the band sees
    rows: int = 48  # its height under the frame, px of the network's input
    at: float = 0.42  # its centre as a share of the frame's height: where the horizon is (the sim's camera: 0.42)

    def __post_init__(self) -> None:
        if not 1 < self.zoom <= 16:
            raise Crew2Error(f"--band must zoom more than 1 and at most 16 times, not {self.zoom}")
        if not 8 <= self.rows <= 256:
            raise Crew2Error(f"the band's rows must be between 8 and 256, not {self.rows}")
        if not 0 < self.at < 1:
            raise Crew2Error(f"--band-at is a share of the frame's height, between 0 and 1, not {self.at}")

    @staticmethod
    def of(d: dict | None) -> Band | None:
        return None if d is None else Band(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def capture(self, size: tuple[int, int]) -> tuple[int, int]:
        """The smallest picture (width, height) that gives the band its own pixels for frames of `size`."""
        return round(size[0] * self.zoom), round(size[1] * self.zoom)

    def stacked(self, size: tuple[int, int]) -> tuple[int, int]:
        """The network's input (width, height) for frames of `size`: the frame with the band under it."""
        return size[0], size[1] + self.rows

    def frame_size(self, stacked: tuple[int, int]) -> tuple[int, int]:
        """The frame's (width, height) in a stacked input of `stacked` size."""
        return stacked[0], stacked[1] - self.rows

    def region(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 of what the band shows, in the pixels of a frame of `size`: the frame's width / zoom, centred
        across, its rows / zoom, centred on `at`."""
        w, h = size
        half_w, half_h = w / self.zoom / 2, self.rows / self.zoom / 2
        cy = min(max(self.at * h, half_h), h - half_h)  # kept inside the frame
        return w / 2 - half_w, cy - half_h, w / 2 + half_w, cy + half_h

    def check(self, picture: tuple[int, int], size: tuple[int, int]) -> None:
        """A clear error unless a `picture` (width, height) is large enough for the band of frames of `size`."""
        need_w, need_h = self.capture(size)
        if picture[0] < need_w - 1 or picture[1] < need_h - 1:
            raise Crew2Error(f"a band {self.zoom:g} times closer than a {size[0]}x{size[1]} frame needs a picture of "
                             f"at least {need_w}x{need_h}, and this one is {picture[0]}x{picture[1]}: "
                             "make the game's window larger, or use a smaller --band")

    def stack(self, capture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(H', W', 3) uint8 capture -> (height + rows, width, 3): the frame at `size` on top, the band under it."""
        src_h, src_w = capture.shape[:2]
        w, h = size
        self.check((src_w, src_h), size)
        sx, sy = src_w / w, src_h / h
        x0, y0, x1, y1 = self.region(size)
        strip = capture[round(y0 * sy): round(y1 * sy), round(x0 * sx): round(x1 * sx)]
        out = np.empty((h + self.rows, w, 3), np.uint8)
        out[:h] = shrink(capture, size)
        out[h:] = cv2.resize(strip, (w, self.rows), interpolation=cv2.INTER_AREA)
        return out

    def truth(self, boxes: np.ndarray, capture_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        """(M, 5) x1, y1, x2, y2, class in the capture's pixels -> the same objects in the stacked input: every box
        in the frame, and, once more, those the band shows (at least MIN_VISIBLE of them, MIN_BOX px or more)."""
        sx, sy = size[0] / capture_size[0], size[1] / capture_size[1]
        frame = boxes * np.array([sx, sy, sx, sy, 1], np.float32)
        x0, y0, x1, y1 = self.region(size)
        cut = np.stack([np.clip(frame[:, 0], x0, x1), np.clip(frame[:, 1], y0, y1),
                        np.clip(frame[:, 2], x0, x1), np.clip(frame[:, 3], y0, y1)], 1)  # (M, 4) frame px
        full_w, full_h = frame[:, 2] - frame[:, 0], frame[:, 3] - frame[:, 1]
        band = (cut - np.array([x0, y0, x0, y0], np.float32)) * np.float32(self.zoom)  # (M, 4) band px
        band[:, [1, 3]] += size[1]
        seen_w, seen_h = cut[:, 2] - cut[:, 0], cut[:, 3] - cut[:, 1]
        keep = ((seen_w >= MIN_VISIBLE * full_w) & (seen_h >= MIN_VISIBLE * full_h)
                & (band[:, 2] - band[:, 0] >= MIN_BOX) & (band[:, 3] - band[:, 1] >= MIN_BOX))
        in_band = np.concatenate([band, frame[:, 4:5]], 1)[keep]
        return np.concatenate([frame, in_band]).astype(np.float32)

    def to_frame(self, boxes: np.ndarray, size: tuple[int, int], iou: float = 0.3) -> np.ndarray:
        """(n, 6) boxes x1, y1, x2, y2, score, class in a stacked input whose frame is `size` -> (m, 6) in the
        frame's pixels: the band's (centre under the frame) scaled back to where they are, the frame's clipped to the
        frame. Where the band and the frame both found an object (same class, IoU >= `iou`), the band's box is kept,
        drawn from 4 times the pixels, unless the band's edge cuts it: then the frame's, which is whole."""
        w, h = size
        in_band = (boxes[:, 1] + boxes[:, 3]) / 2 >= h
        frame, band = boxes[~in_band].copy(), boxes[in_band].copy()
        frame[:, [1, 3]] = np.minimum(frame[:, [1, 3]], h)
        cut = (band[:, 0] <= 1) | (band[:, 2] >= w - 1) | (band[:, 1] <= h + 1) | (band[:, 3] >= h + self.rows - 1)
        x0, y0, _, _ = self.region(size)
        band[:, [1, 3]] -= h
        band[:, :4] = band[:, :4] / self.zoom + np.array([x0, y0, x0, y0], np.float32)
        if len(band) and len(frame):
            from ultralytics.utils.metrics import bbox_ioa  # as fusion's tracker matches boxes

            inside = bbox_ioa(frame[:, :4], band[:, :4]).T  # (n_band, n_frame) share of the band's box in the frame's
            overlap = bbox_ioa(band[:, :4], frame[:, :4], iou=True)
            same = np.where(cut[:, None], inside >= 0.5, overlap >= iou)  # a cut box: mostly inside the other
            same &= band[:, 5:6] == frame[None, :, 5]  # the same object, seen twice
            frame = frame[~(same & ~cut[:, None]).any(0)]
            band = band[~(cut & same.any(1))]
        return np.concatenate([frame, band]).astype(np.float32)

