"""Annotations inside session files: boxes and their source per frame, edited in place. Every update is
checked before anything is written, and nothing but the boxes and their sources changes."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from crew2.data.session import BOX_SOURCE, BOXES, Session
from crew2.errors import Crew2Error

EDGE = 0.5  # px: boxes may touch the frame's edge, not leave it


def check_boxes(boxes: np.ndarray, width: int, height: int, n_classes: int, where: str) -> np.ndarray:
    """(M, 5) x1, y1, x2, y2, class as float32, or a Crew2Error saying what is wrong and where."""
    b = np.asarray(boxes, np.float32).reshape(-1, 5)
    if len(b) == 0:
        return b
    if (b[:, :4] < -EDGE).any() or (b[:, [0, 2]] > width + EDGE).any() or (b[:, [1, 3]] > height + EDGE).any():
        raise Crew2Error(f"{where}: a box lies outside the {width}x{height} frame")
    if ((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).any():
        raise Crew2Error(f"{where}: a box has no area (x2 <= x1 or y2 <= y1)")
    if ((b[:, 4] < 0) | (b[:, 4] >= n_classes) | (b[:, 4] != np.round(b[:, 4]))).any():
        raise Crew2Error(f"{where}: a box has an unknown class id (the classes are 0..{n_classes - 1})")
    b[:, :4] = np.clip(b[:, :4], 0, [width, height, width, height])
    return b


def write_annotations(path: Path, updates: dict[int, tuple[np.ndarray, int]], class_names: list[str]) -> int:
    """Set frame i's boxes and box source for each (i -> (boxes, source)); all checked first. The session
    learns the class names if it had none; a session with other class names is an error."""
    s = Session(path)
    n, meta = len(s), s.meta
    s.close()
    if meta.class_names and list(meta.class_names) != list(class_names):
        raise Crew2Error(f"{path} is annotated with classes {meta.class_names}, not {class_names}")
    checked = {}
    for i, (boxes, source) in updates.items():
        if not 0 <= i < n:
            raise Crew2Error(f"{path}: frame {i} does not exist (the session has {n} frames)")
        checked[i] = (check_boxes(boxes, meta.width, meta.height, len(class_names), f"{path} frame {i}"), source)
    with h5py.File(path, "r+") as f:
        for i, (boxes, source) in sorted(checked.items()):
            f[BOXES][i] = boxes.reshape(-1)
            f[BOX_SOURCE][i] = source
        if not meta.class_names:
            f.attrs["class_names"] = json.dumps(list(class_names))
    return len(checked)
