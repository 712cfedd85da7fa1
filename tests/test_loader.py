"""The training loader: every frame once per epoch, shuffled, balanced as promised, labels kept right."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from crew2.data.loader import (
    ANNOTATED,
    BATCH_IDX,
    BBOXES,
    CLS,
    IMAGE,
    KEYS,
    LoaderConfig,
    SessionStream,
    augment,
    collate,
    expected_shares,
    flip_permutation,
    loader,
)
from crew2.data.session import SIM_TRUTH, SessionMeta, SessionWriter, encode
from crew2.data.tools import combo_name
from crew2.keys import default_profile

W, H = 64, 36


def frame_of(i: int) -> np.ndarray:
    """A frame that encodes its own index (survives JPEG): brightness steps of 16 on two digits."""
    f = np.zeros((H, W, 3), np.uint8)
    f[:, : W // 2] = (i % 16) * 16 + 8
    f[:, W // 2:] = (i // 16 % 16) * 16 + 8
    return f


def index_of(image: np.ndarray) -> int:
    lo, hi = image[H // 2, W // 4, 0], image[H // 2, 3 * W // 4, 0]
    return round((hi - 8) / 16) * 16 + round((lo - 8) / 16)


def make(path: Path, keys: np.ndarray, boxes_every: int = 0, source: str = "sim", fps: float = 20) -> Path:
    meta = SessionMeta.for_profile(default_profile(), fps=fps, width=W, height=H, source=source)
    with SessionWriter(path, meta) as w:
        for i, k in enumerate(keys):
            boxes = np.array([[4, 6, 20, 30, 1]], np.float32) if boxes_every and i % boxes_every == 0 else None
            w.append(encode(frame_of(i), 95), k, i / fps, boxes, SIM_TRUTH)
    return path


def skewed_keys(n: int, seed: int = 0) -> np.ndarray:
    """70% W, 20% W+A, 10% W+D: the 'only goes straight' skew of real recordings."""
    rng = np.random.default_rng(seed)
    choice = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    return np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1]], np.uint8)[choice]


NO_AUG = dict(augment=False)


def test_every_frame_once_per_epoch_and_shuffled(tmp_path):
    paths = [make(tmp_path / f"s{i}.h5", skewed_keys(100, i)) for i in range(2)]
    ds = SessionStream(paths, LoaderConfig(chunk=8, buffer=64, **NO_AUG))
    seen = [index_of(s[IMAGE]) for s in ds]
    assert len(seen) == len(ds) == 200
    assert Counter(seen) == Counter(list(range(100)) * 2)
    adjacent = sum(abs(a - b) == 1 for a, b in pairwise(seen))
    assert adjacent < 40, "neighbouring frames are spread apart"
    ds.set_epoch(1)
    assert [index_of(s[IMAGE]) for s in ds] != seen, "a new order each epoch"


def test_workers_share_the_epoch_without_overlap(tmp_path):
    paths = [make(tmp_path / f"s{i}.h5", skewed_keys(90, i)) for i in range(3)]
    dl = loader(paths, LoaderConfig(chunk=16, buffer=32, **NO_AUG), batch_size=10, workers=2)
    seen = Counter()
    for batch in dl:
        assert batch[IMAGE].shape[1:] == (3, H, W) and batch[IMAGE].dtype == torch.uint8
        seen.update(index_of(img.permute(1, 2, 0).numpy()) for img in batch[IMAGE])
    assert seen == Counter(list(range(90)) * 3)


@pytest.mark.parametrize("power", [0.5, 1.0])
def test_balancing_changes_the_histogram_as_it_says(tmp_path, power):
    keys = skewed_keys(2000)
    path = make(tmp_path / "s.h5", keys)
    names = default_profile().keys
    before = Counter(combo_name(list(names), k) for k in keys)
    ds = SessionStream([path], LoaderConfig(balance=power, **NO_AUG))
    after = Counter(combo_name(list(names), s[KEYS].astype(int)) for s in ds)
    total = sum(after.values())
    assert abs(total - 2000) < 150, "an epoch keeps about its length"
    for combo, share in expected_shares(before, power).items():
        assert abs(after[combo] / total - share) < 0.03, (combo, after[combo] / total, share)
    if power == 1.0:
        assert max(after.values()) / min(after.values()) < 1.25


def test_label_offset_and_stacking(tmp_path):
    keys = np.random.default_rng(3).integers(0, 2, (60, 4)).astype(np.uint8)
    path = make(tmp_path / "s.h5", keys)
    ds = SessionStream([path], LoaderConfig(label_offset=3, stack=3, **NO_AUG))
    samples = list(ds)
    assert len(samples) == 57
    for s in samples:
        img = s[IMAGE]
        assert img.shape == (H, W, 9)
        i = index_of(img[:, :, 6:9])  # the newest frame is last
        assert np.array_equal(s[KEYS], keys[i + 3].astype(np.float32))
        assert index_of(img[:, :, 3:6]) == max(i - 1, 0) and index_of(img[:, :, 0:3]) == max(i - 2, 0)


def test_sessions_of_a_real_time_game_learn_the_keys_of_when_crew2_s_keys_will_land(tmp_path):
    """By default a frame of a window or the screen is labelled with the keys pressed crew2's drive latency (50 ms)
    later, in that session's frames; the simulator, which waits for each decision, with its own."""
    keys = np.random.default_rng(4).integers(0, 2, (60, 4)).astype(np.uint8)
    for source, fps, offset in (("window", 20, 1), ("screen", 40, 2), ("sim", 20, 0)):
        path = make(tmp_path / f"{source}{fps}.h5", keys, source=source, fps=fps)
        samples = list(SessionStream([path], LoaderConfig(trim_idle=0, **NO_AUG)))
        assert len(samples) == 60 - offset
        assert all(np.array_equal(x[KEYS], keys[index_of(x[IMAGE]) + offset]) for x in samples), source
    explicit = list(SessionStream([path], LoaderConfig(label_offset=3, trim_idle=0, **NO_AUG)))
    assert all(np.array_equal(x[KEYS], keys[index_of(x[IMAGE]) + 3]) for x in explicit)


