"""Where a command writes: never over a file of another kind (a session, a checkpoint, a file of the user's), and
a whole file or none. crew2 writes over only what a command of the same kind wrote before (a log over a log);
anything else at the output path is an error before any work starts, with nothing touched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from crew2.errors import Crew2Error


def _head(path: Path, n: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _is_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _is_log(path: Path) -> bool:  # JSON lines: empty, or a first line that is a JSON object
    first = _head(path).split(b"\n", 1)[0]
    try:
        return not first or isinstance(json.loads(first), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _is_split(path: Path) -> bool:
    from crew2.data.tools import SPLITS

    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and bool(data) and set(data) <= set(SPLITS)


KINDS = {  # kind -> (what it is called, does an existing file hold one)
    "json": ("JSON file", _is_json),
    "log": ("JSON-lines log", _is_log),
    "split": ("split file (train/val/test lists)", _is_split),
    "onnx": ("ONNX model", lambda p: p.suffix == ".onnx" and _head(p, 1) == b"\x08"),  # field 1: ir_version
    "checkpoint": ("crew2 checkpoint", lambda p: p.suffix == ".pt" and _head(p, 4) == b"PK\x03\x04"),  # torch's zip
    "video": ("MP4 video", lambda p: p.suffix == ".mp4" and _head(p, 12)[4:8] == b"ftyp"),
}


def check_output(path: Path | None, kind: str) -> None:
    """`path` may receive a `kind` of output: nothing there yet, or a `kind` a command wrote before. Otherwise one
    clear error, to be raised before the command does any work."""
    if path is None:
        return
    name, holds = KINDS[kind]
    if path.is_dir():
        raise Crew2Error(f"{path} is a folder: give a file name for the {name}")
    if path.exists() and not holds(path):
        raise Crew2Error(f"{path} exists and is not a {name}: crew2 does not write over it (move it or choose "
                         "another name)")
    if path.parent.exists() and not path.parent.is_dir():
        raise Crew2Error(f"{path.parent} is a file, not a folder: cannot write {path}")


@contextmanager
def whole(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed to `path` only when the block completes, so a crash or
    a full disk leaves the old file (or none), never half a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part{path.suffix}")  # the suffix kept: video writers go by it
    tmp.unlink(missing_ok=True)  # left by a crash: crew2's own temporary name
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
