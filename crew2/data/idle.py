"""Idleness, defined once: stretches of a session in which no key of the profile is pressed.

A model trained on data with long idle stretches learns that standing still is a safe answer (a model from
2.5 min of play, a good part of it spent waiting, reached validation key F1 0.74 and drove "brake and
stand"). `crew2 data info/stats` report these stretches, and the training loader can trim them.

Before a session's first key press and after its last, nobody is driving yet, or any more, however briefly:
`edge_mask` marks those frames too (a person waits a moment at the start; a model that learnt from 0.7 s of
waiting per track stood 5 s at the start of each one, its speed gauge at zero, as it had only ever seen with
no key pressed).

A stretch is a maximal run of consecutive frames with every key released that lasts at least `min_seconds`.
It never spans a gap in the timestamps (a pause or a discarded stretch shows as one): an interval longer than
`GAP_PERIODS` median frame intervals ends a run and the frame after it starts a new one. A run of n frames
lasts from its first frame's time to its last one's plus one frame interval, so n frames at f fps last n/f s.
"""

from __future__ import annotations

import numpy as np

IDLE_SECONDS = 1.0  # default: released keys for shorter than this are driving (coasting, a lift), not idling
GAP_PERIODS = 3.0  # an interval above this many median frame intervals is a pause or a discard, not a frame


def frame_period(time: np.ndarray) -> float:
    """The median interval between frames, s (0 for fewer than two frames)."""
    return float(np.median(np.diff(time))) if len(time) > 1 else 0.0


def run_seconds(time: np.ndarray, run: tuple[int, int]) -> float:
    """How long the frames [start, stop) of a run (within no gap) last: first to last frame plus one interval."""
    start, stop = run
    return float(time[stop - 1] - time[start]) + frame_period(time)


def idle_runs(keys: np.ndarray, time: np.ndarray, min_seconds: float = IDLE_SECONDS) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of the maximal runs with no key pressed that last `min_seconds` or more.

    keys: (N, K) 0/1, a frame's keys of the profile; time: (N,) seconds, increasing. A run never spans a gap
    in `time` (see the module's docstring)."""
    keys, time = np.asarray(keys), np.asarray(time, np.float64)
    n = len(keys)
    if n == 0:
        return []
    idle = ~keys.reshape(n, -1).astype(bool).any(1)  # (N,)
    period = frame_period(time)
    gap = np.zeros(n, bool)  # gap[i]: a pause or discard lies between frame i - 1 and frame i
    if period > 0:
        gap[1:] = np.diff(time) > GAP_PERIODS * period
    starts = np.flatnonzero(idle & np.r_[True, ~idle[:-1] | gap[1:]])
    ends = np.flatnonzero(idle & np.r_[~idle[1:] | gap[1:], True]) + 1  # the same runs, in the same order
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)
            if time[b - 1] - time[a] + period >= min_seconds - 1e-9]  # 20 frames at 20 fps last 1 s, not 0.999…


def idle_mask(keys: np.ndarray, time: np.ndarray, min_seconds: float = IDLE_SECONDS) -> np.ndarray:
    """(N,) bool: True for the frames inside an idle run (see `idle_runs`)."""
    mask = np.zeros(len(keys), bool)
    for start, stop in idle_runs(keys, time, min_seconds):
        mask[start:stop] = True
    return mask


def edge_mask(keys: np.ndarray) -> np.ndarray:
    """(N,) bool: True for the frames before the first one with a key pressed and after the last one (every
    frame of a session in which no key is ever pressed)."""
    keys = np.asarray(keys)
    pressed = np.flatnonzero(keys.reshape(len(keys), -1).astype(bool).any(1))
    mask = np.ones(len(keys), bool)
    if len(pressed):
        mask[pressed[0]:pressed[-1] + 1] = False
    return mask
