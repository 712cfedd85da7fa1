"""crew2 data: inventory, key statistics, validation, splits by session, merging, video."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import yaml

from crew2.data.session import Session, SessionMeta, SessionWriter, encode
from crew2.data.tools import key_combinations, merge, read_split, split, validate, write_mp4
from crew2.errors import Crew2Error
from crew2.keys import default_profile

ROOT = Path(__file__).resolve().parents[1]


def make_session(path: Path, n: int, keys: np.ndarray | None = None, boxes=None, driver: str = "human") -> Path:
    meta = SessionMeta.for_profile(default_profile(), fps=20, width=64, height=36, source="sim",
                                   class_names=["car", "truck"], driver=driver)
    rng = np.random.default_rng(n)
    keys = keys if keys is not None else rng.integers(0, 2, (n, 4))
    with SessionWriter(path, meta) as w:
        for i in range(n):
            frame = np.full((36, 64, 3), (i * 7) % 255, np.uint8)
            w.append(encode(frame, 90), keys[i], i / 20, None if boxes is None else boxes[i])
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, timeout=120)


def test_split_is_by_session_reproducible_and_near_its_fractions(tmp_path):
    paths = [make_session(tmp_path / f"s{i}.h5", 20 + 5 * i) for i in range(12)]
    a = split(paths, (0.7, 0.15, 0.15), seed=1)
    b = split(paths, (0.7, 0.15, 0.15), seed=1)
    c = split(paths, (0.7, 0.15, 0.15), seed=2)
    assert a == b and a != c
    everything = [p for ps in a.values() for p in ps]
    assert sorted(everything) == sorted(paths) and len(set(everything)) == len(paths), "each session once"
    frames = {name: sum(len(Session(p)) for p in ps) for name, ps in a.items()}
    total = sum(frames.values())
    assert abs(frames["train"] / total - 0.7) < 0.1 and all(len(ps) >= 1 for ps in a.values())
    with pytest.raises(Crew2Error, match="cannot fill 3 splits"):
        split(paths[:2], (0.7, 0.15, 0.15), seed=0)
    with pytest.raises(Crew2Error, match="add up to 1"):
        split(paths, (0.7, 0.5, 0.15), seed=0)


def test_corrections_always_train(tmp_path):
    paths = [make_session(tmp_path / f"s{i}.h5", 30) for i in range(4)]
    fixes = [make_session(tmp_path / f"fix{i}.h5", 10, driver="correction") for i in range(3)]
    for seed in range(5):
        parts = split(paths + fixes, (0.5, 0.5, 0.0), seed=seed)
        assert set(fixes) <= set(parts["train"]) and len(parts["val"]) == 2, "the others split as asked"
    with pytest.raises(Crew2Error, match="corrections only train"):
        split(paths[:1] + fixes, (0.5, 0.5, 0.0), seed=0)


def test_split_cli_writes_yaml_that_works_from_anywhere(tmp_path, monkeypatch):
    for i in range(4):
        make_session(tmp_path / "sessions" / f"s{i}.h5", 30)
    out = tmp_path / "datasets" / "mine.yaml"  # a folder that does not exist yet
    result = cli("data", "split", str(tmp_path / "sessions"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    parts = yaml.safe_load(out.read_text())
    assert sum(len(v) for v in parts.values()) == 4 and set(parts) == {"train", "val", "test"}
    assert all(p.startswith("../sessions/") for ps in parts.values() for p in ps), "relative to the split file"
    assert "WARNING: sessions split whole give" in result.stdout  # 4 equal sessions cannot give 70/15/15
    monkeypatch.chdir(tmp_path / "sessions")  # read from another working directory
    read = read_split(Path("../datasets/mine.yaml"))
    assert sorted(p.resolve() for ps in read.values() for p in ps) == sorted((tmp_path / "sessions").glob("*.h5"))
    (tmp_path / "sessions" / "s0.h5").unlink()
    with pytest.raises(Crew2Error, match=r"1 session\(s\) not found"):
        read_split(Path("../datasets/mine.yaml"))


def test_key_combinations_count_frames(tmp_path):
    keys = np.array([[1, 0, 0, 0]] * 6 + [[1, 1, 0, 0]] * 3 + [[0, 0, 0, 0]])
    path = make_session(tmp_path / "k.h5", 10, keys)
    assert key_combinations([path]) == {"W": 6, "W+A": 3, "none": 1}


def test_validate_finds_problems_and_passes_sound_files(tmp_path):
    good = make_session(tmp_path / "good.h5", 10)
    assert validate(good) == []
    boxes = [np.zeros((0, 5))] * 9 + [np.array([[10, 10, 500, 20, 0]])]
    assert any("outside the frame" in p for p in validate(make_session(tmp_path / "box.h5", 10, boxes=boxes)))
    boxes = [np.zeros((0, 5))] * 9 + [np.array([[10, 10, 20, 20, 7]])]
    assert any("unknown class" in p for p in validate(make_session(tmp_path / "cls.h5", 10, boxes=boxes)))
    broken = make_session(tmp_path / "broken.h5", 10)
    with h5py.File(broken, "a") as f:
        f["frames"][4] = np.frombuffer(b"garbage", np.uint8)
    assert any("do not decode" in p for p in validate(broken))
    flipped = make_session(tmp_path / "flipped.h5", 10)
    with h5py.File(flipped, "a") as f:
        blob = f["frames"][6].copy()
        blob[len(blob) // 2: len(blob) // 2 + 40] ^= 0x5A  # inside the entropy-coded data: still decodes
        f["frames"][6] = blob
    assert Session(flipped).frame(6).shape == (36, 64, 3), "the damage still decodes"
    assert any("checksum" in p and "first at 6" in p for p in validate(flipped))
    (tmp_path / "junk.h5").write_bytes(b"junk")
    assert "not a readable crew2 session" in validate(tmp_path / "junk.h5")[0]
    result = cli("data", "validate", str(good), str(broken))
    assert result.returncode == 1 and "ok" in result.stdout and "broken.h5" in result.stdout
    long = make_session(tmp_path / "long.h5", 200)
    (tmp_path / "cut.h5").write_bytes(long.read_bytes()[: long.stat().st_size // 3])  # a truncated copy
    assert any("truncated" in p for p in validate(tmp_path / "cut.h5"))
    result = cli("data", "validate", str(tmp_path / "cut.h5"), str(tmp_path / "junk.h5"), str(good))
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert [line.split()[0] for line in lines] == ["bad", "bad", "ok"], "every file checked and reported"


def test_merge_concatenates_without_reencoding(tmp_path):
    a = make_session(tmp_path / "a.h5", 10)
    b = make_session(tmp_path / "b.h5", 7)
    n = merge([a, b], tmp_path / "m.h5")
    m, sa, sb = Session(tmp_path / "m.h5"), Session(a), Session(b)
    assert n == len(m) == 17
    assert np.array_equal(m.keys(), np.concatenate([sa.keys(), sb.keys()]))
    assert np.array_equal(m.f["frames"][12], sb.f["frames"][2]), "the same JPEG bytes"
    assert np.all(np.diff(m.times()) > 0)
    other = tmp_path / "other.h5"
    meta = SessionMeta.for_profile(default_profile(), fps=20, width=32, height=18, source="sim")
    with SessionWriter(other, meta) as w:
        w.append(encode(np.zeros((18, 32, 3), np.uint8), 90), np.zeros(4), 0.0)
    with pytest.raises(Crew2Error, match="only like sessions merge"):
        merge([a, other], tmp_path / "bad.h5")


def test_merge_refuses_a_session_still_being_recorded(tmp_path):
    live = tmp_path / "live.h5"
    script = f"""
