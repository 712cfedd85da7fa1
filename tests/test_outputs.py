"""No command writes over a file of another kind (a session, a user's file): one line, exit 2, the file unchanged.
Outputs are whole or absent; bad values are refused before any work."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crew2.data.tools import split, write_split
from crew2.errors import Crew2Error
from crew2.outputs import KINDS, check_output, whole
from crew2.record.run import RecordConfig, record

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "weights" / "crew2-sim-t.onnx"


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("s") / "s.h5"
    record(RecordConfig(source="sim", out=path, frames=20, seed=0, width=64, height=36))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def crew2(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crew2", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args", [
    ["drive", str(MODEL), "--source", "sim", "--seconds", "1", "--countdown", "0", "--log", "{s}"],
    ["drive", str(MODEL), "--source", "sim", "--seconds", "1", "--countdown", "0", "--mp4", "{s}"],
    ["export", str(ROOT / "weights" / "crew2-sim-t.pt"), "--out", "{s}"],
    ["data", "split", "{s}", "--out", "{s}"],
    ["sim", "--headless", "--episodes", "1", "--track-km", "0.1", "--json", "{s}"],
])
def test_a_session_is_never_written_over(args, session, tmp_path):
    target = tmp_path / "S.h5"
    shutil.copy(session, target)
    before = digest(target)
    result = crew2(*[a.replace("{s}", str(target)) for a in args])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "does not write over it" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert digest(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["S.h5"]


def test_each_kind_is_written_over_only_by_its_own(session, tmp_path):
    split_file = tmp_path / "split.yaml"
    write_split(split([session], (1.0, 0.0, 0.0), 0), split_file)
    log = tmp_path / "drive.jsonl"
    log.write_text('{"step": 0}\n')
    ours = {"split": split_file, "log": log, "onnx": shutil.copy(MODEL, tmp_path / "m.onnx"),
            "checkpoint": shutil.copy(ROOT / "weights" / "crew2-sim-t.pt", tmp_path / "m.pt")}
    for kind in KINDS:
        with pytest.raises(Crew2Error, match="does not write over"):
            check_output(session, kind)
        for other, path in ours.items():
            if other == kind:
                check_output(path, kind)  # its own kind: written over
            elif (kind, other) != ("json", "log"):  # a one-line log is also a JSON file
                with pytest.raises(Crew2Error, match="does not write over"):
                    check_output(path, kind)
    with pytest.raises(Crew2Error, match="is a folder"):
        check_output(tmp_path, "json")
    with pytest.raises(Crew2Error, match="is a file, not a folder"):
        check_output(log / "x.json", "json")


def test_an_output_is_whole_or_the_old_one_stays(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(OSError), whole(path) as part:
        part.write_text("half")
        raise OSError("disk full")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
    with whole(path) as part:
        part.write_text("new")
    assert path.read_text() == "new" and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("args, message", [
    (["record", "--source", "sim", "--frames", "0"], "--frames must be 1 or more"),
    (["record", "--source", "sim", "--seconds", "-1"], "--seconds more than zero"),
    (["drive", str(MODEL), "--source", "sim", "--countdown", "-5"], "--countdown must be zero or more"),
    (["drive", str(MODEL), "--source", "sim", "--seconds", "-1"], "--seconds more than zero"),
    (["drive", str(MODEL), "--source", "sim", "--threads", "-3"], "--threads must be 1 or more"),
])
def test_values_that_cannot_run_are_refused(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "crew2", *args], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir()), "nothing written"
