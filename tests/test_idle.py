"""Idle stretches (no key pressed for a second or more): found in arrays and in real session files, never across a
pause, reported by `crew2 data info` and `crew2 data stats`, and left out of training with the frames before
the first key press and after the last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crew2.cli import app
from crew2.data.idle import edge_mask, idle_mask, idle_runs
from crew2.data.loader import IMAGE, LoaderConfig, SessionStream
from crew2.data.session import Session, SessionMeta, SessionWriter, encode
from crew2.data.tools import info
from crew2.errors import Crew2Error
from crew2.keys import default_profile

runner = CliRunner()


def test_idle_runs_are_maximal_long_enough_and_broken_by_a_press():
    keys = np.zeros((30, 4), np.uint8)
    keys[12, 2] = 1  # one frame of S splits 30 idle frames into 12 and 17
    time = np.arange(30) / 10
    assert idle_runs(keys, time, 1.0) == [(0, 12), (13, 30)]
    assert idle_runs(keys, time, 1.3) == [(13, 30)], "12 frames at 10 fps last 1.2 s: too short"
    assert idle_runs(keys, time, 1.2) == [(0, 12), (13, 30)], "a run of exactly min_seconds counts"
    assert idle_runs(np.ones((30, 4)), time) == []
    assert idle_runs(np.zeros((0, 4)), np.zeros(0)) == []
    assert idle_mask(keys, time, 1.3).tolist() == [False] * 13 + [True] * 17


def test_a_gap_in_time_breaks_a_run_and_jitter_does_not():
    keys = np.zeros((20, 4), np.uint8)
    paused = np.r_[np.arange(10), np.arange(10, 20) + 30.0] / 10  # 3 s paused between frames 9 and 10
    assert idle_runs(keys, paused, 0.5) == [(0, 10), (10, 20)]
    assert idle_runs(keys, paused, 1.5) == [], "two 1 s halves of a pause are not one 2 s idle stretch"
    jitter = np.cumsum(np.r_[0, np.tile([0.1, 0.1, 0.25], 7)[:19]])  # late frames (2.5 periods) are frames
    assert idle_runs(keys, jitter, 1.5) == [(0, 20)]
    assert not idle_mask(keys, paused, 1.5).any()


def test_the_edges_are_the_frames_before_the_first_key_and_after_the_last():
    keys = np.zeros((10, 4))
    keys[3, 1] = keys[6, 0] = 1
    assert edge_mask(keys).tolist() == [True] * 3 + [False] * 4 + [True] * 3
    assert edge_mask(np.zeros((4, 4))).all() and not edge_mask(np.ones((4, 4))).any()


def write_session(path: Path, keys: np.ndarray | None = None) -> Path:
    """A real 20 fps session: idle 1.5 s at its start and 2 s in the middle, a 0.5 s release, 0.8 s idle on each
    side of a 5 s pause, and exactly 1 s idle at its end."""
    n, fps = 220, 20
    if keys is None:
        keys = np.zeros((n, 4), np.uint8)
        for a, b in ((30, 60), (100, 120), (130, 140), (172, 200)):
            keys[a:b, 0] = 1  # W: driving
    time = np.arange(n) / fps + np.where(np.arange(n) >= 156, 5.0, 0.0)
    meta = SessionMeta.for_profile(default_profile(), fps=fps, width=32, height=18, source="screen")
    with SessionWriter(path, meta) as w:
        for i in range(n):
            w.append(encode(np.full((18, 32, 3), i % 255, np.uint8), 90), keys[i], time[i])
    return path


def test_idle_stretches_of_a_recorded_session_and_the_data_commands(tmp_path):
    path = write_session(tmp_path / "s.h5")
    s = Session(path)
    keys, time = s.keys(), s.times()
    s.close()
    assert idle_runs(keys, time) == [(0, 30), (60, 100), (200, 220)]
    summary = info(path).idle
    assert (summary.no_keys, summary.stretches, summary.idle_frames) == (132, 3, 90)
    assert summary.idle_seconds == pytest.approx(4.5) and summary.longest_seconds == pytest.approx(2.0)
    assert summary.longest_at == "s.h5 at 3.0 s"
    for verb in ("info", "stats"):
        result = runner.invoke(app, ["data", verb, str(path)])
        assert result.exit_code == 0, result.output
        assert ("no key pressed in 60.0% of frames; 3 idle stretch(es) of 1 s or more: 4.5 s, 40.9% of frames; "
                "longest 2.0 s (s.h5 at 3.0 s)") in result.output
        row = next(line for line in result.output.splitlines() if "s.h5" in line and "%" in line)
        cells = [c.strip() for c in row.split("│")[1:-1]]  # session, no key, stretches, idle time, share, longest
        assert cells == ["s.h5", "60.0%", "3", "4.5 s", "40.9%", "2.0 s"], row


def loaded_frames(path: Path, trim_idle: float) -> list[int]:
    """The frame indices one epoch of the training loader yields (each frame's grey level is its index), each
    labelled with its own keys (a screen session's default offset is test_loader's)."""
    ds = SessionStream([path], LoaderConfig(augment=False, trim_idle=trim_idle, chunk=16, buffer=1, label_offset=0))
    return sorted(round(float(sample[IMAGE].mean())) for sample in ds)


def test_training_leaves_out_idle_stretches_and_the_wait_before_the_first_key(tmp_path):
    path = write_session(tmp_path / "s.h5")
    # Idle 0-29 (the start), 60-99 and 200-219 (the end) go; the 0.5 s release and the 0.8 s either side of the
    # pause are driving and stay.
    assert loaded_frames(path, 1.0) == list(range(30, 60)) + list(range(100, 200))
    assert loaded_frames(path, 0) == list(range(220)), "trim_idle 0 keeps every frame"
    keys = np.zeros((220, 4), np.uint8)
    keys[10:215, 0] = 1  # a 0.5 s wait at the start, too short for an idle stretch, and 0.25 s at the end
    brief = write_session(tmp_path / "brief.h5", keys)
    assert loaded_frames(brief, 1.0) == list(range(10, 215))
    with pytest.raises(Crew2Error, match="nothing to learn from in 1 session"):
        SessionStream([write_session(tmp_path / "none.h5", np.zeros((220, 4), np.uint8))], LoaderConfig())
