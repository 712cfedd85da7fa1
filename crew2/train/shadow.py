"""Offline evaluation ("shadow mode"): replay recorded sessions through a model and compare what it would
have pressed with what the human pressed, frame by frame, and its boxes with the annotated ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from crew2.data.loader import segments
from crew2.data.session import NOT_ANNOTATED, Session
from crew2.data.tools import overlay
from crew2.detection.metrics import DetectionScore
from crew2.errors import Crew2Error
from crew2.io.band import Band
from crew2.model.engine import Engine, Prediction
from crew2.train.metrics import confusion, key_metrics
from crew2.video import Mp4Writer


@dataclass
class ShadowResult:
    metrics: dict[str, float]
    confusion: np.ndarray  # (K, 2, 2)
    frames: int


def replay(session: Session, stack: int, batch: int = 32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices (B,), inputs (B, H, W, 3 * stack)) in recording order; stacks never reach across a cut."""
    seg = segments(session.times(), session.meta.fps)
    history: list[np.ndarray] = []
    idx, inputs = [], []
    for i in range(len(session)):
        frame = session.frame(i)
        if i > 0 and seg[i] != seg[i - 1]:
            history = []
        history = ([*history, frame] if history else [frame] * stack)[-stack:]
        idx.append(i)
        inputs.append(np.concatenate(history, axis=2))
        if len(idx) == batch:
            yield np.array(idx), np.stack(inputs)
            idx, inputs = [], []
    if idx:
        yield np.array(idx), np.stack(inputs)


def shadow(engine: Engine, paths: list[Path], mp4: Path | None = None, label_offset: int = 0,
           on_frames: Callable[[int], None] | None = None, rules: Path | None = None) -> ShadowResult:
    """Replay the sessions through the model (`on_frames(n)` after each batch of n frames: progress); the
    obstacle recall is counted at the lowest score the crash-prevention `rules` act on."""
    from crew2.drive.fusion import Rules

    info = engine.info
    thresholds = np.array(info.thresholds)
    probs, labels = [], []
    score = DetectionScore(info.class_names, Rules.load(rules).min_score, band=Band.of(info.band),
                           frame_size=info.frame_size)
    writer = None
    try:
        for path in paths:
            s = Session(path)
            if s.meta.keys != info.keys:
                raise Crew2Error(f"{path} records keys {s.meta.keys}, the model presses {info.keys}")
            if (s.meta.width, s.meta.height) != info.size or s.meta.band != info.band:
                raise Crew2Error(f"{path} holds {s.meta.width}x{s.meta.height} frames (horizon band {s.meta.band}), "
                                 f"the model takes {info.size[0]}x{info.size[1]} (band {info.band})")
            keys, sources = s.keys(), s.box_sources()
            for idx, inputs in replay(s, info.frames):
                preds = engine(inputs)
                if on_frames is not None:
                    on_frames(len(idx))
                for j, (i, pred) in enumerate(zip(idx, preds, strict=True)):
                    if i + label_offset >= len(s):
                        continue
                    probs.append(pred.key_probs)
                    labels.append(keys[i + label_offset])
                    if sources[i] != NOT_ANNOTATED:
                        truth = s.boxes(int(i))
                        score.add(torch.from_numpy(pred.boxes), torch.from_numpy(truth[:, :4]),
                                  torch.from_numpy(truth[:, 4]))
                    if mp4 is not None:
                        image = side_by_side(inputs[j][:, :, -3:], info.keys, keys[i], pred,
                                             thresholds, info.class_names)
                        writer = writer or Mp4Writer(mp4, s.meta.fps)
                        writer.write(image)
            s.close()
    finally:
        if writer is not None:
            writer.close()
    if not probs:
        raise Crew2Error("no frames to evaluate")
    p, y = np.stack(probs), np.stack(labels).astype(np.float32)
    metrics = key_metrics(p, y, thresholds, info.keys)
    metrics.update(score.result())
    return ShadowResult(metrics, confusion(p, y, thresholds), len(p))


def side_by_side(frame: np.ndarray, keys: list[str], human: np.ndarray, pred: Prediction, thresholds: np.ndarray,
                 class_names: list[str], scale: int = 3) -> np.ndarray:
    """Left: the frame with the human's keys and the model's boxes. Right: the model's key probabilities as
    bars with their thresholds; a bar turns green where the model would press the key (BGR image)."""
    left = overlay(frame, keys, human, pred.boxes[:, [0, 1, 2, 3, 5]], class_names, scale)
    h = left.shape[0]
    panel = np.full((h, 220, 3), 30, np.uint8)
    cv2.putText(panel, "model", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    for j, (k, prob, t) in enumerate(zip(keys, pred.key_probs, thresholds, strict=True)):
        y = 50 + j * 34
        pressed = prob >= t
        cv2.putText(panel, k.upper(), (10, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        cv2.rectangle(panel, (40, y), (200, y + 20), (70, 70, 70), -1)
        cv2.rectangle(panel, (40, y), (40 + int(160 * prob), y + 20), (40, 200, 40) if pressed else (60, 130, 230), -1)
        cv2.line(panel, (40 + int(160 * t), y - 3), (40 + int(160 * t), y + 23), (255, 255, 255), 2)
        if human[j]:
            cv2.circle(panel, (208, y + 10), 5, (40, 200, 40), -1)
    return np.concatenate([left, panel], axis=1)
