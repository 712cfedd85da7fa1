"""Inference engines: the network from a checkpoint (PyTorch) or its ONNX export (ONNX Runtime), behind one
interface with the same preprocessing and the same decoding, so a driver never cares which one it runs.

ONNX files carry what a checkpoint carries (keys, roles, class names, thresholds, frame size, frames, how the
obstacle head was trained) in their metadata, so an exported model is as self-describing as its checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from crew2.detection.metrics import nms
from crew2.errors import Crew2Error
from crew2.io.band import Band
from crew2.model import checkpoint, engine_for
from crew2.model.checkpoint import STRETCHED, DetectorTraining
from crew2.model.net import PIXEL_MAX, padded
from crew2.shipped import shipped

# The default driver crew2 ships (its ONNX export sits next to it).
DEFAULT_WEIGHTS = shipped("weights/crew2-sim-t.pt")


@dataclass
class Prediction:
    key_probs: np.ndarray  # (K,) sigmoid probabilities in the profile's key order
    boxes: np.ndarray  # (n, 6) x1, y1, x2, y2 (frame pixels), score, class


@dataclass(frozen=True)
class ModelInfo:
    keys: list[str]
    roles: dict[str, str]
    class_names: list[str]
    thresholds: list[float]
    size: tuple[int, int]  # width, height of the frames it was trained on
    frames: int  # frames stacked per input
    detector: DetectorTraining | None = None  # how the obstacle head was trained (None: not recorded)
    box_targets: str = checkpoint.BOX_TARGETS  # "frame"; "stretched": trained before the loss placed boxes right
    band: dict | None = None  # the horizon band under each frame (`crew2.io.band.Band`); `size` includes its rows

    @staticmethod
    def of(ckpt: dict) -> ModelInfo:
        return ModelInfo(list(ckpt["keys"]), dict(ckpt["roles"]), list(ckpt["class_names"]),
                         [float(t) for t in ckpt["thresholds"]], tuple(ckpt.get("size", (256, 144))),
                         int(ckpt["net"]["frames"]), DetectorTraining.of(ckpt), ckpt.get("box_targets", STRETCHED),
                         ckpt.get("band"))

    @staticmethod
    def from_json(text: str) -> ModelInfo:
        """From an ONNX export's "crew2" metadata (`to_json`)."""
        meta = json.loads(text)
        detector = meta.pop("detector", None)
        return ModelInfo(**{"box_targets": STRETCHED, **meta, "size": tuple(meta["size"]),
                            "detector": DetectorTraining(**detector) if detector is not None else None})

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "size": list(self.size)})

    @property
    def frame_size(self) -> tuple[int, int]:
        """The (width, height) of the game's picture in the network's input: `size` less the band's rows."""
        band = Band.of(self.band)
        return self.size if band is None else band.frame_size(self.size)

    def box_scale(self) -> np.ndarray | None:
        """(4,) what turns this model's boxes (x, y, w, h) into the frame's pixels; None: they are already. A model
        trained before 2026-12-07 learnt targets stretched by the padded input's size over the frame's (`crew2.model.
        loss`): y by 160/144 at 256x144, which put every box 11% too low and too tall."""
        w, h = self.size
        if self.box_targets != STRETCHED or (padded(w), padded(h)) == (w, h):
            return None
        return np.array([w / padded(w), h / padded(h)] * 2, np.float32)


class Engine(Protocol):
    info: ModelInfo
    name: str

    def __call__(self, frames: np.ndarray) -> list[Prediction]:
        """(B, H, W, 3 * frames) uint8 RGB -> one Prediction per sample."""
        ...


