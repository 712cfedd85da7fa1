"""The background writer: JPEG encoding and HDF5 appends off the capture thread, behind a bounded queue."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

import numpy as np

from crew2.data.session import NOT_ANNOTATED, SessionMeta, SessionWriter, encode
from crew2.errors import Crew2Error

log = logging.getLogger(__name__)


@dataclass
class Sample:
    frame: np.ndarray  # (H, W, 3) uint8 RGB
    keys: np.ndarray  # (K,) uint8
    t: float  # s since the session started
    boxes: np.ndarray | None = None  # (M, 5) x1, y1, x2, y2, class
    box_source: int = NOT_ANNOTATED


@dataclass
class _Discard:
    frames: int


_CLOSE = object()


class BackgroundWriter:
    """Encodes and appends in its own thread. In real time, a full queue drops a sample rather than
    blocking the capture loop."""

    def __init__(self, path, meta: SessionMeta, queue_size: int = 256):
        self.session = SessionWriter(path, meta)
        self.quality = meta.jpeg_quality
        self.queue: queue.Queue = queue.Queue(queue_size)
        self.dropped = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="crew2-writer", daemon=True)
        self.thread.start()

    @property
    def written(self) -> int:
        return self.session.n

    def submit(self, sample: Sample, block: bool = False) -> bool:
        """Queue a sample; False (and counted as dropped) if the queue is full and not `block`."""
        if self.error is not None:
            raise self.failure()
        try:
            self.queue.put(sample, block=block)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def discard_last(self, frames: int) -> None:
        """Drop the last `frames` frames submitted before this call."""
        self.queue.put(_Discard(frames))

    def _run(self) -> None:
        try:
            while (item := self.queue.get()) is not _CLOSE:
                if isinstance(item, _Discard):
                    self.session.truncate(self.session.n - item.frames)
                else:
                    self.session.append(encode(item.frame, self.quality), item.keys, item.t, item.boxes,
                                        item.box_source)
        except BaseException as e:  # reported to the capture loop by submit() and close()
            self.error = e
            log.debug("session writer failed", exc_info=True)

    def close(self) -> None:
        """Write everything queued, then close the file. Safe to call twice."""
        if self.thread.is_alive():
            self.queue.put(_CLOSE)
            self.thread.join()
        try:
            self.session.close()
        except OSError as e:  # the last flush on a full disk: what was flushed before stays
            self.error = self.error or e
        if self.error is not None:
            raise self.failure()

    def failure(self) -> Crew2Error:
        e = self.error
        if isinstance(e, Crew2Error):  # says itself what happened to the file
            return e
        why = f"{e.strerror}" if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        return Crew2Error(f"writing {self.session.path} failed after {self.session.n} frames ({why}); "
                          "the frames written before it are kept")
