"""Obstacle classes: read once from a dataset YAML (datasets/*.yaml), with the teacher-model class mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from crew2.errors import Crew2Error, read_yaml
from crew2.sim.world import CLASSES


@dataclass(frozen=True)
class DatasetSpec:
    names: list[str]
    teacher: dict[str, str] = field(default_factory=dict)  # teacher class name -> one of `names`


def default_spec() -> DatasetSpec:
    """The simulator's classes (datasets/sim.yaml describes the same), with no teacher mapping."""
    return DatasetSpec(list(CLASSES))


def load_spec(path: str | Path | None) -> DatasetSpec:
    """A dataset YAML with `names` ({id: name} or [name, ...]) and an optional `teacher` mapping."""
    if path is None:
        return default_spec()
    path = Path(path)
    data = read_yaml(path, "dataset file", "'names: {0: car, 1: truck, ...}'")
    try:
        raw = data["names"]
        names = [raw[i] for i in range(len(raw))] if isinstance(raw, dict) else list(raw)
    except (KeyError, TypeError) as e:
        raise Crew2Error(f"{path}: a dataset file needs 'names: {{0: car, 1: truck, ...}}' ({e})") from e
    teacher = {str(k): str(v) for k, v in (data.get("teacher") or {}).items()}
    unknown = sorted(set(teacher.values()) - set(names))
    if unknown:
        raise Crew2Error(f"{path}: the teacher mapping names unknown class(es) {', '.join(unknown)}: "
                         f"the classes are {', '.join(names)}")
    return DatasetSpec([str(n) for n in names], teacher)
