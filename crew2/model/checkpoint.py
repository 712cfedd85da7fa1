"""Checkpoints: plain dicts of tensors and primitives (loadable with weights_only=True) that carry the
network's config, the key profile, the obstacle classes, the calibrated thresholds and a format version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from crew2.errors import Crew2Error
from crew2.keys import KeyProfile
from crew2.model.net import MultiTaskNet

FORMAT_VERSION = 1
REQUIRED = ("format_version", "net", "keys", "roles", "profile", "class_names", "thresholds", "model")


def net_config(net: MultiTaskNet, scale: str, key_hidden: int) -> dict[str, Any]:
    return {"scale": scale, "frames": net.frames, "num_keys": net.num_keys, "num_classes": net.num_classes,
            "key_hidden": key_hidden}


def save(path: Path, *, net_cfg: dict, profile: KeyProfile, class_names: list[str], thresholds: list[float],
         model: dict, size: tuple[int, int], **extra: Any) -> None:
    """Write atomically (a temporary file renamed over the target), so a crash never leaves half a file."""
    ckpt = {"format_version": FORMAT_VERSION, "net": net_cfg, "keys": list(profile.keys), "roles": dict(profile.roles),
            "profile": profile.name, "class_names": list(class_names), "thresholds": [float(t) for t in thresholds],
            "model": model, "size": list(size), **extra}
    _write(Path(path), ckpt)


def _write(path: Path, ckpt: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


# What a model needs to drive and to describe itself; the rest (optimizer, raw weights, RNG) only resumes training.
INFERENCE = (*REQUIRED, "size", "epoch", "step", "metrics", "confusion", "history", "train_config")


def slim(src: str | Path, dst: str | Path) -> Path:
    """Copy a checkpoint keeping only what inference and the model card need (the EMA weights in `model`)."""
    dst = Path(dst)
    _write(dst, {k: v for k, v in load(src).items() if k in INFERENCE})
    return dst


def load(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint; any problem is one clear Crew2Error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise Crew2Error(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types; all mean the same to the user
        raise Crew2Error(f"{path}: not a readable crew2 checkpoint ({type(e).__name__})") from e
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise Crew2Error(f"{path}: not a crew2 checkpoint (missing {[k for k in REQUIRED if k not in ckpt]})"
                         if isinstance(ckpt, dict) else f"{path}: not a crew2 checkpoint")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise Crew2Error(f"{path}: checkpoint format {ckpt['format_version']} is newer than this crew2 "
                         f"reads ({FORMAT_VERSION}): update crew2")
    return ckpt


def build(ckpt: dict[str, Any], weights: str = "model") -> MultiTaskNet:
    """The network described by a checkpoint, with its `weights` ("model" or "ema") loaded, in eval mode."""
    net = MultiTaskNet(**ckpt["net"])
    try:
        net.load_state_dict(ckpt[weights])
    except (RuntimeError, KeyError) as e:
        raise Crew2Error(f"checkpoint weights do not fit its own network description: {e}") from e
    return net.eval()


def check_compatible(ckpt: dict[str, Any], keys: list[str] | None = None, class_names: list[str] | None = None) -> None:
    """A checkpoint made for other keys or other obstacle classes than asked for is an error, not a guess."""
    if keys is not None and list(keys) != ckpt["keys"]:
        raise Crew2Error(f"the checkpoint presses {ckpt['keys']}, but {list(keys)} were asked for: "
                         "use the same key profile it was trained with")
    if class_names is not None and list(class_names) != ckpt["class_names"]:
        raise Crew2Error(f"the checkpoint detects {ckpt['class_names']}, but {list(class_names)} were asked for")
