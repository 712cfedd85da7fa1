"""MultiTaskNet: one Ultralytics YOLO11 backbone + neck feeding a multi-label key head and a Detect head.

Features are routed with the DetectionModel's own `m.f` loop (slicing `model.model[:N]` would break the
neck's skip connections); the key head taps the end of the backbone (layer 10, C2PSA), the deepest and
most global features. Frames are padded at the bottom and right to a multiple of the largest stride (32), so
boxes come out in the frame's pixels: a 256x144 frame runs as 256x160 (the loss places its targets in the padded
input accordingly, `crew2.model.loss`).
"""

from __future__ import annotations

import copy
import logging
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crew2.errors import Crew2Error
from crew2.model.pickles import load_plain

log = logging.getLogger(__name__)
BACKBONE_END = 10  # the last backbone layer of the YOLO11 layout
MAX_STRIDE = 32
# Ultralytics' YOLO11 scales (depth, width, max channels) plus "t", a narrower one for CPU real time:
# 0.8M parameters, 2.2 ms in ONNX Runtime at 256x160 on 2 CPU cores against 3.6 ms for "n".
EXTRA_SCALES = {"t": [0.5, 0.125, 1024]}
SCALES = ("t", "n", "s", "m", "l", "x")
KEY_POOLS = ("where", "mean")  # what the key head reads of the features: see Where
PIXEL_MAX = 255.0  # the network sees uint8 pixels / PIXEL_MAX, in training and in every engine alike


def _yolo_cfg(scale: str) -> dict:
    os.environ.setdefault("YOLO_OFFLINE", "1")  # never phone home for update checks
    from ultralytics.nn.tasks import yaml_model_load

    if scale not in SCALES:
        raise Crew2Error(f"unknown model scale '{scale}': use one of {', '.join(SCALES)}")
    cfg = copy.deepcopy(yaml_model_load("yolo11n.yaml"))
    cfg["scales"] = {**cfg["scales"], **EXTRA_SCALES}
    cfg["scale"] = scale
    return cfg


class MultiTaskNet(nn.Module):
    """Input (B, 3 * frames, H, W) float in [0, 1]. Output: key logits (B, K) and the Detect head's output
    (a dict of raw predictions when training; decoded (B, 4 + classes, anchors) boxes when in eval mode)."""

    def __init__(self, *, num_keys: int, num_classes: int, scale: str = "t", frames: int = 1,
                 key_hidden: int = 128, dropout: float = 0.1, key_pool: str = "mean"):
        super().__init__()
        from ultralytics.nn.tasks import DetectionModel

        if num_keys < 1 or num_classes < 1 or frames < 1:
            raise Crew2Error("a network needs at least one key, one obstacle class and one frame")
        if key_pool not in KEY_POOLS:
            raise Crew2Error(f"unknown key pooling '{key_pool}': use one of {', '.join(KEY_POOLS)}")
        cfg = {**_yolo_cfg(scale), "nc": num_classes}  # set in the config: no "overriding nc" log line
        self.det = DetectionModel(cfg, ch=3 * frames, nc=num_classes, verbose=False)
        self.det.args = _DetectionGains()  # what v8DetectionLoss reads from the model
        with torch.no_grad():
            channels = self._features(torch.zeros(1, 3 * frames, 64, 64))[0].shape[1]
        # "mean" (checkpoints made before "where" existed, which name no key_pool) keeps only what the picture
        # holds; its layers keep their old places, so those checkpoints load
        pool = [Where(channels)] if key_pool == "where" else [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        width = pool[0].out_features if key_pool == "where" else channels
        self.key_head = nn.Sequential(*pool, nn.Linear(width, key_hidden), nn.SiLU(), nn.Dropout(dropout),
                                      nn.Linear(key_hidden, num_keys))
        self.num_keys, self.num_classes, self.frames, self.key_pool = num_keys, num_classes, frames, key_pool

    @property
    def stride(self) -> Tensor:
        return self.det.stride

    def _features(self, x: Tensor) -> tuple[Tensor, object]:
        """Run backbone + neck + Detect; return (end-of-backbone features, Detect output)."""
        outputs: list[Tensor | None] = []
        deep = x
        for i, m in enumerate(self.det.model):
            if m.f != -1:  # the layer's inputs: earlier outputs by index, -1 = the previous layer
                x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
            x = m(x)
            outputs.append(x if m.i in self.det.save else None)
            if i == BACKBONE_END:
                deep = x
        return deep, x

    def forward(self, x: Tensor) -> tuple[Tensor, object]:
        h, w = x.shape[-2:]
        pad_h, pad_w = padded(h) - h, padded(w) - w
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=0.5)  # (B, C, H', W'), grey past the frame's edges
        deep, det = self._features(x)
        return self.key_head(deep), det


