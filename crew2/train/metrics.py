"""Key metrics (pure numpy): per-key precision/recall/F1, exact match of the key set, threshold calibration."""

from __future__ import annotations

import numpy as np

GRID = np.linspace(0.02, 0.98, 49)  # candidate decision thresholds


def f1(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-column F1 of boolean predictions against 0/1 labels, both (N, K)."""
    tp = (pred & (labels > 0.5)).sum(0)
    fp = (pred & (labels <= 0.5)).sum(0)
    fn = (~pred & (labels > 0.5)).sum(0)
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def calibrate(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K,) per-key threshold with the best F1 on this data (validation data, never training data)."""
    scores = np.stack([f1(probs >= t, labels) for t in GRID])  # (T, K)
    return GRID[scores.argmax(0)]


def key_metrics(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, keys: list[str]) -> dict[str, float]:
    """Per-key precision, recall and F1, their means, exact match of the whole key set, and the F1 of the
    best constant predictor (always press every key) as the baseline a model has to beat."""
    pred = probs >= thresholds
    truth = labels > 0.5
    tp = (pred & truth).sum(0)
    precision = tp / np.maximum(pred.sum(0), 1)
    recall = tp / np.maximum(truth.sum(0), 1)
    scores = f1(pred, labels)
    out: dict[str, float] = {}
    for i, k in enumerate(keys):
        out.update({f"{k}_precision": float(precision[i]), f"{k}_recall": float(recall[i]),
                    f"{k}_f1": float(scores[i])})
    out["f1"] = float(scores.mean())
    out["exact_match"] = float((pred == truth).all(1).mean())
    out["constant_f1"] = float(f1(np.ones_like(truth), labels).mean())
    return out


def confusion(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(K, 2, 2) per key: rows truth (released, pressed), columns prediction (released, pressed)."""
    pred, truth = probs >= thresholds, labels > 0.5
    return np.stack([[[(~t & ~p).sum(), (~t & p).sum()], [(t & ~p).sum(), (t & p).sum()]]
                     for t, p in zip(truth.T, pred.T, strict=True)])
