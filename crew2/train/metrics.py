"""Key metrics (pure numpy): per-key precision/recall/F1, exact match of the key set, threshold calibration,
and the verdict on a model that learnt nothing useful."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GRID = np.linspace(0.02, 0.98, 49)  # candidate decision thresholds
# "Clearly above" the constant baseline: a model whose validation key F1 beats always pressing every key by
# less than this has not learnt when to press. Seen on a third-party game: F1 equal to the baseline, every
# threshold calibrated to 0.02 (the model pressed everything all the time), and no warning.
MARGIN = 0.05
RARE = 0.01  # a key pressed in fewer validation frames than this cannot be calibrated: pressed only when sure, and no
# collapse warning
EXTREME = 0.05  # a calibrated threshold <= EXTREME or >= 1 - EXTREME has collapsed: the key is (almost) always
# pressed, or (almost) never


def f1(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-column F1 of boolean predictions against 0/1 labels, both (N, K)."""
    tp = (pred & (labels > 0.5)).sum(0)
    fp = (pred & (labels <= 0.5)).sum(0)
    fn = (~pred & (labels > 0.5)).sum(0)
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def calibrate(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K,) per-key threshold with the best F1 on this data (validation data, never training data). A key with no
    best F1 (0 at every threshold: never pressed in it, or pressed only where the model gives it no chance) gets
    the highest, pressed only when sure. The lowest, the first of the ties, pressed it at p = 0.02: a driver that
    never braked would brake (CarRacing: the expert braked in 1 of 476 validation frames, crew2 at p >= 0.02).
    So does a key pressed in fewer than `RARE` of the frames: a best F1 over a handful of presses is chance
    (CarRacing: the expert braked in 2 of 1,163 frames; calibrated to 0.14 for an F1 of 0.03, crew2 braked in 12-17%
    of its frames and scored 0.41-0.67 of the expert's, at 0.98 0.73-0.85)."""
    scores = np.stack([f1(probs >= t, labels) for t in GRID])  # (T, K)
    learnt = (scores.max(0) > 0) & ((labels > 0.5).sum(0) >= RARE * len(labels))
    return np.where(learnt, GRID[scores.argmax(0)], GRID[-1])


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
    pressed = truth.mean(0) if len(truth) else np.zeros(truth.shape[1])
    for i, k in enumerate(keys):
        out.update({f"{k}_precision": float(precision[i]), f"{k}_recall": float(recall[i]),
                    f"{k}_f1": float(scores[i]), f"{k}_pressed": float(pressed[i])})
    out["f1"] = float(scores.mean())
    out["exact_match"] = float((pred == truth).all(1).mean())
    # Per key 2p/(1+p), p the key's share of frames pressed; averaged over keys like the F1 above.
    out["constant_f1"] = float(f1(np.ones_like(truth), labels).mean())
    return out


@dataclass(frozen=True)
class Verdict:
    """Whether a model's key predictions look learnt, from its validation metrics and calibrated thresholds."""

    f1: float
    constant_f1: float
    collapsed: dict[str, float]  # key -> its calibrated threshold, where that collapsed to an extreme
    pressed: dict[str, float] = field(default_factory=dict)  # key -> share of validation frames it is down in

    @property
    def margin(self) -> float:
        return self.f1 - self.constant_f1

    @property
    def no_better_than_constant(self) -> bool:
        return not self.margin >= MARGIN  # a NaN F1 is no better either

    @property
    def rare(self) -> list[str]:
        """Keys pressed in too few validation frames to calibrate on (`RARE`): `calibrate` presses them only when
        sure."""
        return [k for k, share in self.pressed.items() if share < RARE]

    @property
    def suspect(self) -> bool:
        return self.no_better_than_constant or bool(self.collapsed)

    def metrics(self) -> dict[str, float]:
        """The verdict as numbers for the epoch's metrics (and metrics.csv): benchmarks read these."""
        return {"f1_over_constant": float(self.margin), "collapsed_thresholds": float(len(self.collapsed)),
                "suspect": float(self.suspect)}

    def warning(self) -> str | None:
        """A loud sentence on what is wrong, what it means and what to try; None when nothing is."""
        if not self.suspect:
            return None
        collapsed = ", ".join(
            f"{k.upper()} {t:.2f}" + (f" (down in {self.pressed[k]:.0%} of validation frames)" if k in self.pressed
                                      else "") for k, t in self.collapsed.items())
        if self.no_better_than_constant:
            text = (f"WARNING: this model looks useless: validation key F1 {self.f1:.3f} is not clearly above "
                    f"always pressing every key ({self.constant_f1:.3f}; it should beat that by {MARGIN:g} or more)"
                    + (f", and thresholds collapsed to the extremes: {collapsed}" if collapsed else "")
                    + ". It has not learnt when to press the keys: driving, it will hold them down, never press "
                    "them, or brake and stand.")
        else:
            text = (f"WARNING: calibrated thresholds collapsed to the extremes: {collapsed}. The model presses "
                    "these keys (almost) always or (almost) never, whatever the screen shows.")
        return (text + " Try more or more varied driving data, and check `crew2 data stats` for frames with no "
                "key pressed and long idle stretches.")


def judge(val: dict[str, float], thresholds: np.ndarray | list[float], keys: list[str]) -> Verdict:
    """The verdict on a model from `key_metrics`' output on validation data and its calibrated thresholds."""
    pressed = {k: float(val[f"{k}_pressed"]) for k in keys if f"{k}_pressed" in val}
    # A key the validation data (almost) never presses is calibrated to press only when sure: the data, not the
    # model (CarRacing's expert braked in 0.1% of its frames)
    collapsed = {k: float(t) for k, t in zip(keys, thresholds, strict=True)
                 if (t <= EXTREME or t >= 1 - EXTREME) and pressed.get(k, 1.0) >= RARE}
    return Verdict(float(val["f1"]), float(val["constant_f1"]), collapsed, pressed)


def confusion(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(K, 2, 2) per key: rows truth (released, pressed), columns prediction (released, pressed)."""
    pred, truth = probs >= thresholds, labels > 0.5
    return np.stack([[[(~t & ~p).sum(), (~t & p).sum()], [(t & ~p).sum(), (t & p).sum()]]
                     for t, p in zip(truth.T, pred.T, strict=True)])
