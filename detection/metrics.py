"""Detection metrics with Ultralytics' own code: NMS, IoU matching at 0.50:0.95 and mAP (DetMetrics)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

# Ultralytics' NMS takes torchvision's kernel only once torchvision is imported, else a Python loop: 75x
# slower on an untrained detector, whose validation then ran past the NMS time limit on a GPU.
import torchvision  # noqa: F401
from torch import Tensor


def nms(decoded: Tensor, conf: float = 0.25, iou: float = 0.5, max_det: int = 100) -> list[Tensor]:
    """Detect's decoded output (B, 4 + classes, anchors) -> per image (n, 6): x1, y1, x2, y2, score, class."""
    from ultralytics.utils.nms import non_max_suppression

    return non_max_suppression(decoded, conf_thres=conf, iou_thres=iou, max_det=max_det)


class DetectionScore:
    """Accumulates predictions and targets over images; `result()` gives mAP50 and mAP50-95."""

    def __init__(self, class_names: list[str]):
        from ultralytics.models.yolo.detect import DetectionValidator

        # Ultralytics' own validator matches predictions to targets at IoU 0.50:0.95 and keeps the statistics; it
        # wants a folder to write into even when it writes nothing (plots off).
        self.validator = DetectionValidator(save_dir=Path(tempfile.gettempdir()), args={"plots": False})
        self.metrics = self.validator.metrics
        self.metrics.names = dict(enumerate(class_names))
        self.images = 0

    def add(self, pred: Tensor, boxes: Tensor, classes: Tensor) -> None:
        """One image: pred (n, 6) from `nms`, target boxes (m, 4) x1 y1 x2 y2 and classes (m,)."""
        from ultralytics.utils.metrics import box_iou

        pred, boxes, classes = pred.detach().cpu().float(), boxes.cpu().float(), classes.cpu().float()
        if len(pred) and len(boxes):
            tp = self.validator.match_predictions(pred[:, 5], classes, box_iou(boxes, pred[:, :4])).numpy()
        else:
            tp = np.zeros((len(pred), self.validator.niou), bool)
        self.metrics.update_stats({"tp": tp, "conf": pred[:, 4].numpy(), "pred_cls": pred[:, 5].numpy(),
                                   "target_cls": classes.numpy(), "target_img": np.unique(classes.numpy()),
                                   "im_name": str(self.images)})
        self.images += 1

    def result(self) -> dict[str, float]:
        if not self.metrics.stats["tp"] or not sum(len(t) for t in self.metrics.stats["target_cls"]):
            return {"map50": float("nan"), "map50_95": float("nan")}
        self.metrics.process()
        return {"map50": float(self.metrics.box.map50), "map50_95": float(self.metrics.box.map)}
