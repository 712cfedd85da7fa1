"""Session files: exact round trip, crash safety (SIGKILL), discarding, clear errors on bad files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from crew2.data.session import NOT_ANNOTATED, SIM_TRUTH, Session, SessionMeta, SessionWriter, decode, encode
from crew2.errors import Crew2Error
from crew2.io.control import Control
from crew2.keys import default_profile
from crew2.record.recorder import record_loop
from crew2.record.writer import BackgroundWriter
from crew2.signals import stop_on_signals
from crew2.sim.env import SimEnv
from crew2.sim.sources import SimSource
from crew2.sim.world import SimConfig

ROOT = Path(__file__).resolve().parents[1]


def meta(**kw) -> SessionMeta:
    return SessionMeta.for_profile(default_profile(), fps=20, width=256, height=144, source="sim", **kw)


def sim_frames(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    env = SimEnv(SimConfig(traffic=2.0))
    env.reset(seed=seed)
    frames, boxes = [], []
    for _ in range(n):
        env.step(env.action_of(True, False, False, False))
        frames.append(env.frame.image.copy())
        boxes.append(np.concatenate([env.frame.boxes, env.frame.classes[:, None]], axis=1).astype(np.float32))
    return frames, boxes


def test_round_trip_is_exact_for_keys_times_boxes_and_close_for_frames(tmp_path):
    frames, boxes = sim_frames(30)
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2, (30, 4)).astype(np.uint8)
    times = np.cumsum(rng.uniform(0.04, 0.06, 30))
    path = tmp_path / "s.h5"
    with SessionWriter(path, meta(class_names=["car", "truck", "cone", "barrier"])) as w:
        for i in range(30):
            b = boxes[i] if i % 2 == 0 else None  # odd frames carry no annotation
            w.append(encode(frames[i], 90), keys[i], times[i], b, SIM_TRUTH)
    s = Session(path)
    assert len(s) == 30
    assert np.array_equal(s.keys(), keys) and np.array_equal(s.times(), times)
    assert s.meta.keys == ["w", "a", "s", "d"] and s.meta.roles["throttle"] == "w" and s.meta.fps == 20
    assert s.meta.class_names == ["car", "truck", "cone", "barrier"] and s.meta.format_version == 1
    assert any(len(b) for b in boxes[::2])
    for i in range(30):
        expect = boxes[i] if i % 2 == 0 else np.zeros((0, 5), np.float32)
        assert np.array_equal(s.boxes(i), expect)
        assert s.box_sources()[i] == (SIM_TRUTH if i % 2 == 0 else NOT_ANNOTATED)
        err = np.abs(s.frame(i).astype(int) - frames[i].astype(int))
        assert err.mean() < 3 and s.frame(i).shape == frames[i].shape


def test_sim_recording_stores_expert_labels_and_ground_truth(tmp_path):
    profile = default_profile()
    config = SimConfig(fps=20)
    path = tmp_path / "sim.h5"
    writer = BackgroundWriter(path, meta())
    with SimSource(config, profile, seed=3, noise=1.0) as src:
        stats = record_loop(src, src, writer, fps=20, size=(256, 144), realtime=False, max_frames=200)
    writer.close()
    s = Session(path)
    assert len(s) == stats.frames == 200 and stats.dropped == 0
    assert s.keys()[:, 0].mean() > 0.5  # the expert mostly holds the throttle
    assert np.allclose(np.diff(s.times()), 1 / 20)
    # Replaying the same seed frame by frame gives the same boxes as stored.
    replay = SimSource(config, profile, seed=3, noise=1.0).__enter__()
    for i in range(50):
        replay.grab()
        assert np.allclose(replay.boxes(), s.boxes(i), atol=1e-4)
        assert np.array_equal(replay.read(), s.keys()[i])
    assert (s.box_sources() == SIM_TRUTH).all()


def test_discard_last_seconds(tmp_path):
    path = tmp_path / "d.h5"
    writer = BackgroundWriter(path, meta())
    control = Control()
    with SimSource(SimConfig(), default_profile()) as src:
        def tick(stats):
            if stats.frames == 100 and not stats.discarded:
                control.discard_seconds = 2.0  # 40 frames at 20 fps
        stats = record_loop(src, src, writer, fps=20, size=(256, 144), realtime=False, max_frames=120,
                            control=control, on_tick=tick)
    writer.close()
    assert stats.discarded == 40
    assert len(Session(path)) == 120


def test_ctrl_c_and_sigterm_are_a_stop_request_and_a_second_one_interrupts(default_signals):
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set()  # no exception in the middle of whatever ran
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_signal_the_process_ignores_stays_ignored(default_signals):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and not stop.is_set()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_ctrl_c_ends_the_recording_at_the_next_tick_with_every_frame_written(tmp_path, default_signals):
    path = tmp_path / "c.h5"
    writer = BackgroundWriter(path, meta())
    after = []
    with SimSource(SimConfig(), default_profile()) as src:
        def tick(stats):
            if stats.frames == 30:
                os.kill(os.getpid(), signal.SIGINT)
                after.append(stats.frames)  # what runs when Ctrl+C comes runs to its end
        stats = record_loop(src, src, writer, fps=20, size=(256, 144), realtime=False, max_frames=1000,
                            on_tick=tick)
    writer.close()
    assert after == [30] and stats.frames == 30 and len(Session(path)) == 30
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_killed_recording_leaves_a_readable_file(tmp_path):
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "record", "--source", "sim", "--frames",
                             "100000", "--out", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (path.exists() and path.stat().st_size > 300_000):  # some seconds of frames are in
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the recording did not grow"
        time.sleep(0.2)
    time.sleep(1.3)  # past at least one flush
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    s = Session(path)
    assert len(s) > 20
    assert all(s.frame(i).shape == (144, 256, 3) for i in range(len(s))), "every frame it reports reads"
    assert len(s.keys()) == len(s.times()) == len(s)
    assert np.all(np.diff(s.times()) > 0)


def test_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "keep.h5"
    path.write_bytes(b"precious")
    with pytest.raises(Crew2Error, match="exists already"):
        SessionWriter(path, meta())
    assert path.read_bytes() == b"precious"


def test_bad_files_are_named_in_a_clear_error(tmp_path):
    with pytest.raises(Crew2Error, match="no such file"):
        Session(tmp_path / "missing.h5")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(Crew2Error, match=r"corrupt\.h5: not a readable crew2 session"):
        Session(corrupt)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(Crew2Error, match="not a crew2 session file"):
        Session(other)
    with pytest.raises(Crew2Error, match="not a readable JPEG"):
        decode(np.frombuffer(b"not a jpeg", np.uint8))


def test_ctrl_c_stops_cleanly_and_keeps_the_file(tmp_path):
    path = tmp_path / "interrupted.h5"
    # Ctrl+C as in a terminal: a test run started in the background would hand the recorder SIGINT ignored.
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "record", "--source", "sim", "--frames",
                             "100000", "--out", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (path.exists() and path.stat().st_size > 100_000):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "wrote" in stdout
    s = Session(path)
    assert len(s) > 10 and s.frame(len(s) - 1).shape == (144, 256, 3)


class PictureSource:
    """A capture that returns the given pictures in turn, and a keyboard with nothing down."""

    box_source = NOT_ANNOTATED

    def __init__(self, pictures):
        self.pictures, self.i = pictures, 0

    def grab(self):
        self.i += 1
        return self.pictures[(self.i - 1) % len(self.pictures)]

    def boxes(self):
        return None

    def read(self):
        return np.zeros(4, bool)


@pytest.mark.parametrize("kind, pictures, blank", [
    ("black", [np.zeros((144, 256, 3), np.uint8)], 40),  # 5 s at 20 fps; blank from 3 s on
    ("frozen", [np.full((144, 256, 3), 120, np.uint8)], 0),  # unchanged for 2 s, then 3 s more: 5 s, not yet
    (None, [np.random.default_rng(i).integers(0, 256, (144, 256, 3), dtype=np.uint8) for i in range(5)], 0),
])
def test_recording_says_when_the_picture_shows_nothing(kind, pictures, blank, tmp_path):
    from crew2.record.recorder import blank_warning

    writer = BackgroundWriter(tmp_path / "s.h5", meta())
    ticks = []
    stats = record_loop(PictureSource(pictures), PictureSource(pictures), writer, fps=20, size=(256, 144),
                        realtime=False, max_frames=100, on_tick=lambda s: ticks.append((s.blank, blank_warning(s))))
    writer.close()
    assert stats.blank_frames == blank and len(Session(tmp_path / "s.h5")) == 100, "recorded all the same"
    if kind == "black":
        assert ticks[59][0] is None and ticks[60][0] == "black"
        assert ticks[-1][1].startswith("the picture has been black for 5 s: if the game is running, crew2 does not")
        assert "borderless windowed mode" in ticks[-1][1]
    elif kind == "frozen":
        longer = record_loop(PictureSource(pictures), PictureSource(pictures), BackgroundWriter(tmp_path / "f.h5",
                             meta()), fps=20, size=(256, 144), realtime=False, max_frames=120)
        assert longer.blank == "frozen" and 15 <= longer.blank_frames <= 20, "unchanged 2 s, then warned 3 s later"
    else:
        assert all(b is None for b, _ in ticks)
