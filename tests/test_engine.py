"""Engines and export: ONNX agrees with PyTorch, the same decoding, metadata travels, shadow-mode eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from crew2.data.loader import ANNOTATED, BATCH_IDX, BBOXES, CLS, IMAGE, KEYS
from crew2.data.session import SIM_TRUTH, SessionMeta, SessionWriter, encode
from crew2.errors import Crew2Error
from crew2.keys import default_profile
from crew2.model import checkpoint
from crew2.model.checkpoint import MAP50_FLOOR, DetectorTraining, detector_trained
from crew2.model.engine import ModelInfo, export_onnx, load_engine
from crew2.model.loss import MultiTaskLoss
from crew2.model.net import MultiTaskNet
from crew2.sim.env import SimEnv
from crew2.sim.world import CLASSES, SimConfig
from crew2.train.shadow import shadow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """A model trained for a few dozen steps on sim frames with their ground-truth boxes: its detections have
    distinct scores, so NMS keeps boxes and has no ties to break."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    net = MultiTaskNet(num_keys=4, num_classes=4, frames=2, key_pool="where").train()
    loss_fn = MultiTaskLoss(net, torch.ones(4))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    env = SimEnv(SimConfig(traffic=2.0))
    env.reset(seed=5)
    frames, infos = zip(*[(o, i) for o, _, _, _, i in (env.step(env.action_of(True, False, False, False))
                                                         for _ in range(9))], strict=True)
    x = torch.from_numpy(np.stack([np.concatenate([frames[i], frames[i + 1]], axis=2) for i in range(8)]))
    x = x.permute(0, 3, 1, 2).float() / 255  # (8, 6, 144, 256)
    idx, cls, xywh = [], [], []
    for b, info in enumerate(infos[1:]):
        for (x1, y1, x2, y2), c in zip(info["boxes"], info["classes"], strict=True):
            idx.append(b), cls.append([c]), xywh.append([(x1 + x2) / 512, (y1 + y2) / 288, (x2 - x1) / 256,
                                                          (y2 - y1) / 144])
    batch = {KEYS: torch.ones(8, 4), IMAGE: torch.zeros(8, 6, 144, 256, dtype=torch.uint8),
             ANNOTATED: torch.ones(8, dtype=torch.bool),
             BATCH_IDX: torch.tensor(idx, dtype=torch.float32), CLS: torch.tensor(cls, dtype=torch.float32),
             BBOXES: torch.tensor(xywh, dtype=torch.float32)}
    for _ in range(40):
        keys, det = net(x)
        loss, _ = loss_fn(keys, det, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # Ultralytics starts class biases near -8.5; 40 steps do not undo that: help them
        for conv in net.det.model[-1].cv3:
            conv[-1].bias.add_(6.0)
    path = folder / "m.pt"
    checkpoint.save(path, net_cfg=checkpoint.net_config(net, "t", 128), profile=default_profile(),
                    class_names=list(CLASSES), thresholds=[0.5, 0.4, 0.6, 0.45], model=net.eval().state_dict(),
                    size=(256, 144), detector={"annotated_frames": 320, "map50": 0.125})
    return path, export_onnx(path, folder / "m.onnx")


def sim_inputs(n: int) -> np.ndarray:
    env = SimEnv(SimConfig(traffic=2.0))
    env.reset(seed=1)
    frames = [env.step(env.action_of(True, False, False, False))[0] for _ in range(n + 1)]
    return np.stack([np.concatenate([frames[i], frames[i + 1]], axis=2) for i in range(n)])  # (n, H, W, 6)


def test_onnx_agrees_with_pytorch_and_decodes_the_same(model):
    pt, onnx_path = model
    torch_engine, onnx_engine = load_engine(pt), load_engine(onnx_path)
    assert onnx_engine.name == "onnx" and torch_engine.name == "torch"
    assert onnx_engine.info == torch_engine.info  # the metadata traveled with the ONNX file
    assert onnx_engine.info.detector == DetectorTraining(320, 0.125)
    x = sim_inputs(4)
    a, b = torch_engine(x), onnx_engine(x)
    assert sum(len(p.boxes) for p in a) > 0, "the test exercises NMS"
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_allclose(pa.key_probs, pb.key_probs, atol=1e-5)
        assert len(pa.boxes) == len(pb.boxes)
        np.testing.assert_allclose(pa.boxes[:, :4], pb.boxes[:, :4], atol=0.05)
        np.testing.assert_array_equal(pa.boxes[:, 5], pb.boxes[:, 5])


def test_whether_the_obstacle_head_was_trained():
    """From what a checkpoint records, or, made before crew2 recorded it, from its metrics and loss history."""
    assert detector_trained(DetectorTraining(320, 0.125))[0]
    assert detector_trained(DetectorTraining(320, None))[0], "annotated training frames, none to validate on"
    assert not detector_trained(DetectorTraining(0, None))[0]
    assert not detector_trained(DetectorTraining(320, MAP50_FLOOR / 2))[0]
    assert detector_trained(None) == (True, "the model does not record how its obstacle head was trained")
    nan = float("nan")
    old = {"metrics": {"map50": 0.052}, "history": [{"train_det": 2.3}]}  # as the shipped model was saved
    assert DetectorTraining.of(old) == DetectorTraining(None, 0.052)
    never = {"metrics": {"map50": nan}, "history": [{"train_det": 0.0}, {"train_det": 0.0}]}  # no annotations
    assert DetectorTraining.of(never) == DetectorTraining(0, None)
    assert DetectorTraining.of({"metrics": {"map50": nan}, "history": [{"train_det": 1.5}]}) is None
    assert DetectorTraining.of({}) is None


def test_a_model_trained_before_the_box_fix_has_its_boxes_put_back_where_they_are(model, tmp_path):
    """Models saved before 2026-12-07 (the shipped one too) learnt every box stretched by 160/144 in y (the padded
    input over the frame); their boxes are scaled back, the same through PyTorch and ONNX. New ones are left alone."""
    pt, onnx_path = model
    new = load_engine(pt)
    assert new.info.box_targets == "frame" and new.info.box_scale() is None
    old = torch.load(pt, weights_only=True)
    del old["box_targets"]
    torch.save(old, tmp_path / "old.pt")
    before = load_engine(tmp_path / "old.pt")
    np.testing.assert_allclose(before.info.box_scale(), [1, 0.9, 1, 0.9])
    x = sim_inputs(4)
    for a, b in zip(new(x), before(x), strict=True):
        assert len(a.boxes) == len(b.boxes) > 0
        np.testing.assert_allclose(b.boxes[:, [0, 2]], a.boxes[:, [0, 2]], atol=1e-3)
        np.testing.assert_allclose(b.boxes[:, [1, 3]], a.boxes[:, [1, 3]] * 0.9, atol=1e-3)
    meta = json.loads(load_engine(onnx_path).info.to_json())
    assert meta["box_targets"] == "frame"
    del meta["box_targets"]  # an export made before the fix
    assert ModelInfo.from_json(json.dumps(meta)).box_scale() is not None
    assert ModelInfo.from_json(json.dumps({**meta, "size": [256, 160]})).box_scale() is None, "no padding, no stretch"


def test_engines_refuse_the_wrong_model_for_the_job(model, tmp_path):
    pt, onnx_path = model
    with pytest.raises(Crew2Error, match="use the same key profile"):
        load_engine(onnx_path, keys=["up", "left", "right", "down"])
    with pytest.raises(Crew2Error, match="detects"):
        load_engine(pt, class_names=["car", "person"])
    with pytest.raises(Crew2Error, match=r"runs \.onnx files"):
        load_engine(pt, "onnx")
    with pytest.raises(Crew2Error, match="no such model file"):
        load_engine(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(Crew2Error, match="not a readable ONNX model"):
        load_engine(tmp_path / "bad.onnx")


def test_shadow_eval_replays_sessions_in_order(model, tmp_path):
    pt, _ = model
    meta = SessionMeta.for_profile(default_profile(), fps=20, width=256, height=144, source="sim",
                                   class_names=list(CLASSES))
    env = SimEnv(SimConfig(traffic=2.0))
    env.reset(seed=2)
    path = tmp_path / "held_out.h5"
    with SessionWriter(path, meta) as w:
        for i in range(24):
            env.step(env.action_of(True, False, i % 6 == 0, False))
            f = env.frame
            boxes = np.concatenate([f.boxes, f.classes[:, None]], axis=1)
            w.append(encode(f.image, 90), env.action_of(True, False, i % 6 == 0, False), i / 20, boxes, SIM_TRUTH)
    result = shadow(load_engine(pt), [path], mp4=tmp_path / "shadow.mp4")
    assert result.frames == 24 and result.confusion.shape == (4, 2, 2) and result.confusion.sum() == 4 * 24
    assert 0 <= result.metrics["f1"] <= 1 and not np.isnan(result.metrics["map50"])
    cap = cv2.VideoCapture(str(tmp_path / "shadow.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24


def test_export_and_eval_commands(model, tmp_path):
    pt, _ = model
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", str(pt), "--out",
                             str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "agree with PyTorch" in result.stdout and (tmp_path / "x.onnx").is_file()
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "eval", str(tmp_path / "x.onnx"),
                             str(tmp_path / "nothing")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such file or folder" in result.stderr


def test_slim_checkpoint_keeps_what_inference_needs(model, tmp_path):
    pt, _ = model
    full = torch.load(pt, weights_only=True)
    full.update(optimizer={"state": {}, "lr": torch.zeros(1000)}, rng=torch.zeros(16),
                raw_model={k: v.clone() for k, v in full["model"].items()})
    torch.save(full, tmp_path / "full.pt")
    slim = checkpoint.slim(tmp_path / "full.pt", tmp_path / "slim.pt")
    kept = torch.load(slim, weights_only=True)
    assert not {"optimizer", "raw_model", "rng"} & set(kept)
    assert all(torch.equal(kept["model"][k], v) for k, v in full["model"].items())
    assert slim.stat().st_size < (tmp_path / "full.pt").stat().st_size
    frames = sim_inputs(2)
    for a, b in zip(load_engine(pt)(frames), load_engine(slim)(frames), strict=True):
        np.testing.assert_array_equal(a.key_probs, b.key_probs)


def test_a_loaded_engine_has_its_nms_library_before_the_first_frame():
    """Loading a model runs a frame through it: Ultralytics (the NMS) is imported then, not in a drive's first
    frame."""
    from crew2.shipped import shipped

    code = ("import sys; from crew2.model.engine import load_engine; "
            f"load_engine({str(shipped('weights/crew2-sim-t.onnx'))!r}, 'onnx', threads=1); "
            "print('ultralytics.utils.nms' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["True"], out.stderr


def test_export_sets_a_keys_threshold_by_hand(model, tmp_path):
    """`--threshold s=0.9` goes into the ONNX file and the slim checkpoint (the decoder presses from it); what
    was calibrated is kept beside it. A key the model lacks, or a value that is no probability, writes nothing."""
    pt, _ = model
    calibrated = checkpoint.load(pt)["thresholds"]

    def export(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", str(pt), *args],
                              capture_output=True, text=True, timeout=300)

    result = export("--slim", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m.onnx"), "--threshold", "s=0.9",
                    "--threshold", "w=0.2")
    assert result.returncode == 0, result.stderr
    set_by_hand = {"w": 0.2, "s": 0.9}
    for path in ("m.pt", "m.onnx"):
        info = load_engine(tmp_path / path).info
        wanted = [set_by_hand.get(k, t) for k, t in zip(info.keys, calibrated, strict=True)]
        assert info.thresholds == pytest.approx(wanted)
    assert checkpoint.load(tmp_path / "m.pt")["calibrated_thresholds"] == pytest.approx(calibrated)
    result = export("--out", str(tmp_path / "alone.onnx"), "--threshold", "s=0.9")  # no --slim copy to carry it
    assert result.returncode == 0, result.stderr
    assert load_engine(tmp_path / "alone.onnx").info.thresholds == pytest.approx(
        [0.9 if k == "s" else t for k, t in zip(info.keys, calibrated, strict=True)])
    for bad, says in (("x=0.5", "has no key 'x'"), ("s=1.5", "between 0 and 1"), ("s", "write KEY=VALUE")):
        result = export("--slim", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "bad.onnx"), "--threshold", bad)
        assert result.returncode == 2 and says in result.stderr, result.stderr
        assert not (tmp_path / "bad.pt").exists() and not (tmp_path / "bad.onnx").exists()