def test_flip_swaps_left_and_right_and_mirrors_boxes():
    profile = default_profile()
    perm = flip_permutation(list(profile.keys), profile.roles)
    assert perm.tolist() == [0, 3, 2, 1]  # W A S D -> W D S A
    image = np.zeros((H, W, 3), np.uint8)
    image[:, :10] = 255
    boxes = np.array([[2, 4, 12, 20, 0]], np.float32)
    cfg = LoaderConfig(flip=1.0, shift=0, rotate=0, colour=0)
    out, keys, bx = augment(image, np.array([1, 1, 0, 0], np.float32), boxes, np.random.default_rng(0), cfg, perm)
    assert out[:, -10:].min() == 255 and out[:, :10].max() == 0
    assert keys.tolist() == [1, 0, 0, 1]
    assert bx.tolist() == [[W - 12, 4, W - 2, 20, 0]]


def test_shift_and_rotation_move_boxes_with_the_image():
    image = np.zeros((H, W, 3), np.uint8)
    image[10:20, 20:30] = 255
    boxes = np.array([[20, 10, 30, 20, 2]], np.float32)
    cfg = LoaderConfig(flip=0, shift=0.1, rotate=5, colour=0)
    rng = np.random.default_rng(1)
    for _ in range(10):
        out, _, bx = augment(image, np.zeros(4, np.float32), boxes, rng, cfg, np.arange(4))
        ys, xs = np.nonzero(out[:, :, 0] > 127)
        x1, y1, x2, y2, c = bx[0]
        assert c == 2
        assert x1 - 1.5 <= xs.min() and xs.max() + 1 <= x2 + 1.5 and y1 - 1.5 <= ys.min() and ys.max() + 1 <= y2 + 1.5


def test_collate_gives_ultralytics_batch_layout(tmp_path):
    path = make(tmp_path / "s.h5", skewed_keys(20), boxes_every=2)
    samples = list(SessionStream([path], LoaderConfig(**NO_AUG)))[:6]
    batch = collate(samples)
    n_boxes = sum(len(s["boxes"]) for s in samples)
    assert batch[IMAGE].shape == (6, 3, H, W) and batch[KEYS].shape == (6, 4)
    assert batch[BATCH_IDX].shape == (n_boxes,) and batch[CLS].shape == (n_boxes, 1)
    assert batch[BBOXES].shape == (n_boxes, 4) and (batch[BBOXES] > 0).all() and (batch[BBOXES] <= 1).all()
    assert batch[ANNOTATED].sum() == sum(s[ANNOTATED] for s in samples)
    first = next(i for i, s in enumerate(samples) if len(s["boxes"]))
    k = int((batch[BATCH_IDX] < first).sum())
    assert torch.allclose(batch[BBOXES][k], torch.tensor([12 / W, 18 / H, 16 / W, 24 / H]))


def test_stacks_and_labels_never_cross_a_cut(tmp_path):
    meta = SessionMeta.for_profile(default_profile(), fps=20, width=W, height=H, source="screen")
    path = tmp_path / "cut.h5"
    keys = np.random.default_rng(5).integers(0, 2, (40, 4)).astype(np.uint8)
    times = np.arange(40) / 20
    times[20:] += 3.0  # a pause between frame 19 and frame 20
    with SessionWriter(path, meta) as w:
        for i in range(40):
            w.append(encode(frame_of(i), 95), keys[i], times[i])
    samples = list(SessionStream([path], LoaderConfig(label_offset=2, stack=3, **NO_AUG)))
    newest = sorted(index_of(s[IMAGE][:, :, 6:9]) for s in samples)
    assert newest == [*range(18), *range(20, 38)], "no label from across the cut"
    for s in samples:
        i = index_of(s[IMAGE][:, :, 6:9])
        oldest = index_of(s[IMAGE][:, :, 0:3])
        assert oldest == (max(i - 2, 20) if i >= 20 else max(i - 2, 0)), "the stack repeats, never crosses"
