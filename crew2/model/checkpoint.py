"""Checkpoints: plain dicts of tensors and primitives (loadable with weights_only=True) that carry the
network's config, the key profile, the obstacle classes, the calibrated thresholds, how the obstacle head was
trained and a format version."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from crew2.errors import Crew2Error
from crew2.keys import KeyProfile
from crew2.model.net import MultiTaskNet

FORMAT_VERSION = 1
# Where the obstacle head's training targets were: "frame" (the frame's pixels). A checkpoint without the key was
# trained before 2026-12-07, on targets stretched by the padded input's size ("stretched", `crew2.model.loss`).
BOX_TARGETS, STRETCHED = "frame", "stretched"
REQUIRED = ("format_version", "net", "keys", "roles", "profile", "class_names", "thresholds", "model")


def net_config(net: MultiTaskNet, scale: str, key_hidden: int) -> dict[str, Any]:
    return {"scale": scale, "frames": net.frames, "num_keys": net.num_keys, "num_classes": net.num_classes,
            "key_hidden": key_hidden, "key_pool": net.key_pool}


def save(path: Path, *, net_cfg: dict, profile: KeyProfile, class_names: list[str], thresholds: list[float],
         model: dict, size: tuple[int, int], **extra: Any) -> None:
    """Write atomically (a temporary file renamed over the target), so a crash never leaves half a file."""
    ckpt = {"format_version": FORMAT_VERSION, "net": net_cfg, "keys": list(profile.keys), "roles": dict(profile.roles),
            "profile": profile.name, "class_names": list(class_names), "thresholds": [float(t) for t in thresholds],
            "model": model, "size": list(size), "box_targets": BOX_TARGETS, **extra}
    _write(Path(path), ckpt)


def _write(path: Path, ckpt: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(ckpt, tmp)
    except (OSError, RuntimeError) as e:  # a full disk: torch reports it as a RuntimeError from its zip writer
        tmp.unlink(missing_ok=True)
        raise Crew2Error(f"cannot write {path} ({str(e).strip().splitlines()[-1][:200]}); the last whole "
                         "checkpoint is kept") from None
    tmp.replace(path)


# What a model needs to drive and to describe itself; the rest (optimizer, raw weights, RNG) only resumes training.
INFERENCE = (*REQUIRED, "size", "epoch", "step", "metrics", "confusion", "history", "train_config", "detector",
             "box_targets", "calibrated_thresholds", "band")

# Validation mAP50 under which an obstacle head counts as untrained. A head that never saw an annotated frame
# scores 0.000 on the simulator's ground truth (three random initialisations, 600 frames); every head trained
# on it that weights/README.md records scored 0.037-0.090 (the shipped one 0.052: about half the true boxes are
# under 7 px high, far below the height the rules act on).
MAP50_FLOOR = 0.02


@dataclass(frozen=True)
class DetectorTraining:
    """How the obstacle head was trained, as a checkpoint (key "detector") and an ONNX export record it."""

    annotated_frames: int | None  # annotated frames its training run stepped on (None: not recorded)
    map50: float | None  # the validation mAP50 of these weights (None: no annotated validation frame)

    @staticmethod
    def of(ckpt: dict[str, Any]) -> DetectorTraining | None:
        """From a checkpoint; one made before crew2 recorded it is judged by what it carries: its validation
        mAP50, and a detection loss of 0 in every epoch for a head that never saw an annotated frame."""
        if "detector" in ckpt:
            return DetectorTraining(**ckpt["detector"])
        map50 = ckpt.get("metrics", {}).get("map50", math.nan)
        history = ckpt.get("history", [])
        never = bool(history) and all(h.get("train_det", math.nan) == 0 for h in history)
        if math.isnan(map50) and not never:
            return None
        return DetectorTraining(0 if never else None, None if math.isnan(map50) else float(map50))


def detector_trained(training: DetectorTraining | None) -> tuple[bool, str]:
    """Whether crash prevention may act on the obstacle head's boxes, and why, in words: not when it never saw
    an annotated frame, nor when its validation mAP50 is under `MAP50_FLOOR`. A model that does not record how
    its head was trained (made before crew2 did) keeps its boxes, as it did before."""
    if training is None:
        return True, "the model does not record how its obstacle head was trained"
    frames, map50 = training.annotated_frames, training.map50
    if frames == 0:
        return False, "the obstacle head never saw an annotated frame"
    if map50 is not None and map50 < MAP50_FLOOR:
        return False, f"the obstacle head's validation mAP50 is {map50:.3f}, under {MAP50_FLOOR}"
    seen = "" if frames is None else f" on {frames:,} annotated frames"
    measured = "no annotated validation frames" if map50 is None else f"validation mAP50 {map50:.3f}"
    return True, f"the obstacle head was trained{seen} ({measured})"


def slim(src: str | Path, dst: str | Path, thresholds: dict[str, float] | None = None) -> Path:
    """Copy a checkpoint keeping only what inference and the model card need (the EMA weights in `model`), with
    `thresholds` set (`with_thresholds`)."""
    dst = Path(dst)
    _write(dst, with_thresholds({k: v for k, v in load(src).items() if k in INFERENCE}, thresholds))
    return dst


def with_thresholds(ckpt: dict[str, Any], thresholds: dict[str, float] | None) -> dict[str, Any]:
    """The checkpoint with some keys' thresholds set by hand, in place of those calibrated on the validation
    sessions (a key that should press more or less eagerly when the model drives); what was calibrated stays in
    "calibrated_thresholds". A key the model does not have, or a value outside (0, 1), is a clear error."""
    if not thresholds:
        return ckpt
    keys = ckpt["keys"]
    for key, value in thresholds.items():
        if key not in keys:
            raise Crew2Error(f"--threshold {key}: the model has no key '{key}' (its keys: {', '.join(keys)})")
        if not 0 < value < 1:
            raise Crew2Error(f"--threshold {key}={value:g}: a threshold is a probability between 0 and 1")
    calibrated = ckpt.get("calibrated_thresholds", ckpt["thresholds"])
    return {**ckpt, "calibrated_thresholds": list(calibrated),
            "thresholds": [float(thresholds.get(k, t)) for k, t in zip(keys, ckpt["thresholds"], strict=True)]}


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
