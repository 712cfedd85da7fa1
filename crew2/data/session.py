"""Session files: one HDF5 file per recording — JPEG frames, key vectors, timestamps, optional boxes.

Layout (format version 1), every dataset growing along its first axis:
- `frames`  (N,) variable-length uint8: one JPEG per frame (RGB in, RGB out). One frame per entry keeps a
  random read to one decode; JPEG q90 measured 5.8 KB and 7,500 decodes/s per core on sim frames.
- `keys`    (N, K) uint8: 1 where the profile's key k was down.
- `time`    (N,) float64: seconds since the session started.
- `boxes`   (N,) variable-length float32: per frame M rows of (x1, y1, x2, y2, class) in pixels, flattened.
- `box_source` (N,) uint8: 0 not annotated, 1 simulator ground truth, 2 teacher model, 3 reviewed by a person.
- `committed` (1,) int64: how many frames were complete at the last flush.
Attributes carry the format version, fps, key profile, source, region, resolution, crew2 version and date.

Files are written in HDF5's SWMR mode and flushed at least once a second, so a killed recording leaves a
file that opens and holds everything up to the last flush. Dataset lengths on disk may run ahead of the
frames' bytes (HDF5 can write metadata before a flush), so readers trust `committed` and check the last
frame reads.
"""

from __future__ import annotations

import json
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import h5py
import numpy as np

from crew2 import __version__
from crew2.errors import Crew2Error
from crew2.keys import KeyProfile

FORMAT_VERSION = 1
FRAMES, KEYS, TIME, BOXES, BOX_SOURCE = "frames", "keys", "time", "boxes", "box_source"
CRC = "crc"  # CRC-32 of each frame's JPEG bytes: damage that still decodes is found (files before it have none)
PER_FRAME = (FRAMES, KEYS, TIME, BOXES, BOX_SOURCE, CRC)  # the datasets with one entry per frame
RESERVE = 16 * 2**20  # bytes a writer leaves free on the disk
CHECK_EVERY = 2**18  # bytes of frames between checks of the free space (a statvfs call: microseconds)
COMMITTED = "committed"  # (1,) frames known complete on disk, written with every flush
NOT_ANNOTATED, SIM_TRUTH, TEACHER, REVIEWED = range(4)
CHUNK = 256  # frames per HDF5 chunk of the small per-frame datasets


@dataclass
class SessionMeta:
    """What a session is: stored as HDF5 attributes."""

    fps: float
    width: int
    height: int
    keys: list[str]
    roles: dict[str, str]
    source: str  # "sim", "screen", "window"
    driver: str = "human"  # "human", "autopilot", "model", "correction" (a person's takeovers: crew2.drive.takeover)
    region: list[int] | None = None  # left, top, width, height of what was captured
    profile: str = "custom"
    jpeg_quality: int = 90
    class_names: list[str] = field(default_factory=list)
    sim: dict | None = None  # sim sessions: seed, noise and config, enough to replay them exactly
    band: dict | None = None  # frames with the horizon band under them (`crew2.io.band.Band`); width, height: both
    created: str = ""
    crew2_version: str = __version__
    format_version: int = FORMAT_VERSION

    @staticmethod
    def for_profile(profile: KeyProfile, **kw) -> SessionMeta:
        return SessionMeta(keys=list(profile.keys), roles=dict(profile.roles), profile=profile.name, **kw)


