"""A .pt file that is a full pickle can run code when it is loaded: every path that reads a user's .pt refuses it
before anything in it runs, unless the user says --trust-pickle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crew2.record.run import RecordConfig, record

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs a shell command (what a malicious .pt does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload(marker), "train_args": {}}, path)
    return path, marker


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("s")
    for seed in (0, 1):
        record(RecordConfig(source="sim", out=folder / f"s{seed}.h5", frames=40, seed=seed, width=64, height=36))
    return sorted(folder.glob("*.h5"))


def crew2(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crew2", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("verb", ["train", "annotate"])
def test_a_pickle_that_runs_code_is_refused_before_it_runs(verb, evil, sessions, tmp_path):
    path, marker = evil
    args = (["train", *map(str, sessions), "--val-fraction", "0.5", "--out", str(tmp_path / "run"),
             "--epochs", "1", "--max-steps", "1", "--workers", "0", "--pretrained", str(path)] if verb == "train"
            else ["annotate", "auto", str(sessions[0]), "--teacher", str(path)])
    result = crew2(*args)
    assert result.returncode != 0 and not marker.exists(), "nothing in the file ran"
    assert "--trust-pickle" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_trust_pickle_is_what_lets_a_full_pickle_load(evil, tmp_path):
    from crew2.errors import Crew2Error
    from crew2.model.pickles import load_plain

    path, marker = evil
    with pytest.raises(Crew2Error, match="full pickle"):
        load_plain(path)
    assert not marker.exists()
    assert load_plain(path, trust_pickle=True) is None and not marker.exists(), "the caller unpickles, not this"
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    assert torch.equal(load_plain(tmp_path / "plain.pt")["w"], torch.ones(2))
    (tmp_path / "cut.pt").write_bytes((tmp_path / "plain.pt").read_bytes()[:40])
    with pytest.raises(Crew2Error, match="not a readable"):
        load_plain(tmp_path / "cut.pt")
