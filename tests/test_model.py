"""The multi-task network, its loss and checkpoints: shapes, gradients, masking, exact save/load, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crew2.data.loader import ANNOTATED, BATCH_IDX, BBOXES, CLS, IMAGE, KEYS
from crew2.errors import Crew2Error
from crew2.keys import default_profile
from crew2.model import checkpoint
from crew2.model.loss import MultiTaskLoss, positive_weights
from crew2.model.net import KEY_POOLS, SCALES, MultiTaskNet, Where, load_pretrained


def batch_of(annotated: list[bool], boxes=None, size=(144, 256)) -> dict[str, torch.Tensor]:
    """Boxes of several sizes in every annotated frame of (height, width) `size`."""
    boxes = boxes or [(0.5, 0.6, 0.5, 0.6), (0.2, 0.7, 0.15, 0.2), (0.8, 0.55, 0.06, 0.08), (0.4, 0.5, 0.03, 0.05)]
    idx, cls, xywh = [], [], []
    for b, on in enumerate(annotated):
        if on:
            for j, box in enumerate(boxes):
                idx.append(b), cls.append([j % 4]), xywh.append(box)
    n = len(annotated)
    return {KEYS: torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1]] * n, dtype=torch.float32)[:n],
            IMAGE: torch.zeros(n, 3, *size, dtype=torch.uint8),
            ANNOTATED: torch.tensor(annotated), BATCH_IDX: torch.tensor(idx, dtype=torch.float32),
            CLS: torch.tensor(cls, dtype=torch.float32).reshape(-1, 1),
            BBOXES: torch.tensor(xywh, dtype=torch.float32).reshape(-1, 4)}


@pytest.mark.parametrize("scale", SCALES)
def test_shapes_and_no_nans_for_every_scale(scale):
    net = MultiTaskNet(num_keys=5, num_classes=3, scale=scale, frames=2)
    x = torch.rand(2, 6, 72, 128)  # 72 rows: padded to 96 inside
    net.train()
    keys, det = net(x)
    assert keys.shape == (2, 5) and torch.isfinite(keys).all()
    assert det["scores"].shape[:2] == (2, 3) and all(torch.isfinite(f).all() for f in det["feats"])
    net.eval()
    with torch.no_grad():
        keys, (decoded, _) = net(x)
    assert decoded.shape[:2] == (2, 4 + 3) and torch.isfinite(decoded).all()


def test_every_parameter_of_both_heads_gets_a_gradient():
    net = MultiTaskNet(num_keys=4, num_classes=4).train()
    loss_fn = MultiTaskLoss(net, torch.ones(4))
    # At initialisation each Detect level predicts boxes ~15 strides wide (480 px at stride 32), so the
    # assigner hands in-frame objects to strides 8 and 16; one target of that size reaches stride 32 too.
    boxes = [(0.5, 0.6, 0.5, 0.6), (0.2, 0.7, 0.15, 0.2), (0.8, 0.55, 0.06, 0.08), (0.5, 0.5, 1.9, 3.0)]
    keys, det = net(torch.rand(2, 3, 144, 256))
    loss, _ = loss_fn(keys, det, batch_of([True, True], boxes))
    loss.backward()
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]  # the DFL kernel is fixed
    missing = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == [] and len(trainable) > 100


def test_the_loss_places_a_box_where_it_is_in_the_frame():
    """The frame is padded (256x144 runs as 256x160) and Ultralytics scales targets by the input it sees: a box at
    rows 60-70 of the frame must be a target at rows 60-70, not 67-78 (every model before 2026-12-07 learnt that)."""
    net = MultiTaskNet(num_keys=4, num_classes=4).train()
    loss_fn = MultiTaskLoss(net, torch.ones(4))
    seen = []
    preprocess = loss_fn.detection.preprocess
    loss_fn.detection.preprocess = lambda *a, **kw: seen.append(preprocess(*a, **kw)) or seen[-1]
    x1, y1, x2, y2 = 100, 60, 110, 70  # frame pixels of a 256x144 frame
    box = ((x1 + x2) / 2 / 256, (y1 + y2) / 2 / 144, (x2 - x1) / 256, (y2 - y1) / 144)  # as the loader gives it
    keys, det = net(torch.rand(1, 3, 144, 256))
    loss_fn(keys, det, batch_of([True], [box]))
    (target,) = seen
    torch.testing.assert_close(target[0, 0, 1:], torch.tensor([x1, y1, x2, y2], dtype=torch.float32))


def test_batch_without_annotation_gives_zero_detection_loss_and_still_trains_keys():
    net = MultiTaskNet(num_keys=4, num_classes=4).train()
    loss_fn = MultiTaskLoss(net, torch.ones(4))
    keys, det = net(torch.rand(2, 3, 144, 256))
    loss, parts = loss_fn(keys, det, batch_of([False, False]))
    assert parts["det"] == 0.0 and parts["keys"] > 0
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.key_head.parameters())
    detect = net.det.model[-1]
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in detect.parameters())


def test_unannotated_frames_do_not_change_the_detection_loss():
    net = MultiTaskNet(num_keys=4, num_classes=4).train()
    for m in net.modules():  # fixed normalisation statistics, so a frame's features do not depend on the batch
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    loss_fn = MultiTaskLoss(net, torch.ones(4))
    x = torch.rand(2, 3, 144, 256)
    _, det_both = net(x)
    _, with_unannotated = loss_fn(torch.zeros(2, 4), det_both, batch_of([True, False]))
    _, det_first = net(x[:1])
    _, alone = loss_fn(torch.zeros(1, 4), det_first, batch_of([True]))
    assert with_unannotated["det"] == pytest.approx(alone["det"], rel=1e-4)


def test_positive_weights_balance_rare_keys():
    keys = np.array([[1, 0, 0, 0]] * 8 + [[1, 1, 0, 0]] * 2)
    w = positive_weights(keys)
    assert w.tolist() == pytest.approx([1.0, 4.0, 1.0, 1.0])  # W always pressed: 1; A 8 neg / 2 pos; never: 1


def save_net(path, net, scale="t"):
    checkpoint.save(path, net_cfg=checkpoint.net_config(net, scale, 128), profile=default_profile(),
                    class_names=["car", "truck", "cone", "barrier"], thresholds=[0.5, 0.4, 0.3, 0.4],
                    model=net.state_dict(), size=(256, 144))


def test_save_load_gives_bit_identical_outputs(tmp_path):
    torch.manual_seed(3)
    net = MultiTaskNet(num_keys=4, num_classes=4, frames=2).eval()
    path = tmp_path / "net.pt"
    save_net(path, net)
    ckpt = checkpoint.load(path)  # weights_only=True inside
    again = checkpoint.build(ckpt)
    x = torch.rand(3, 6, 144, 256)
    with torch.no_grad():
        (k1, (d1, _)), (k2, (d2, _)) = net(x), again(x)
    torch.testing.assert_close(k1, k2, rtol=0, atol=0)
    torch.testing.assert_close(d1, d2, rtol=0, atol=0)
    assert ckpt["keys"] == ["w", "a", "s", "d"] and ckpt["thresholds"] == [0.5, 0.4, 0.3, 0.4]


def test_corrupt_or_mismatched_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(Crew2Error, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(Crew2Error, match="not a readable crew2 checkpoint"):
        checkpoint.load(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(Crew2Error, match="not a crew2 checkpoint"):
        checkpoint.load(tmp_path / "partial.pt")
    torch.save({"code": Crew2Error("pickled objects are code")}, tmp_path / "pickle.pt")
    with pytest.raises(Crew2Error, match="not a readable crew2 checkpoint"):
        checkpoint.load(tmp_path / "pickle.pt")  # weights_only refuses arbitrary objects
    net = MultiTaskNet(num_keys=4, num_classes=4)
    save_net(tmp_path / "ok.pt", net)
    ckpt = checkpoint.load(tmp_path / "ok.pt")
    with pytest.raises(Crew2Error, match="use the same key profile"):
        checkpoint.check_compatible(ckpt, keys=["up", "left", "right", "down"])
    with pytest.raises(Crew2Error, match="detects"):
        checkpoint.check_compatible(ckpt, class_names=["car"])
    ckpt["net"]["num_keys"] = 5
    with pytest.raises(Crew2Error, match="do not fit"):
        checkpoint.build(ckpt)


def test_pretrained_ultralytics_weights_load_where_shapes_match(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    from crew2.model.net import _yolo_cfg

    source = DetectionModel({**_yolo_cfg("t"), "nc": 80}, ch=3, nc=80, verbose=False)  # a "COCO" model
    path = tmp_path / "coco.pt"
    torch.save({"model": source}, path)  # the layout of Ultralytics' .pt files
    net = MultiTaskNet(num_keys=4, num_classes=4, scale="t")
    with pytest.raises(Crew2Error, match="trust-pickle"):  # a full pickle runs code when loaded: only on request
        load_pretrained(net, str(path))
    n = load_pretrained(net, str(path), trust_pickle=True)
    ours = net.det.state_dict()
    theirs = source.state_dict()
    matching = [k for k in ours if k in theirs and ours[k].shape == theirs[k].shape]
    assert n == len(matching) and 0 < n < len(ours)  # the class branches (80 vs 4) do not fit
    first = "model.0.conv.weight"
    torch.testing.assert_close(ours[first], theirs[first], rtol=0, atol=0)
    with pytest.raises(Crew2Error, match="never downloads"):
        load_pretrained(net, str(tmp_path / "yolo11n.pt"))


def test_a_crew2_checkpoint_warm_starts_a_stacked_model_as_the_single_frame_one(tmp_path):
    torch.manual_seed(4)
    one = MultiTaskNet(num_keys=4, num_classes=4).eval()
    path = tmp_path / "one.pt"
    save_net(path, one)
    two = MultiTaskNet(num_keys=4, num_classes=4, frames=2).eval()
    assert load_pretrained(two, str(path)) == len(two.state_dict()), "every tensor, the key head too"
    older, newest = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        (k1, (d1, _)), (k2, (d2, _)) = one(newest), two(torch.cat([older, newest], 1))
    torch.testing.assert_close(k2, k1)  # the older frame starts with zero weight: same outputs
    torch.testing.assert_close(d2, d1)
    other = MultiTaskNet(num_keys=5, num_classes=4).eval()  # another key profile: the key head's last layer
    assert load_pretrained(other, str(path)) < len(other.state_dict())


def test_nms_keeps_the_best_of_overlapping_boxes_per_class_and_drops_low_scores():
    from crew2.detection.metrics import nms

    # Decoded Detect output (B, 4 + classes, anchors): centre x, centre y, w, h, then class scores.
    boxes = [(50, 50, 20, 20), (51, 50, 20, 20), (150, 60, 30, 10), (52, 50, 20, 20), (100, 100, 10, 10)]
    scores = [(0.9, 0.0), (0.8, 0.0), (0.0, 0.7), (0.0, 0.6), (0.1, 0.0)]
    decoded = torch.tensor([[*b, *c] for b, c in zip(boxes, scores, strict=True)]).T[None].float()
    (kept,) = nms(decoded, conf=0.25, iou=0.5)
    assert kept[:, 4].tolist() == pytest.approx([0.9, 0.7, 0.6])  # the 0.8 overlaps the 0.9 of its class
    assert kept[:, 5].tolist() == [0.0, 1.0, 1.0]  # the 0.6 overlaps only a box of another class
    assert kept[0, :4].tolist() == pytest.approx([40, 40, 60, 60])


def test_the_where_head_tells_left_from_right_where_a_mean_cannot():
    where = Where(channels=8, points=4)
    with torch.no_grad():
        where.points.weight.zero_().add_(1.0)
        where.points.bias.zero_()
    left, right = torch.zeros(1, 8, 5, 8), torch.zeros(1, 8, 5, 8)
    left[..., 2, 1], right[..., 2, 6] = 4.0, 4.0  # the same blob, on either side of the picture
    a, b = where(left), where(right)
    assert a.shape == (1, 8 + 2 * 4)
    torch.testing.assert_close(a[:, :8], b[:, :8])  # the means are the same
    assert (a[:, 8:12] < -0.3).all() and (b[:, 8:12] > 0.3).all()  # x: left is negative, right positive
    torch.testing.assert_close(a[:, 12:], b[:, 12:])  # y: the same row


@pytest.mark.parametrize("key_pool", KEY_POOLS)
def test_key_pooling_round_trips_through_a_checkpoint(tmp_path, key_pool):
    net = MultiTaskNet(num_keys=4, num_classes=4, key_pool=key_pool).eval()
    path = tmp_path / "m.pt"
    checkpoint.save(path, net_cfg=checkpoint.net_config(net, "t", 128), profile=default_profile(),
                    class_names=["car", "truck", "cone", "barrier"], thresholds=[0.5] * 4, model=net.state_dict(),
                    size=(256, 144))
    ckpt = checkpoint.load(path)
    assert ckpt["net"]["key_pool"] == key_pool
    x = torch.rand(1, 3, 144, 256)
    with torch.no_grad():
        torch.testing.assert_close(checkpoint.build(ckpt)(x)[0], net(x)[0])
    del ckpt["net"]["key_pool"]  # a checkpoint from before key_pool existed: its head was the mean's
    if key_pool == "mean":
        checkpoint.build(ckpt)
    else:
        with pytest.raises(Crew2Error, match="do not fit"):
            checkpoint.build(ckpt)
