"""Choosing the frames worth a person's time: every n-th, scene changes, hard braking or steering, and frames
where the current model is unsure — with a minimum gap, so nobody pages through near-duplicates."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np

from crew2.data.session import Session
from crew2.errors import Crew2Error

SELECTED = "selected"  # (N,) uint8 dataset in the session: 1 = worth annotating


def scene_changes(session: Session, threshold: float) -> np.ndarray:
    """(N,) bool: the frame differs from the previous one by more than `threshold` (mean grey level, 0-255)."""
    out = np.zeros(len(session), bool)
    prev = None
    for i in range(len(session)):
        small = cv2.resize(cv2.cvtColor(session.frame(i), cv2.COLOR_RGB2GRAY), (32, 18), interpolation=cv2.INTER_AREA)
        small = small.astype(np.float32)
        out[i] = prev is None or float(np.abs(small - prev).mean()) > threshold
        prev = small
    return out


def hard_inputs(keys: np.ndarray, names: list[str], roles: dict[str, str]) -> np.ndarray:
    """(N,) bool: the brake is pressed, or a steering key goes down or up."""
    out = np.zeros(len(keys), bool)
    if roles.get("brake") in names:
        out |= keys[:, names.index(roles["brake"])] > 0
    for role in ("left", "right"):
        if roles.get(role) in names:
            col = keys[:, names.index(roles[role])].astype(int)
            out[1:] |= np.diff(col) != 0
    return out


def unsure(engine, session: Session, margin: float = 0.15, low: float = 0.2, high: float = 0.5) -> np.ndarray:
    """(N,) bool: a key probability within `margin` of its threshold, or a detection scored between low and high."""
    from crew2.train.shadow import replay

    out = np.zeros(len(session), bool)
    thresholds = np.array(engine.info.thresholds)
    for idx, inputs in replay(session, engine.info.frames):
        for i, pred in zip(idx, engine(inputs), strict=True):
            near = np.abs(pred.key_probs - thresholds) < margin
            scores = pred.boxes[:, 4] if len(pred.boxes) else np.zeros(0)
            out[i] = bool(near.any() or ((scores >= low) & (scores <= high)).any())
    return out


def select(path: Path, every: int | None = None, scene: float | None = None, hard: bool = False, engine=None,
           min_gap: int = 5, budget: int | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Frames chosen by any of the criteria, at least `min_gap` apart, at most `budget`; stored in the session
    as `selected`. Returns the indices and how many each criterion proposed."""
    if not (every or scene or hard or engine):
        raise Crew2Error("choose at least one of --every, --scene, --hard, --unsure")
    if every is not None and every < 1:
        raise Crew2Error(f"--every must be 1 or more, not {every}")
    s = Session(path)
    n = len(s)
    wanted = np.zeros(n, bool)
    counts = {}
    if every:
        crit = np.arange(n) % every == 0
        counts["every"], wanted = int(crit.sum()), wanted | crit
    if scene:
        crit = scene_changes(s, scene)
        counts["scene"], wanted = int(crit.sum()), wanted | crit
    if hard:
        crit = hard_inputs(s.keys(), s.meta.keys, s.meta.roles)
        counts["hard"], wanted = int(crit.sum()), wanted | crit
    if engine is not None:
        crit = unsure(engine, s)
        counts["unsure"], wanted = int(crit.sum()), wanted | crit
    s.close()
    chosen, last = [], -min_gap
    for i in np.flatnonzero(wanted):
        if i - last >= min_gap:
            chosen.append(int(i))
            last = i
    if budget is not None and len(chosen) > budget:  # spread the budget evenly over what was chosen
        chosen = [chosen[int(j)] for j in np.linspace(0, len(chosen) - 1, budget).round()]
    flags = np.zeros(n, np.uint8)
    flags[chosen] = 1
    with h5py.File(path, "r+") as f:
        if SELECTED in f:
            del f[SELECTED]
        f.create_dataset(SELECTED, data=flags)
    return np.array(chosen, int), counts
