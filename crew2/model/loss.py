"""The multi-task loss: BCE over keys (per-key positive weights) + Ultralytics' detection loss over the
frames that carry annotation — an unannotated frame is not "no obstacles", so it adds nothing there.

Boxes come normalised to the frame (0-1 over its width and height); Ultralytics' loss scales them by the size of
the input the network saw, which is the frame padded at the bottom and right to a multiple of the largest stride
(`MultiTaskNet.forward`). So they are first re-normalised to the padded input: a box stays where it is in pixels.
(Before 2026-12-07 they were not, and every model learnt boxes stretched by padded/frame size, 160/144 in y at
256x144: `engine.ModelInfo.box_targets`.)"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from crew2.data.loader import ANNOTATED, BATCH_IDX, BBOXES, CLS, IMAGE, KEYS
from crew2.model.net import MultiTaskNet, padded


def positive_weights(keys: np.ndarray, cap: float = 20.0) -> Tensor:
    """(K,) negatives / positives per key, from (N, K) training labels: rare keys count as much as common
    ones. Capped, and 1 for a key that is never or always pressed."""
    pos = keys.sum(0).astype(np.float64)
    neg = len(keys) - pos
    w = np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0)
    return torch.tensor(np.clip(w, 1 / cap, cap), dtype=torch.float32)


def as_float(det: dict) -> dict:
    """Detect's raw training outputs in float32 for the loss (autocast may have made them bf16/fp16)."""
    return {"boxes": det["boxes"].float(), "scores": det["scores"].float(), "feats": [f.float() for f in det["feats"]]}


class MultiTaskLoss(nn.Module):
    """total = w_keys * L_keys + w_det * L_det, or with `uncertainty` Kendall et al. (2018)'s learned
    weighting: sum_i exp(-s_i) * L_i + s_i, with one log-variance s_i per task."""

    def __init__(self, net: MultiTaskNet, pos_weight: Tensor, key_weight: float = 1.0, det_weight: float = 1.0,
                 uncertainty: bool = False):
        super().__init__()
        from ultralytics.utils.loss import v8DetectionLoss

        self.register_buffer("pos_weight", pos_weight)
        self.detection = v8DetectionLoss(net.det)
        self.key_weight, self.det_weight = key_weight, det_weight
        self.log_vars = nn.Parameter(torch.zeros(2)) if uncertainty else None

    def forward(self, key_logits: Tensor, det: dict, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        key_loss = nn.functional.binary_cross_entropy_with_logits(key_logits, batch[KEYS].to(key_logits),
                                                                  pos_weight=self.pos_weight)
        det_loss = key_logits.new_zeros(())
        annotated = batch[ANNOTATED].to(key_logits.device)
        parts = {"keys": key_loss.item(), "box": 0.0, "cls": 0.0, "dfl": 0.0}
        if annotated.any():
            keep = annotated.nonzero(as_tuple=True)[0]  # (A,) the annotated frames of the batch
            new_index = torch.full((len(annotated),), -1, device=keep.device)
            new_index[keep] = torch.arange(len(keep), device=keep.device)
            idx = new_index[batch[BATCH_IDX].to(keep.device).long()]  # (N,) -1: a box of a dropped frame
            mine = idx >= 0
            h, w = batch[IMAGE].shape[-2:]
            hp, wp = padded(h), padded(w)
            to_input = torch.tensor([w / wp, h / hp, w / wp, h / hp], device=keep.device)  # frame -> padded input
            target = {"batch_idx": idx[mine].float(), "cls": batch[CLS].to(keep.device)[mine],
                      "bboxes": batch[BBOXES].to(keep.device)[mine] * to_input}  # (N, 4) xywh, normalised
            preds = {"boxes": det["boxes"][keep], "scores": det["scores"][keep],
                     "feats": [f[keep] for f in det["feats"]]}
            self.detection.device = key_logits.device
            summed, _ = self.detection(preds, target)  # (3,) box, cls, dfl, each times the batch size
            det_loss = summed.sum() / len(keep)
            parts.update(box=float(summed[0].detach()) / len(keep), cls=float(summed[1].detach()) / len(keep),
                         dfl=float(summed[2].detach()) / len(keep))
        parts["det"] = float(det_loss.detach())
        if self.log_vars is not None:
            s = self.log_vars
            total = torch.exp(-s[0]) * key_loss + s[0]
            if annotated.any():
                total = total + torch.exp(-s[1]) * det_loss + s[1]
        else:
            total = self.key_weight * key_loss + self.det_weight * det_loss
        parts["total"] = float(total.detach())
        return total, parts
