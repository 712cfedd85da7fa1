"""MP4 videos that browsers and GitHub play: H.264 in yuv420p through PyAV (FFmpeg), the one writer behind every
`--mp4` (`crew2 data view`, `crew2 eval`, `crew2 drive`)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from crew2.errors import Crew2Error


class Mp4Writer:
    """Frames (BGR, as OpenCV draws them) to an H.264 MP4 at `fps`. The size is the first frame's; odd sizes get a
    pixel of border (4:2:0 needs even ones). Use as a context manager, or call `close`."""

    def __init__(self, path: str | Path, fps: float, crf: int = 23):
        import av

        self.path = Path(path)
        try:
            self.container = av.open(str(self.path), mode="w", format="mp4")
        except OSError as e:
            raise Crew2Error(f"{self.path}: cannot write a video there ({e.strerror or e})") from None
        self.rate, self.crf = Fraction(fps).limit_denominator(1001), crf
        self.stream = None
        self.frames = 0

    def write(self, bgr: np.ndarray) -> None:
        import av

        h, w = bgr.shape[:2]
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = w + w % 2, h + h % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        if (w + w % 2, h + h % 2) != (self.stream.width, self.stream.height):
            raise Crew2Error(f"{self.path}: frame {self.frames} is {w}x{h}, the video "
                             f"{self.stream.width}x{self.stream.height}")
        if w % 2 or h % 2:
            bgr = cv2.copyMakeBorder(bgr, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        if self.container is None:
            return
        try:
            if self.stream is not None:
                self.container.mux(self.stream.encode())  # what the encoder still holds
        finally:
            self.container.close()
            self.container = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