def encode(frame: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 frame -> JPEG bytes as a uint8 array."""
    ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise Crew2Error("JPEG encoding failed")
    return buf.reshape(-1)


def decode(blob: np.ndarray) -> np.ndarray:
    """JPEG bytes -> RGB uint8 frame."""
    bgr = cv2.imdecode(np.asarray(blob, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise Crew2Error("a frame in the session is not a readable JPEG")
    return bgr[:, :, ::-1]


class SessionWriter:
    """Appends frames to a new session file; flushes at least every `flush_every` seconds."""

    def __init__(self, path: str | Path, meta: SessionMeta, flush_every: float = 1.0, reserve: int = RESERVE):
        self.path = Path(path)
        if self.path.exists():
            raise Crew2Error(f"{self.path} exists already: choose another name (nothing was overwritten)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.reserve, self.unchecked, self.n = reserve, 0, 0
        self.check_space()
        meta.created = meta.created or datetime.now(UTC).isoformat(timespec="seconds")
        self.meta, self.flush_every = meta, flush_every
        self.f = h5py.File(self.path, "w", libver="latest")
        k = len(meta.keys)
        self.f.create_dataset(FRAMES, (0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.uint8), chunks=(64,))
        self.f.create_dataset(KEYS, (0, k), maxshape=(None, k), dtype=np.uint8, chunks=(CHUNK, k))
        self.f.create_dataset(TIME, (0,), maxshape=(None,), dtype=np.float64, chunks=(CHUNK,))
        self.f.create_dataset(BOXES, (0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.float32), chunks=(CHUNK,))
        self.f.create_dataset(BOX_SOURCE, (0,), maxshape=(None,), dtype=np.uint8, chunks=(CHUNK,))
        self.f.create_dataset(CRC, (0,), maxshape=(None,), dtype=np.uint32, chunks=(CHUNK,))
        self.f.create_dataset(COMMITTED, data=np.zeros(1, np.int64))
        for name, value in asdict(meta).items():
            self.f.attrs[name] = json.dumps(value) if isinstance(value, list | dict) or value is None else value
        self.f.swmr_mode = True  # from here on a reader (or a crash) always sees a consistent file
        self.last_flush = time.monotonic()

    def append(self, jpeg: np.ndarray, keys: np.ndarray, t: float, boxes: np.ndarray | None = None,
               box_source: int = NOT_ANNOTATED) -> None:
        """One frame: JPEG bytes (see `encode`), its key vector, its time, optionally its (M, 5) boxes."""
        i = self.n
        for name in PER_FRAME:
            self.f[name].resize(i + 1, axis=0)
        self.f[FRAMES][i] = jpeg
        self.f[KEYS][i] = keys
        self.f[TIME][i] = t
        self.f[BOXES][i] = np.zeros(0, np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1)
        self.f[BOX_SOURCE][i] = box_source if boxes is not None else NOT_ANNOTATED
        self.f[CRC][i] = zlib.crc32(jpeg)
        self.n += 1
        self.unchecked += len(jpeg)
        if time.monotonic() - self.last_flush >= self.flush_every or self.unchecked > CHECK_EVERY:
            self.flush()
            self.check_space()

    def check_space(self) -> None:
        """Stop, with every frame so far flushed and kept, while the disk still has `reserve` bytes: HDF5 on a
        full disk fails half-way through a write and leaves a file it cannot close."""
        self.unchecked = 0
        free = shutil.disk_usage(self.path.parent).free
        if free < self.reserve:
            raise Crew2Error(f"the disk of {self.path} is almost full ({free / 2**20:.0f} MiB free): stopped after "
                             f"{self.n} frames, all kept")

    def truncate(self, n: int) -> None:
        """Keep only the first n frames (discarding the last seconds of a recording)."""
        n = max(0, min(n, self.n))
        for name in PER_FRAME:
            self.f[name].resize(n, axis=0)
        self.n = n
        self.flush()

    def flush(self) -> None:
        self.f[COMMITTED][0] = self.n
        self.f.flush()
        self.last_flush = time.monotonic()

    def close(self) -> None:
        if self.f.id.valid:
            self.flush()
            self.f.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Session:
    """A session file opened for reading. Opens lazily: safe to create before DataLoader workers fork."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f: h5py.File | None = None
        f = self._open()
        try:
            size, expected = self.path.stat().st_size, f.id.get_filesize()
            if size < expected:  # reading past the end hangs HDF5 in SWMR retries: a cut copy is caught here
                raise Crew2Error(f"{self.path}: truncated ({size} of {expected} bytes): copy it again or "
                                 "record it again")
            self.meta = _read_meta(f, self.path)
            _check_layout(f, self.meta, self.path)
            self.n = _complete_frames(f)
        except Crew2Error:
            raise
        except Exception as e:  # missing datasets, bad attributes, HDF5 damage: h5py and json raise many types
            raise Crew2Error(f"{self.path}: not a readable crew2 session ({type(e).__name__}: {e})") from e
        finally:
            f.close()

    def _open(self) -> h5py.File:
        if not self.path.exists():
            raise Crew2Error(f"{self.path}: no such file")
        try:
            return h5py.File(self.path, "r", libver="latest", swmr=True)
        except (OSError, RuntimeError) as e:  # h5py raises either, depending on the damage
            raise Crew2Error(f"{self.path}: not a readable crew2 session (corrupt or truncated HDF5: {e})") from e

    def being_written(self, within: float = 5.0) -> bool:
        """A recorder (or another writer) has it open now: HDF5 marks the file open for writing until it is closed,
        and a live writer flushes at least every second (a crashed one leaves the mark but stops changing it)."""
        try:
            h5py.File(self.path, "r", libver="latest").close()
            return False
        except OSError as e:
            return "already open for write" in str(e) and time.time() - self.path.stat().st_mtime < within

    @property
    def f(self) -> h5py.File:
        if self._f is None:
            self._f = self._open()
        return self._f

    def __len__(self) -> int:
        return self.n

    def frame(self, i: int) -> np.ndarray:
        return decode(self.f[FRAMES][i])

    def intact(self, i: int) -> bool | None:
        """Whether frame i's JPEG bytes are those that were recorded; None for a file without checksums."""
        return None if CRC not in self.f else zlib.crc32(self.f[FRAMES][i]) == int(self.f[CRC][i])

    def keys(self) -> np.ndarray:
        return self.f[KEYS][: self.n]

    def times(self) -> np.ndarray:
        return self.f[TIME][: self.n]

    def boxes(self, i: int) -> np.ndarray:
        """(M, 5) boxes of frame i: x1, y1, x2, y2 (pixels), class id."""
        return np.asarray(self.f[BOXES][i], np.float32).reshape(-1, 5)

    def box_sources(self) -> np.ndarray:
        return self.f[BOX_SOURCE][: self.n]

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __getstate__(self) -> dict:  # h5py handles cannot be pickled: workers reopen the file
        return {**self.__dict__, "_f": None}


def _complete_frames(f: h5py.File) -> int:
    """Frames that are whole on disk: after a crash, the shortest dataset and the committed count bound
    it, and a last frame whose bytes never reached the disk is left out."""
    n = min(len(f[name]) for name in PER_FRAME if name in f)
    if COMMITTED in f:
        n = min(n, int(f[COMMITTED][0]))
    # The last CHUNK frames (several seconds, where a crash can have left holes) must all read: not only
    # the last one, since a kill can leave an earlier frame's bytes unwritten after a later one's (seen
    # under load: "actual len exceeds EOA" two frames before the end).
    for i in range(n - 1, max(n - CHUNK, 0) - 1, -1):
        try:
            whole = len(f[FRAMES][i]) > 0 and f[BOXES][i] is not None
        except OSError:
            whole = False
        if not whole:
            n = i
    return n


def _check_layout(f: h5py.File, meta: SessionMeta, path: Path) -> None:
    """The datasets' shapes and types are those SessionWriter makes: anything else is not a crew2 session."""
    keys, time_, frames = f[KEYS], f[TIME], f[FRAMES]
    wrong = [name for name, ok in (
        (KEYS, keys.ndim == 2 and keys.shape[1] == len(meta.keys) and keys.dtype.kind in "uib"),
        (TIME, time_.ndim == 1 and time_.dtype.kind == "f"),
        (FRAMES, frames.ndim == 1 and h5py.check_vlen_dtype(frames.dtype) == np.uint8),
        (BOXES, BOXES not in f or h5py.check_vlen_dtype(f[BOXES].dtype) is not None),
    ) if not ok]
    if wrong:
        raise Crew2Error(f"{path}: not a crew2 session (dataset {', '.join(wrong)} has the wrong shape or type)")
    if not isinstance(meta.fps, int | float) or not meta.fps > 0 or not isinstance(meta.keys, list):
        raise Crew2Error(f"{path}: not a crew2 session (bad fps or keys attribute)")


def _read_meta(f: h5py.File, path: Path) -> SessionMeta:
    attrs = dict(f.attrs)
    version = attrs.get("format_version")
    if version is None or any(name not in f for name in (FRAMES, KEYS, TIME)):
        raise Crew2Error(f"{path}: not a crew2 session file (no format version or frame data)")
    if int(version) > FORMAT_VERSION:
        raise Crew2Error(f"{path}: session format {version} is newer than this crew2 reads ({FORMAT_VERSION})")
    fields = SessionMeta.__dataclass_fields__
    values = {}
    for name in fields:
        if name in attrs:
            v = attrs[name]
            v = v.item() if isinstance(v, np.generic) else v
            if name in ("keys", "roles", "region", "class_names", "sim", "band") and isinstance(v, str):
                v = json.loads(v)
            values[name] = v
    return SessionMeta(**values)
