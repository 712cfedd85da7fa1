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