def preprocess(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, C) uint8 -> (B, C, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / PIXEL_MAX


def decode(key_probs: np.ndarray, decoded: np.ndarray, conf: float, iou: float,
           box_scale: np.ndarray | None = None) -> list[Prediction]:
    """Key probabilities (B, K) and Detect's boxes (B, 4 + classes, anchors) -> Predictions, after NMS; `box_scale`
    (4,) rescales x, y, w, h first (`ModelInfo.box_scale`)."""
    if box_scale is not None:
        decoded = decoded.copy()
        decoded[:, :4] *= box_scale[:, None]  # (B, 4, anchors) x, y, w, h
    kept = nms(torch.from_numpy(np.ascontiguousarray(decoded)), conf=conf, iou=iou)
    return [Prediction(key_probs[i], kept[i].numpy()) for i in range(len(key_probs))]


class _Exportable(nn.Module):
    """The network as a deployed graph: probabilities instead of logits, decoded boxes only."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key_logits, det = self.net(x)
        decoded = det[0] if isinstance(det, tuple) else det
        return torch.sigmoid(key_logits), decoded


class TorchEngine:
    name = "torch"

    def __init__(self, ckpt: dict, conf: float = 0.25, iou: float = 0.5, threads: int | None = None):
        self.info = ModelInfo.of(ckpt)
        self.box_scale = self.info.box_scale()  # once, not every frame
        self.model = _Exportable(checkpoint.build(ckpt)).eval()
        self.conf, self.iou = conf, iou
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> list[Prediction]:
        probs, decoded = self.model(torch.from_numpy(preprocess(frames)))
        return decode(probs.numpy(), decoded.numpy(), self.conf, self.iou, self.box_scale)


class OnnxEngine:
    name = "onnx"

    def __init__(self, path: Path, conf: float = 0.25, iou: float = 0.5, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime raises its own exception types for unreadable models
            raise Crew2Error(f"{path}: not a readable ONNX model ({e})") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        if "crew2" not in meta:
            raise Crew2Error(f"{path}: an ONNX model, but not one exported by crew2 (no crew2 metadata)")
        try:
            self.info = ModelInfo.from_json(meta["crew2"])
            assert len(self.info.keys) == len(self.info.thresholds) and self.info.frames >= 1
        except Exception as e:  # bad JSON, missing or wrong fields: json, TypeError, KeyError, ...
            raise Crew2Error(f"{path}: its crew2 metadata is damaged ({type(e).__name__}: {e})") from e
        outputs = self.session.get_outputs()
        if len(outputs) != 2 or len(self.session.get_inputs()) != 1:
            raise Crew2Error(f"{path}: not a crew2 graph ({len(outputs)} outputs; crew2 exports key probabilities "
                             "and boxes)")
        self.input = self.session.get_inputs()[0].name
        self.box_scale = self.info.box_scale()  # once, not every frame
        self.conf, self.iou = conf, iou

    def __call__(self, frames: np.ndarray) -> list[Prediction]:
        probs, decoded = self.session.run(None, {self.input: preprocess(frames)})
        return decode(probs, decoded, self.conf, self.iou, self.box_scale)


def export_onnx(ckpt_path: Path, out: Path, opset: int = 17, thresholds: dict[str, float] | None = None) -> Path:
    """Export a checkpoint (its EMA weights) to ONNX with a dynamic batch axis and crew2 metadata, with
    `thresholds` set (`checkpoint.with_thresholds`)."""
    import onnx

    ckpt = checkpoint.with_thresholds(checkpoint.load(ckpt_path), thresholds)
    info = ModelInfo.of(ckpt)
    model = _Exportable(checkpoint.build(ckpt)).eval()
    model.net.det.model[-1].export = True  # Detect returns the decoded boxes alone
    w, h = info.size
    dummy = torch.zeros(1, 3 * info.frames, h, w)
    with torch.no_grad():
        torch.onnx.export(model, dummy, str(out), opset_version=opset, input_names=["frames"],
                          output_names=["key_probs", "boxes"], dynamic_axes={"frames": {0: "batch"}},
                          dynamo=False)
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "crew2", info.to_json()
    onnx.save(proto, str(out))
    return out


def load_engine(path: str | Path, engine: str = "auto", keys: list[str] | None = None,
                class_names: list[str] | None = None, threads: int | None = None, conf: float = 0.25,
                iou: float = 0.5) -> Engine:
    """An engine for a checkpoint (.pt) or an ONNX export (.onnx); "auto" picks by the file. With `keys` or
    `class_names`, a model made for others is a clear error. `conf` and `iou` are NMS's thresholds."""
    path = Path(path)
    if threads is not None and threads < 1:
        raise Crew2Error(f"--threads must be 1 or more, not {threads}")
    if engine_for(path, engine) == "onnx":
        result: Engine = OnnxEngine(path, conf, iou, threads)
    else:
        result = TorchEngine(checkpoint.load(path), conf, iou, threads)
    checkpoint.check_compatible({"keys": result.info.keys, "class_names": result.info.class_names}, keys,
                                class_names)
    # One frame through it now rather than in a drive's first: that loads the NMS's library (Ultralytics) and lets
    # the runtime set itself up (the shipped model's first frame took 54 ms, the next ones 5).
    w, h = result.info.size
    result(np.zeros((1, h, w, 3 * result.info.frames), np.uint8))
    return result


def disagreement(weights: Path, onnx_path: Path) -> float:
    """The largest difference between the key probabilities of a checkpoint and of its ONNX export, on random
    frames: what `crew2 export` checks before it says the export is good."""
    torch_engine, onnx_engine = load_engine(weights, "torch"), load_engine(onnx_path, "onnx")
    w, h = torch_engine.info.size
    frames = np.random.default_rng(0).integers(0, 256, (2, h, w, 3 * torch_engine.info.frames), dtype=np.uint8)
    return max(float(np.abs(a.key_probs - b.key_probs).max())
               for a, b in zip(torch_engine(frames), onnx_engine(frames), strict=True))
