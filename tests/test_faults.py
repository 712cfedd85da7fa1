"""Bad files, paths, disks and arguments, run through the real command line in-process: each ends in one line
on stderr and a non-zero exit, never a traceback, and leaves what was already saved as it was."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from crew2.cli import app
from crew2.data.session import RESERVE, Session
from crew2.data.tools import validate
from tests.test_data_tools import ROOT, make_session

SHIPPED = ROOT / "weights" / "crew2-sim-t.pt"


def run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"crew2 {' '.join(map(str, args))} raised {result.exception!r}")
    assert result.exit_code != 0, f"crew2 {' '.join(map(str, args))} accepted bad input:\n{result.output}"
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output  # stdout's progress may precede it
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def good(tmp_path) -> Path:
    return make_session(tmp_path / "good.h5", 30)


def damaged(tmp_path: Path, name: str, damage) -> Path:
    path = make_session(tmp_path / f"{name}.h5", 30)
    with h5py.File(path, "a") as f:
        damage(f)
    return path


DAMAGE = {
    "no boxes": lambda f: f.__delitem__("boxes"),
    "bad attribute JSON": lambda f: f.attrs.__setitem__("keys", "[up, down"),
    "keys as text": lambda f: (f.__delitem__("keys"), f.create_dataset("keys", data=np.array([b"w"] * 30))),
    "fps as text": lambda f: f.attrs.__setitem__("fps", "fast"),
    "no frames": lambda f: f.__delitem__("frames"),
}


@pytest.mark.parametrize("what", DAMAGE)
def test_damaged_sessions_are_one_line_everywhere(tmp_path, what):
    bad = damaged(tmp_path, "bad", DAMAGE[what])
    before = snapshot(tmp_path)
    for args in (["data", "info", bad], ["data", "stats", bad], ["train", bad, "--out", tmp_path / "run"],
                 ["data", "merge", bad, "--out", tmp_path / "m.h5"],
                 ["data", "split", bad, "--out", tmp_path / "s.yaml"]):
        assert "bad.h5" in run(*args)
    assert snapshot(tmp_path) == before, "a failing command changed or left files"


def test_bad_config_files_are_one_line(tmp_path, good):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert "list.yaml" in run("train", "--split", tmp_path / "list.yaml", "--out", tmp_path / "run")
    (tmp_path / "rules.yaml").write_text("ttc_brake: fast\n")
    assert "ttc_brake" in run("drive", SHIPPED, "--source", "sim", "--rules", tmp_path / "rules.yaml", "--seconds", "1")


def test_tampered_models_are_one_line(tmp_path):
    ckpt = tmp_path / "tampered.pt"
    torch.save({"net": {"keys": 4, "frames": "two", "scale": "t"}, "model": {}}, ckpt)
    onnx = tmp_path / "meta.onnx"
    import onnx as onnx_lib  # the metadata of a real exported graph, edited
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["frames"], ["out"])], "g",
                              [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, 3, 160, 256])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 160, 256])])
    model = helper.make_model(graph)
    model.metadata_props.add(key="crew2", value="{not json")
    onnx_lib.save(model, str(onnx))
    fields = tmp_path / "fields.onnx"
    model.metadata_props[0].value = json.dumps({"keys": 4, "roles": []})
    onnx_lib.save(model, str(fields))
    graph_only = tmp_path / "graph.onnx"
    model.metadata_props[0].value = json.dumps({"keys": ["up"], "roles": {}, "class_names": [], "thresholds": [0.5],
                                                "size": [256, 160], "frames": 1})
    onnx_lib.save(model, str(graph_only))
    for weights in (ckpt, onnx, fields, graph_only):
        for args in (["drive", weights, "--source", "sim", "--seconds", "1", "--dry-run"],
                     ["eval", weights, "--drive", "--episodes", "1", "--seconds", "1"],
                     ["export", weights, "--out", tmp_path / "x.onnx"]):
            if weights.suffix == ".onnx" and args[0] == "export":
                continue
            assert weights.name in run(*args)


def test_outputs_under_a_file_or_on_a_full_disk_are_one_line(tmp_path, good):
    (tmp_path / "file").write_text("a file")
    under = tmp_path / "file" / "x"
    before = snapshot(tmp_path)
    for args in (["data", "split", good, "--out", f"{under}.yaml"], ["data", "merge", good, "--out", f"{under}.h5"],
                 ["record", "--source", "sim", "--frames", "5", "--out", f"{under}.h5"],
                 ["train", good, "--out", under, "--max-steps", "1"]):
        run(*args)
    assert snapshot(tmp_path) == before
    assert "too large" in run("record", "--source", "sim", "--frames", "5", "--width", "100000",
                          "--out", tmp_path / "wide.h5")


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A small file system filled to 100 KiB above what a writer leaves free: as a disk about to be full."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    try:
        (disk / "kept.bin").write_bytes(b"k" * (shutil.disk_usage(disk).free - RESERVE - 100 * 2**10))
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_nearly_full_disk_stops_writers_in_one_line_and_keeps_what_was_saved(tmp_path, full_disk):
    big = make_session(tmp_path / "big.h5", 800)  # 64x36 frames of about 350 bytes: 2 x 270 KiB
    before = snapshot(full_disk)
    assert "almost full" in run("data", "merge", big, big, "--out", full_disk / "m.h5")
    assert snapshot(full_disk) == before, "no partial merge left behind"
    line = run("record", "--source", "sim", "--frames", "2000", "--out", full_disk / "r.h5")
    assert "almost full" in line and "kept" in line
    kept = Session(full_disk / "r.h5")
    assert 0 < len(kept) < 2000 and validate(full_disk / "r.h5") == [], "the frames before the stop are whole"
    kept.close()
    (full_disk / "r.h5").unlink()
    (full_disk / "more.bin").write_bytes(b"m" * (shutil.disk_usage(full_disk).free - 2**20))  # 1 MiB left
    other = make_session(tmp_path / "other.h5", 100)
    assert "cannot write" in run("train", big, other, "--out", full_disk / "run", "--max-steps", "1", "--epochs", "1",
                                 "--pretrained", "none", "--workers", "0")
