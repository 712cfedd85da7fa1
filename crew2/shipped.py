"""Files crew2 ships beside its code: the default driver (weights/) and the dataset descriptors (datasets/). In a
clone they are the repository's top-level folders; an installed package carries copies as crew2/weights and
crew2/datasets (setup.py maps them), so every verb finds them either way."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def shipped(relative: str) -> Path:
    """The shipped file at `relative` (e.g. "weights/crew2-sim-t.pt"): the clone's if there is one, else the
    installed package's. A path that exists in neither comes back as the clone's, for the caller's error."""
    for base in (_HERE.parent, _HERE):
        if (base / relative).exists():
            return base / relative
    return _HERE.parent / relative


def given(path: Path | None) -> Path | None:
    """A file named on the command line: as given when it exists; else, when it names a shipped file the way the
    README does (`weights/crew2-sim-t.onnx`, `datasets/sim.yaml`) from a folder that has no such file, the shipped
    one; else as given, for the caller's error."""
    if path is None or path.exists() or path.is_absolute() or path.parts[:1] not in (("weights",), ("datasets",)):
        return path
    found = shipped(path.as_posix())
    return found if found.exists() else path