def padded(size: int) -> int:
    """A frame's height or width as the network sees it: padded to a multiple of the largest stride."""
    return size + -size % MAX_STRIDE


class Where(nn.Module):
    """Each feature channel's mean over the picture, and where `points` learnt features are: a 1x1 convolution
    makes one map per point, a softmax over the positions turns each into a distribution, and its expected x and
    y (in [-1, 1]) say where that point sits (spatial soft-argmax, Levine et al. 2016, "End-to-End Training of
    Deep Visuomotor Policies"). A mean alone keeps what the picture holds and drops where it is: whether the
    road ahead bends left or right. Independent of the frame size, and plain ONNX."""

    def __init__(self, channels: int, points: int = 32):
        super().__init__()
        self.points = nn.Conv2d(channels, points, 1)
        self.out_features = channels + 2 * points

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        maps = self.points(x).float()
        p = maps.flatten(2).softmax(-1).reshape(maps.shape)  # (B, P, H, W), each point's map sums to 1
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=p.dtype)
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=p.dtype)
        where = torch.cat([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], 1)  # (B, 2P): x of each, y of each
        return torch.cat([x.float().mean((2, 3)), where], 1)


class _DetectionGains:
    """Ultralytics' default loss gains for box, class and distribution-focal terms."""

    box, cls, dfl = 7.5, 0.5, 1.5


def load_pretrained(net: MultiTaskNet, path: str, trust_pickle: bool = False) -> int:
    """Copy every tensor whose name and shape match into `net`; returns how many were loaded. `path` is a
    crew2 checkpoint (a warm start: the whole network, key head included where the keys match) or, with
    `trust_pickle` (a full pickle can run code), an Ultralytics detection .pt (backbone, neck and Detect head).
    A single-frame model's first convolution is inflated to `net.frames` stacked frames: its weights go to the
    newest frame and zeros to the older ones, so the stacked network starts out computing what the single-frame
    one did. Never downloads anything."""
    if not os.path.isfile(path):
        raise Crew2Error(f"{path}: no such file (crew2 never downloads weights: give a local .pt)")
    ckpt = load_plain(path, trust_pickle)
    if ckpt is None:
        from ultralytics.nn.tasks import torch_safe_load

        try:  # an Ultralytics .pt is a pickled model: Ultralytics' own loader reads it
            ckpt, _ = torch_safe_load(path)
            det = (ckpt.get("ema") or ckpt["model"]).float().state_dict()
        except Exception as e:  # any failure to unpickle means: not an Ultralytics checkpoint we can use
            raise Crew2Error(f"{path}: not a crew2 or Ultralytics detection checkpoint ({e})") from e
        theirs = {f"det.{k}": v for k, v in det.items()}
    elif isinstance(ckpt, dict) and "format_version" in ckpt and isinstance(ckpt.get("model"), dict):
        theirs = ckpt["model"]
    else:
        raise Crew2Error(f"{path}: plain tensors, but not a crew2 checkpoint")
    ours = net.state_dict()
    first = next(k for k, v in ours.items() if v.ndim == 4)  # the input convolution
    if first in theirs and ours[first].shape != theirs[first].shape:
        w = theirs[first]
        if ours[first].shape == (w.shape[0], w.shape[1] * net.frames, *w.shape[2:]):
            theirs = {**theirs, first: torch.cat([torch.zeros_like(w)] * (net.frames - 1) + [w], dim=1)}
    matched = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    net.load_state_dict(matched, strict=False)
    log.info("loaded %d of %d tensors from %s", len(matched), len(ours), path)
    return len(matched)
