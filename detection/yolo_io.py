"""YOLO datasets: sessions' annotated frames out to images/ labels/ data.yaml (Ultralytics' layout, so
`yolo detect train data=DIR/data.yaml` works on it as is), and YOLO labels back into the sessions.

Images are the stored JPEG bytes, copied (never re-encoded); they are named `<session>_<frame>.jpg`, which is
how labels find their frame on the way back. Coordinates are written with 10 significant digits and read
back in float64, so a round trip gives the same float32 boxes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import yaml

from crew2.data.session import FRAMES, NOT_ANNOTATED, REVIEWED, Session
from crew2.detection.store import write_annotations
from crew2.errors import Crew2Error

NAME = re.compile(r"^(?P<session>.+)_(?P<frame>\d{6})$")


def export_yolo(splits: dict[str, list[Path]], out: Path, class_names: list[str]) -> dict[str, int]:
    """Write every annotated frame of the sessions of each split; returns frames written per split.
    A frame annotated with no boxes gets an empty label file: it says 'no obstacles here'."""
    from ultralytics.utils.ops import xyxy2xywhn

    counts = {}
    stems = [p.stem for paths in splits.values() for p in paths]
    if len(set(stems)) != len(stems):
        raise Crew2Error("two sessions share a file name: image names would clash, rename one")
    for split, paths in splits.items():
        if not paths:
            continue
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        counts[split] = 0
        for path in paths:
            s = Session(path)
            if s.meta.class_names and list(s.meta.class_names) != list(class_names):
                raise Crew2Error(f"{path} is annotated with classes {s.meta.class_names}, not {class_names}")
            w, h = s.meta.width, s.meta.height
            for i in np.flatnonzero(s.box_sources() != NOT_ANNOTATED):
                name = f"{path.stem}_{i:06d}"
                (out / "images" / split / f"{name}.jpg").write_bytes(s.f[FRAMES][i].tobytes())
                boxes = s.boxes(int(i)).astype(np.float64)
                lines = [f"{int(c)} " + " ".join(f"{v:.10g}" for v in xywh)
                         for c, xywh in zip(boxes[:, 4], xyxy2xywhn(boxes[:, :4], w, h), strict=True)]
                (out / "labels" / split / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
                counts[split] += 1
            s.close()
    written = {split: f"images/{split}" for split, paths in splits.items() if paths}
    data = {"path": str(out.resolve()), "train": written.get("train", next(iter(written.values()), "images/train")),
            "val": written.get("val", written.get("train", "images/train")),  # no val sessions: validate on train
            "names": dict(enumerate(class_names))}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return counts


def read_label(path: Path, width: int, height: int) -> np.ndarray:
    """A YOLO label file -> (M, 5) pixel boxes x1, y1, x2, y2, class (float32)."""
    from ultralytics.utils.ops import xywhn2xyxy

    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            c, cx, cy, bw, bh = int(parts[0]), *(float(v) for v in parts[1:5])
        except (ValueError, IndexError):
            raise Crew2Error(f"{path}:{n}: not a YOLO label line ('class cx cy w h', normalised)") from None
        rows.append([cx, cy, bw, bh, c])
    rows = np.array(rows, np.float64).reshape(-1, 5)
    return np.hstack([xywhn2xyxy(rows[:, :4], width, height), rows[:, 4:]]).astype(np.float32)


def import_yolo(labels: Path, sessions: list[Path], class_names: list[str], source: int = REVIEWED) -> dict[str, int]:
    """Read YOLO label files (from crew2's export, or CVAT/Label Studio/Roboflow exports that kept the image
    names) back into the sessions they came from. Every file is checked before any session is written."""
    by_stem = {p.stem: p for p in sessions}
    files = sorted(labels.rglob("*.txt")) if labels.is_dir() else [labels]
    updates: dict[Path, dict[int, tuple[np.ndarray, int]]] = {}
    sizes = {}
    for file in files:
        if file.name == "classes.txt":  # some tools write the class list next to the labels
            continue
        m = NAME.match(file.stem)
        if m is None or m["session"] not in by_stem:
            raise Crew2Error(f"{file}: its image is not a frame of the given sessions (expected names like "
                             f"{next(iter(by_stem), 'session')}_000123.txt)")
        path = by_stem[m["session"]]
        if path not in sizes:
            s = Session(path)
            sizes[path] = (s.meta.width, s.meta.height, len(s))
            s.close()
        w, h, n = sizes[path]
        frame = int(m["frame"])
        if frame >= n:
            raise Crew2Error(f"{file}: {path.name} has no frame {frame} (it has {n})")
        updates.setdefault(path, {})[frame] = (read_label(file, w, h), source)
    from crew2.detection.store import check_boxes

    for path, frames in updates.items():  # check everything before writing anything
        for i, (boxes, _) in frames.items():
            check_boxes(boxes, sizes[path][0], sizes[path][1], len(class_names), f"{path.name} frame {i}")
    return {path.name: write_annotations(path, frames, class_names) for path, frames in updates.items()}
