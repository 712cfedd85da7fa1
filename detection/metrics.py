"""Detection metrics with Ultralytics' own code: NMS, IoU matching at 0.50:0.95, mAP (DetMetrics) and the recall
by box height that crash prevention depends on (ConfusionMatrix matches)."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import torch

# Ultralytics' NMS takes torchvision's kernel only once torchvision is imported, else a Python loop: 75x
# slower on an untrained detector, whose validation then ran past the NMS time limit on a GPU.
import torchvision  # noqa: F401
from torch import Tensor

from crew2.io.band import Band


def nms(decoded: Tensor, conf: float = 0.25, iou: float = 0.5, max_det: int = 100) -> list[Tensor]:
    """Detect's decoded output (B, 4 + classes, anchors) -> per image (n, 6): x1, y1, x2, y2, score, class."""
    from ultralytics.utils.nms import non_max_suppression

    return non_max_suppression(decoded, conf_thres=conf, iou_thres=iou, max_det=max_det)


HEIGHTS = (5, 8, 16, 32)  # px: recall is reported for boxes under 5 px tall, 5-8, 8-16, 16-32 and 32 or more
TALL = 8  # px: mAP50 is also reported over the boxes at least this tall


def height_bins(heights: tuple[int, ...] = HEIGHTS) -> list[str]:
    """The names of the box-height bins: '<5px', '5-8px', ..., '>=32px'."""
    return [f"<{heights[0]}px", *(f"{a}-{b}px" for a, b in itertools.pairwise(heights)), f">={heights[-1]}px"]


class DetectionScore:
    """Accumulates predictions and targets over images. `result()` gives mAP50 and mAP50-95 (all boxes), mAP50
    over boxes at least TALL px high, mAP50 per class, and the recall of each class by box height at `score`,
    the lowest score crash prevention acts on: how far ahead the head sees what the rules need. With a horizon
    `band` under frames of `frame_size` (`crew2.io.band`), everything is counted in the frame's pixels, as crash
    prevention gets it: the band's boxes where they are in the frame, each object once, whichever part found it."""

    def __init__(self, class_names: list[str], score: float = 0.35, heights: tuple[int, ...] = HEIGHTS,
                 band: Band | None = None, frame_size: tuple[int, int] | None = None):
        from ultralytics.models.yolo.detect import DetectionValidator
        from ultralytics.utils.metrics import ConfusionMatrix, DetMetrics

        # Ultralytics' own validator matches predictions to targets at IoU 0.50:0.95 and keeps the statistics; it
        # wants a folder to write into even when it writes nothing (plots off).
        self.validator = DetectionValidator(save_dir=Path(tempfile.gettempdir()), args={"plots": False})
        self.names = dict(enumerate(class_names))
        self.metrics = self.validator.metrics
        self.metrics.names = self.names
        self.tall = DetMetrics(names=self.names)
        self.score, self.heights = score, tuple(heights)
        self.band, self.frame_size = band, frame_size
        # One confusion matrix per height bin: its matches at `score` and IoU 0.5 give each class's recall there.
        self.by_height = [ConfusionMatrix(names=self.names) for _ in range(len(heights) + 1)]
        self.images = 0

    def add(self, pred: Tensor, boxes: Tensor, classes: Tensor) -> None:
        """One image: pred (n, 6) from `nms`, target boxes (m, 4) x1 y1 x2 y2 and classes (m,)."""
        pred, boxes, classes = pred.detach().cpu().float(), boxes.cpu().float(), classes.cpu().float()
        if self.band is not None:  # the frame's own truth (the band's repeats it), the band's boxes in the frame
            pred = torch.from_numpy(self.band.to_frame(pred.numpy(), self.frame_size))
            mine = (boxes[:, 1] + boxes[:, 3]) / 2 < self.frame_size[1]
            boxes, classes = boxes[mine], classes[mine]
        self._update(self.metrics, pred, boxes, classes)
        tall, tall_pred = boxes[:, 3] - boxes[:, 1] >= TALL, pred[:, 3] - pred[:, 1] >= TALL
        self._update(self.tall, pred[tall_pred], boxes[tall], classes[tall])
        detections = {"bboxes": pred[:, :4], "conf": pred[:, 4], "cls": pred[:, 5]}
        bins = np.digitize((boxes[:, 3] - boxes[:, 1]).numpy(), self.heights)
        for b in np.unique(bins):
            mine = torch.from_numpy(bins == b)
            self.by_height[b].process_batch(detections, {"bboxes": boxes[mine], "cls": classes[mine]},
                                            conf=self.score, iou_thres=0.5)
        self.images += 1

    def _update(self, metrics, pred: Tensor, boxes: Tensor, classes: Tensor) -> None:
        from ultralytics.utils.metrics import box_iou

        if len(pred) and len(boxes):
            tp = self.validator.match_predictions(pred[:, 5], classes, box_iou(boxes, pred[:, :4])).numpy()
        else:
            tp = np.zeros((len(pred), self.validator.niou), bool)
        metrics.update_stats({"tp": tp, "conf": pred[:, 4].numpy(), "pred_cls": pred[:, 5].numpy(),
                              "target_cls": classes.numpy(), "target_img": np.unique(classes.numpy()),
                              "im_name": str(self.images)})

    def recall(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Class -> height bin -> (targets found at `score`, targets)."""
        found = {}
        for bin_name, matrix in zip(height_bins(self.heights), self.by_height, strict=True):
            m = matrix.matrix
            for c, name in self.names.items():
                found.setdefault(name, {})[bin_name] = (int(m[c, c]), int(m[:, c].sum()))
        return found

    def result(self) -> dict[str, float]:
        """map50, map50_95, map50_tall, map50_<class> and recall_<class>_<bin> (NaN where there is nothing to
        count)."""
        nan = float("nan")
        out = {"map50": nan, "map50_95": nan, "map50_tall": nan, **{f"map50_{n}": nan for n in self.names.values()}}
        if _has_targets(self.metrics):
            self.metrics.process()
            out.update(map50=float(self.metrics.box.map50), map50_95=float(self.metrics.box.map))
            for c, ap in zip(self.metrics.ap_class_index, self.metrics.box.ap50, strict=True):
                out[f"map50_{self.names[int(c)]}"] = float(ap)
        if _has_targets(self.tall):
            self.tall.process()
            out["map50_tall"] = float(self.tall.box.map50)
        for name, bins in self.recall().items():
            for bin_name, (hit, total) in bins.items():
                out[f"recall_{name}_{bin_name}"] = hit / total if total else nan
        return out


def _has_targets(metrics) -> bool:
    return bool(metrics.stats["tp"]) and bool(sum(len(t) for t in metrics.stats["target_cls"]))
