"""Loading sessions for training: chunk-aware shuffling, balanced key combinations, label-safe augmentation.

The data never has to fit in RAM. Each epoch, every session is cut into chunks of consecutive frames, the
chunks are shuffled and dealt to DataLoader workers (and DDP ranks), each chunk is read sequentially (fast
in HDF5) and its samples pass through a shuffle buffer. Balancing gives frame i an expected number of
copies w_i proportional to 1 / freq(combination of i) ** balance, normalised so an epoch keeps its length;
copies are drawn by stochastic rounding (no torch.multinomial, which refuses more than 2**24 categories).
With balance = 1 every key combination is seen equally often; with 0, as recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from crew2.data.idle import IDLE_SECONDS, edge_mask, idle_mask
from crew2.data.session import FRAMES, NOT_ANNOTATED, Session, SessionMeta, decode
from crew2.errors import Crew2Error

# Batch field names, shared with the model and its losses (Ultralytics' detection loss reads the last three).
IMAGE, KEYS, ANNOTATED, BATCH_IDX, CLS, BBOXES = "image", "keys", "annotated", "batch_idx", "cls", "bboxes"


@dataclass
class LoaderConfig:
    chunk: int = 64  # consecutive frames read together
    buffer: int = 2048  # shuffle buffer, samples
    balance: float = 0.0  # 0 = as recorded .. 1 = every key combination equally often
    label_offset: int | None = None  # frames: learn the keys pressed k frames later; None: `label_offset`
    stack: int = 1  # frames per sample: the last n, stacked on the channel axis
    augment: bool = True
    flip: float = 0.5  # probability of a horizontal flip (left and right keys swap)
    shift: float = 0.04  # max shift, fraction of the frame size
    rotate: float = 3.0  # max rotation, degrees
    colour: float = 0.2  # max relative change of brightness, contrast and each channel's gain
    trim_idle: float = IDLE_SECONDS  # frames in a stretch this long (s) with no key pressed are left out; 0 keeps
    seed: int = 0

    def __post_init__(self) -> None:
        if self.chunk < 1 or self.buffer < 1 or self.stack < 1 or (self.label_offset or 0) < 0:
            raise Crew2Error("chunk, buffer and stack must be at least 1, label offset zero or more")
        if self.trim_idle < 0:
            raise Crew2Error(f"trim_idle must be zero (keep idle frames) or more, not {self.trim_idle}")
        if not 0 <= self.balance <= 1 or not 0 <= self.flip <= 1:
            raise Crew2Error("balance and flip must be between 0 and 1")


DRIVE_LATENCY_S = 0.05  # crew2 drive on a window, from the grab's start to the keys sent (CarRacing: 35-50 ms)


def label_offset(meta: SessionMeta, fixed: int | None = None) -> int:
    """Frames between a frame and the keys it is labelled with: `fixed`, else, for a session of a real-time game (a
    window or the screen), crew2's own drive latency in the session's frames, since the keys crew2 decides from a
    frame land that much later, when the person's keys of that later moment are the right ones (on CarRacing, one
    frame at 20 fps took the same data from 0.80 to 0.96 of the expert's score); 0 for the simulator, which waits
    for each decision."""
    if fixed is not None:
        return fixed
    return 0 if meta.source == "sim" else round(DRIVE_LATENCY_S * meta.fps)


def flip_permutation(keys: list[str], roles: dict[str, str]) -> np.ndarray:
    """Index permutation of a key vector under a horizontal flip: the left and right keys swap."""
    perm = np.arange(len(keys))
    left, right = roles.get("left"), roles.get("right")
    if left in keys and right in keys:
        i, j = keys.index(left), keys.index(right)
        perm[i], perm[j] = j, i
    return perm


def balance_weights(keys: np.ndarray, power: float) -> np.ndarray:
    """(N,) expected copies per frame: 1 / freq(combination) ** power, with mean 1."""
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    w = counts[inverse.reshape(-1)].astype(np.float64) ** -power
    return w * (len(w) / w.sum())


def segments(times: np.ndarray, fps: float) -> np.ndarray:
    """(N,) non-decreasing id of the uninterrupted stretch each frame is in; a gap of more than 1.5 frame
    periods (a pause, discarded seconds) starts a new one."""
    if len(times) == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([[0], np.cumsum(np.diff(times) > 1.5 / fps)])


def augment(image: np.ndarray, keys: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
            cfg: LoaderConfig, flip_perm: np.ndarray, band_rows: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random, label-preserving transform of a (H, W, C) uint8 image (C = 3 * stack), its (K,) keys and
    (M, 5) pixel boxes x1, y1, x2, y2, class. With `band_rows`, the image is a frame with the horizon band under it
    (`crew2.io.band`): each is shifted and turned as a picture of its own, so nothing moves across the seam."""
    h, w = image.shape[:2]
    boxes = boxes.copy()
    if rng.random() < cfg.flip:
        image = np.ascontiguousarray(image[:, ::-1])
        keys = keys[flip_perm]
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    if cfg.shift > 0 or cfg.rotate > 0:
        images, kept = [], []
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
        for top, bottom in ((0, h - band_rows), (h - band_rows, h)) if band_rows else ((0, h),):
            angle = rng.uniform(-cfg.rotate, cfg.rotate)
            m = cv2.getRotationMatrix2D((w / 2, (bottom - top) / 2), angle, 1.0)  # (2, 3)
            m[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * (w, bottom - top)
            images.append(_warp(image[top:bottom], m))
            mine = boxes[(centre_y >= top) & (centre_y < bottom)] - np.array([0, top, 0, top, 0], np.float32)
            moved = _warp_boxes(mine, m, w, bottom - top) if len(mine) else mine
            kept.append(moved + np.array([0, top, 0, top, 0], np.float32))
        image, boxes = np.concatenate(images), np.concatenate(kept)
    if cfg.colour > 0:
        c = cfg.colour
        gain = rng.uniform(1 - c, 1 + c) * rng.uniform(1 - c / 2, 1 + c / 2, 3)  # contrast x channel gains
        bias = rng.uniform(-c, c) * 128
        lut = np.clip(np.arange(256)[None, :] * gain[:, None] + bias, 0, 255).astype(np.uint8)  # (3, 256)
        channels = image.shape[2]
        image = np.stack([cv2.LUT(image[:, :, i], lut[i % 3]) for i in range(channels)], axis=2)
    return image, keys, boxes


def _warp(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    h, w, c = image.shape
    parts = [image[:, :, i: i + 3] for i in range(0, c, 3)]  # OpenCV warps up to 4 channels at a time
    warped = [cv2.warpAffine(p, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
              for p in parts]
    return np.concatenate([x.reshape(h, w, -1) for x in warped], axis=2)


def _warp_boxes(boxes: np.ndarray, m: np.ndarray, w: int, h: int) -> np.ndarray:
    """Move boxes with the image: the box around the moved corners, clipped; boxes mostly gone are dropped."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x1, y2], 1),
                        np.stack([x2, y2], 1)], axis=1)  # (M, 4, 2)
    moved = corners @ m[:, :2].T + m[:, 2]  # (M, 4, 2)
    out = np.concatenate([moved.min(1), moved.max(1)], axis=1)  # (M, 4)
    area = (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])
    out = np.clip(out, 0, [w, h, w, h])
    kept = (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1]) >= 0.3 * np.maximum(area, 1e-6)
    kept &= (out[:, 2] - out[:, 0] >= 1) & (out[:, 3] - out[:, 1] >= 1)
    return np.concatenate([out, boxes[:, 4:5]], axis=1)[kept].astype(np.float32)


class SessionStream(torch.utils.data.IterableDataset):
    """Samples from many session files: dicts with IMAGE (H, W, 3 * stack) uint8, KEYS (K,) float32,
    ANNOTATED bool and boxes (M, 5). Call `set_epoch` before each epoch for a new order."""

    def __init__(self, paths: list[Path], config: LoaderConfig | None = None):
        super().__init__()
        self.paths, self.cfg = [Path(p) for p in paths], config or LoaderConfig()
        if not self.paths:
            raise Crew2Error("no session files to load")
        self.keys, self.annotated, self.segments, idle, offsets = [], [], [], [], []
        meta = None
        for p in self.paths:
            s = Session(p)
            if meta is not None and (s.meta.keys, s.meta.width, s.meta.height, s.meta.band) != \
                    (meta.keys, meta.width, meta.height, meta.band):
                raise Crew2Error(f"{p} records {s.meta.keys} at {s.meta.width}x{s.meta.height} (band {s.meta.band}), "
                                 f"{self.paths[0]} {meta.keys} at {meta.width}x{meta.height} (band {meta.band}): "
                                 "train on like sessions")
            meta = meta or s.meta
            self.keys.append(s.keys().astype(np.float32))
            self.annotated.append(s.box_sources() != NOT_ANNOTATED)
            self.segments.append(segments(s.times(), s.meta.fps))
            offsets.append(label_offset(s.meta, self.cfg.label_offset))
            idle.append(idle_mask(self.keys[-1], s.times(), self.cfg.trim_idle) | edge_mask(self.keys[-1])
                        if self.cfg.trim_idle else np.zeros(len(s), bool))
            s.close()
        self.meta = meta
        self.flip_perm = flip_permutation(meta.keys, meta.roles)
        self.band_rows = meta.band["rows"] if meta.band else 0
        # The label of frame i is the keys at i + offset; frames whose label lies beyond the end or across a
        # cut (a pause, a discard) have none and get no weight. Nor do frames whose label lies in an idle
        # stretch or before the first key press or after the last (crew2.data.idle): a person waiting at the
        # start, or looking away, is not showing how to drive.
        self.offsets = offsets
        labelled = [keys[k:] for keys, k in zip(self.keys, offsets, strict=True)]
        valid = np.concatenate([(seg[k:] == seg[: len(seg) - k]) & ~still[k:]
                                for seg, still, k in zip(self.segments, idle, offsets, strict=True)])
        if not valid.any():
            raise Crew2Error(f"nothing to learn from in {len(self.paths)} session(s): every frame lies before the "
                             f"first key press, after the last, or in a stretch of {self.cfg.trim_idle:g} s or more "
                             "with no key pressed (or beyond the label offset)")
        weights = np.zeros(len(valid))
        weights[valid] = balance_weights(np.concatenate(labelled)[valid], self.cfg.balance)
        self.weights = np.split(weights, np.cumsum([len(x) for x in labelled])[:-1])
        self.epoch = 0
        self._open: dict[int, Session] = {}

    def __len__(self) -> int:
        """Samples per epoch (in expectation when balancing)."""
        return round(sum(w.sum() for w in self.weights))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def chunks(self) -> list[tuple[int, int, int]]:
        """This epoch's (session, start, end) chunks, shuffled, the same in every worker."""
        out = [(si, a, min(a + self.cfg.chunk, len(w))) for si, w in enumerate(self.weights)
               for a in range(0, len(w), self.cfg.chunk)]
        order = np.random.default_rng([self.cfg.seed, self.epoch]).permutation(len(out))
        return [out[i] for i in order]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rank, world = _rank()
        shard, shards = rank * workers + worker, world * workers
        rng = np.random.default_rng([self.cfg.seed, self.epoch, shard, 1])
        buffer: list[dict] = []
        for si, a, b in self.chunks()[shard::shards]:
            for sample in self._read_chunk(si, a, b, rng):
                if len(buffer) < self.cfg.buffer:
                    buffer.append(sample)
                else:
                    j = int(rng.integers(len(buffer)))
                    yield buffer[j]
                    buffer[j] = sample
        rng.shuffle(buffer)
        yield from buffer

    def _session(self, si: int) -> Session:
        if si not in self._open:  # opened here, in the worker process, never pickled
            self._open[si] = Session(self.paths[si])
        return self._open[si]

    def _read_chunk(self, si: int, a: int, b: int, rng: np.random.Generator):
        w = self.weights[si][a:b]
        copies = np.floor(w).astype(int) + (rng.random(len(w)) < w - np.floor(w))
        if not copies.any():
            return
        s, n_stack = self._session(si), self.cfg.stack
        lo = max(0, a - n_stack + 1)
        blobs = s.f[FRAMES][lo:b]  # one sequential read for the chunk and the frames stacked before it
        frames = [decode(x) for x in blobs]
        offset = self.offsets[si]
        seg = self.segments[si]
        for i in np.flatnonzero(copies) + a:
            first = int(np.searchsorted(seg, seg[i]))  # stacks never reach back across a cut: they repeat
            idx = [max(j, first) - lo for j in range(i - n_stack + 1, i + 1)]  # oldest first
            image = frames[idx[0]] if n_stack == 1 else np.concatenate([frames[j] for j in idx], axis=2)
            keys = self.keys[si][i + offset]
            boxes = s.boxes(int(i)) if self.annotated[si][i] else np.zeros((0, 5), np.float32)
            for _ in range(copies[i - a]):
                img, k, bx = (augment(image, keys, boxes, rng, self.cfg, self.flip_perm, self.band_rows)
                              if self.cfg.augment
                              else (image, keys, boxes))
                yield {IMAGE: img, KEYS: k, ANNOTATED: bool(self.annotated[si][i]), "boxes": bx}


def _rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    """A batch: IMAGE (B, C, H, W) uint8, KEYS (B, K), ANNOTATED (B,), and the boxes of annotated frames
    in Ultralytics' layout: BATCH_IDX (N,), CLS (N, 1), BBOXES (N, 4) normalised centre x, y, width, height."""
    from ultralytics.utils.ops import xyxy2xywhn

    images = np.stack([s[IMAGE] for s in samples])  # (B, H, W, C)
    h, w = images.shape[1:3]
    idx, cls, xywh = [], [], []
    for b, s in enumerate(samples):
        bx = s["boxes"]
        if len(bx):
            idx.append(np.full(len(bx), b))
            cls.append(bx[:, 4])
            xywh.append(xyxy2xywhn(bx[:, :4], w, h))
    cat = (lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape, np.float32))  # noqa: E731
    return {
        IMAGE: torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        KEYS: torch.from_numpy(np.stack([s[KEYS] for s in samples]).astype(np.float32)),
        ANNOTATED: torch.tensor([s[ANNOTATED] for s in samples]),
        BATCH_IDX: torch.from_numpy(cat(idx, (0,)).astype(np.float32)),
        CLS: torch.from_numpy(cat(cls, (0,)).astype(np.float32)[:, None]),
        BBOXES: torch.from_numpy(cat(xywh, (0, 4)).astype(np.float32)),
    }


def loader(paths: list[Path], config: LoaderConfig, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over sessions; call `loader.dataset.set_epoch(e)` each epoch."""
    return torch.utils.data.DataLoader(SessionStream(paths, config), batch_size=batch_size, num_workers=workers,
                                       collate_fn=collate, persistent_workers=False,
                                       prefetch_factor=4 if workers else None)


def expected_shares(counts: dict[str, int], power: float) -> dict[str, float]:
    """The share of each key combination after balancing with `power`: n_c * n_c ** -power, normalised."""
    total = sum(n ** (1 - power) for n in counts.values())
    return {c: n ** (1 - power) / total for c, n in counts.items()}
