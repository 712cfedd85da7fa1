"""Pre-labelling with any Ultralytics detector the user has (a COCO model, say): its classes are mapped to
crew2's obstacle classes by the dataset YAML's `teacher` table; boxes are stored as TEACHER until reviewed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from crew2.data.session import REVIEWED, TEACHER, Session
from crew2.detection.classes import DatasetSpec
from crew2.detection.store import write_annotations
from crew2.errors import Crew2Error
from crew2.model.pickles import load_plain


def load_teacher(path: str | Path, trust_pickle: bool = False):
    """An Ultralytics model from a local file; never downloads (a missing file is an error here). An Ultralytics .pt
    is a full pickle, which can run code when loaded: it is read only with `trust_pickle`."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    path = Path(path)
    if not path.is_file():
        raise Crew2Error(f"{path}: no such model file (crew2 never downloads weights: give a local .pt)")
    if load_plain(path, trust_pickle) is not None:
        raise Crew2Error(f"{path}: plain tensors, not an Ultralytics model (a crew2 checkpoint is no teacher)")
    from ultralytics import YOLO

    try:
        return YOLO(str(path), task="detect")
    except Exception as e:  # Ultralytics raises many types for files that are not its checkpoints
        raise Crew2Error(f"{path}: not an Ultralytics detection model ({e})") from e


def class_map(teacher_names: dict[int, str], spec: DatasetSpec) -> dict[int, int]:
    """Teacher class id -> crew2 class id: the teacher classes the dataset YAML's `teacher:` table maps, and those
    named as crew2's own (a detector trained on `crew2 annotate export --yolo` needs no table)."""
    mapping = {i: spec.names.index((spec.teacher or {}).get(name, name)) for i, name in teacher_names.items()
               if name in (spec.teacher or {}) or name in spec.names}
    if not mapping:
        raise Crew2Error(f"none of the teacher's classes ({', '.join(list(teacher_names.values())[:8])}, ...) is "
                         f"one of crew2's ({', '.join(spec.names)}) or in the dataset file's 'teacher:' table")
    return mapping


def prelabel(model, paths: list[Path], spec: DatasetSpec, conf: float = 0.4, frames: str = "all",
             batch: int = 16, on_frames: Callable[[int], None] | None = None) -> dict[str, int]:
    """Label the frames of each session with the teacher (all frames, or only `selected` ones), leaving
    frames a person already reviewed alone. Returns frames labelled per session; `on_frames(n)` follows the
    frames gone through, labelled or left alone."""
    mapping = class_map(model.names, spec)
    done = {}
    for path in paths:
        s = Session(path)
        todo = [i for i in range(len(s)) if s.box_sources()[i] != REVIEWED
                and (frames == "all" or ("selected" in s.f and s.f["selected"][i]))]
        size = max(32, -(-max(s.meta.width, s.meta.height) // 32) * 32)  # the frame's own size, not 640
        updates = {}
        for start in range(0, len(todo), batch):
            idx = todo[start: start + batch]
            images = [np.ascontiguousarray(s.frame(i)[:, :, ::-1]) for i in idx]  # Ultralytics takes BGR
            for i, result in zip(idx, model.predict(images, conf=conf, imgsz=size, verbose=False), strict=True):
                xyxy = result.boxes.xyxy.cpu().numpy()
                cls = result.boxes.cls.cpu().numpy().astype(int)
                keep = [j for j, c in enumerate(cls) if c in mapping]
                boxes = np.array([[*xyxy[j], mapping[cls[j]]] for j in keep], np.float32).reshape(-1, 5)
                boxes[:, :4] = np.clip(boxes[:, :4], 0, [s.meta.width, s.meta.height] * 2)
                updates[i] = (boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])], TEACHER)
            if on_frames is not None:
                on_frames(len(idx))
        if on_frames is not None:
            on_frames(len(s) - len(todo))  # the frames left alone
        s.close()
        done[path.name] = write_annotations(path, updates, spec.names) if updates else 0
    return done