import sys, time
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
from tests.test_data_tools import SessionMeta, SessionWriter, default_profile, encode
meta = SessionMeta.for_profile(default_profile(), fps=20, width=64, height=36, source="sim")
with SessionWriter({str(live)!r}, meta, flush_every=0.2) as w:
    for i in range(10**6):
        w.append(encode(np.full((36, 64, 3), i % 255, np.uint8), 90), np.zeros(4), i / 20)
        if sys.stdin.readline().strip() == "stop":
            break
"""
    writer = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, text=True)
    try:
        for _ in range(30):
            writer.stdin.write("more\n")
            writer.stdin.flush()
            time.sleep(0.02)
        time.sleep(0.5)
        with pytest.raises(Crew2Error, match="still being recorded"):
            merge([live], tmp_path / "m.h5")
        assert not (tmp_path / "m.h5").exists()
    finally:
        writer.communicate("stop\n", timeout=30)
    assert merge([live], tmp_path / "m.h5") == 31, "once closed, every frame merges"


def test_mp4_has_every_frame(tmp_path):
    path = make_session(tmp_path / "v.h5", 12)
    assert write_mp4(path, tmp_path / "v.mp4", scale=2) == 12
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ok, frame = cap.read()
    assert ok and frame.shape == (72, 128, 3)
    import av

    with av.open(str(tmp_path / "v.mp4")) as video:  # H.264, which browsers and GitHub play (not MPEG-4 Part 2)
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"


def test_data_commands_on_missing_or_corrupt_files_are_one_line(tmp_path):
    result = cli("data", "info", str(tmp_path / "nothing.h5"))
    assert result.returncode == 2 and "no such file or folder" in result.stderr
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    result = cli("data", "stats", str(tmp_path / "bad.h5"))
    assert result.returncode == 2 and "bad.h5: not a readable crew2 session" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_view_needs_a_display_and_plays_in_a_window(tmp_path, xvfb):
    import os
    import time

    from crew2 import x11

    path = make_session(tmp_path / "v.h5", 30)  # 1.5 s at 20 fps
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "data", "view", str(path)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "use --mp4" in result.stderr
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "data", "view", str(path)],
                            env={**env, "DISPLAY": xvfb}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dpy = x11.open_display(xvfb)
    try:
        deadline, seen = time.monotonic() + 20, False
        while time.monotonic() < deadline and proc.poll() is None and not seen:
            try:
                rect = x11.window_rect(dpy, x11.find_window(dpy, "crew2 data view: v.h5"))
                seen = rect.width >= 64 * 3 and rect.height >= 36 * 3
            except Crew2Error:
                time.sleep(0.1)
        _, stderr = proc.communicate(timeout=30)
    finally:
        dpy.close()
    assert seen, "the viewer window opened, at least 3x the frame size"
    assert proc.returncode == 0, stderr
