"""The multi-task network (shared YOLO backbone, key head, obstacle head), its losses and checkpoints."""

from __future__ import annotations

from pathlib import Path

from crew2.errors import Crew2Error

ENGINES = ("auto", "torch", "onnx")


def engine_for(path: str | Path, engine: str = "auto") -> str:
    """The engine ("torch" or "onnx") that runs this model file, "auto" picking by its suffix; a clear error for
    an unknown engine, a missing file or a file the engine cannot run. Imports no torch, so a command checks
    its model file in a blink, before its imports take seconds."""
    path = Path(path)
    if engine not in ENGINES:
        raise Crew2Error(f"unknown engine '{engine}': use one of {', '.join(ENGINES)}")
    if not path.is_file():
        raise Crew2Error(f"{path}: no such model file")
    if engine == "auto":
        return "onnx" if path.suffix == ".onnx" else "torch"
    if engine == "onnx" and path.suffix != ".onnx":
        raise Crew2Error(f"{path}: the onnx engine runs .onnx files: export the checkpoint first")
    if engine == "torch" and path.suffix == ".onnx":
        raise Crew2Error(f"{path}: the torch engine runs checkpoints (.pt), not ONNX files")
    return engine
