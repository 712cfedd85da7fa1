"""Training: it learns, it resumes exactly, it runs under torchrun (DDP, gloo), bad input is clear."""

from __future__ import annotations

import csv
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
import yaml

from crew2.data.session import BOX_SOURCE, NOT_ANNOTATED
from crew2.errors import Crew2Error
from crew2.model import checkpoint
from crew2.model.checkpoint import detector_trained
from crew2.model.engine import DEFAULT_WEIGHTS, export_onnx, load_engine
from crew2.record.run import RecordConfig, record
from crew2.sim.world import SimConfig
from crew2.train.metrics import MARGIN, RARE
from crew2.train.trainer import TrainConfig, starting_weights, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_sessions(tmp_path_factory) -> list[Path]:
    """Three small sim sessions at 64x36 with strong DART noise: frequent, visible corrections to learn."""
    folder = tmp_path_factory.mktemp("tiny")
    paths = []
    for seed in range(3):
        path = folder / f"s{seed}.h5"
        record(RecordConfig(source="sim", out=path, frames=800, seed=seed, noise=1.5, width=64, height=36,
                            sim=SimConfig(width=64, height=36)))
        paths.append(path)
    return paths


def config(sessions: list[Path], out: Path, **kw) -> TrainConfig:
    base = dict(train=sessions[:2], val=sessions[2:], out=out, batch=32, workers=0, lr=3e-3, ema=0.0, pretrained=None)
    return TrainConfig(**{**base, **kw})


def test_short_training_learns_keys_and_obstacles(tiny_sessions, tmp_path):
    validated = []  # (batches done, of total) after each validation batch
    result = train(config(tiny_sessions, tmp_path / "run", epochs=8), on_validate=lambda *a: validated.append(a))
    assert sum(done == total for done, total in validated) == 8 and validated[0][0] == 1, "progress every epoch"
    first, last = result.history[0], result.history[-1]
    assert last["train_keys"] < 0.85 * first["train_keys"], "the key loss falls"
    assert last["train_det"] < 0.6 * first["train_det"], "the detection loss falls"
    assert last["val_map50"] > 0.05, "and the head finds boxes where they are (0.0 with the targets stretched)"
    assert last["val_f1"] > last["val_constant_f1"] + 0.02, "better than always pressing every key"
    for name in ("last.pt", "best.pt", "metrics.csv", "losses.png", "key_f1.png", "confusion.png"):
        assert (tmp_path / "run" / name).is_file()
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and "val_map50_95" in rows[0]
    ckpt = checkpoint.load(tmp_path / "run" / "best.pt")
    assert ckpt["keys"] == ["w", "a", "s", "d"] and len(ckpt["thresholds"]) == 4
    assert ckpt["class_names"] == ["car", "truck", "cone", "barrier"] and ckpt["size"] == [64, 36]
    assert set(ckpt) <= set(checkpoint.INFERENCE), "best.pt drives and starts runs: no optimizer state"
    assert {"optimizer", "raw_model", "rng"} <= set(checkpoint.load(tmp_path / "run" / "last.pt")), "last.pt resumes"
    args = yaml.safe_load((tmp_path / "run" / "args.yaml").read_text())
    assert args["epochs"] == 8 and args["batch"] == 32 and args["train"] == [str(p) for p in tiny_sessions[:2]]
    # Every sim frame carries its ground truth: the obstacle head stepped on every frame of every batch (32 a
    # step, bar the last of an epoch's pass over the data).
    epoch = next(h for h in result.history if h["epoch"] == ckpt["epoch"])
    assert 0.99 * 32 * epoch["step"] < ckpt["detector"]["annotated_frames"] <= 32 * epoch["step"]
    assert ckpt["detector"]["map50"] == epoch["val_map50"], "these weights' own validation mAP50"
    assert detector_trained(load_engine(tmp_path / "run" / "best.pt").info.detector)[0] == (
        epoch["val_map50"] >= checkpoint.MAP50_FLOOR)


def test_a_head_that_never_saw_an_annotated_frame_is_recorded_so(tiny_sessions, tmp_path):
    """Sessions without annotations (a game crew2 has no boxes for): the checkpoint and its ONNX export say the
    obstacle head never saw an annotated frame, so driving leaves its boxes alone."""
    bare = []
    for path in tiny_sessions:
        bare.append(tmp_path / path.name)
        shutil.copy(path, bare[-1])
        with h5py.File(bare[-1], "r+") as f:
            f[BOX_SOURCE][:] = NOT_ANNOTATED
    train(config(bare, tmp_path / "run", epochs=1, max_steps=2))
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["detector"] == {"annotated_frames": 0, "map50": None}
    onnx = load_engine(export_onnx(tmp_path / "run" / "last.pt", tmp_path / "last.onnx"))
    assert onnx.info == load_engine(tmp_path / "run" / "last.pt").info, "the record travels with the export"
    assert detector_trained(onnx.info.detector) == (False, "the obstacle head never saw an annotated frame")


def test_resume_continues_exactly(tiny_sessions, tmp_path):
    one = dict(train=tiny_sessions[:1], epochs=2, ema=0.99)  # nothing to learn here: one training session will do
    straight = train(config(tiny_sessions, tmp_path / "a", **one))
    steps = straight.history[0]["step"]
    train(config(tiny_sessions, tmp_path / "b", **one, max_steps=steps))  # stops after epoch 0
    assert checkpoint.load(tmp_path / "b" / "last.pt")["epoch"] == 0
    resumed = train(config(tiny_sessions, tmp_path / "b", **one, resume=True))
    assert resumed.history[-1]["step"] == straight.history[-1]["step"] == 2 * steps
    a, b = checkpoint.load(tmp_path / "a" / "last.pt"), checkpoint.load(tmp_path / "b" / "last.pt")
    for name in ("raw_model", "model"):
        for k in a[name]:
            torch.testing.assert_close(a[name][k], b[name][k], rtol=0, atol=0, msg=f"{name}.{k}")
    assert a["thresholds"] == b["thresholds"]
    assert a["detector"] == b["detector"] and a["detector"]["annotated_frames"] == 32 * 2 * steps


def test_two_process_ddp_run_on_cpu(tiny_sessions, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    result = subprocess.run(
        [torchrun, "--nproc-per-node", "2", "--master-port", "29517", "-m", "crew2", "train",
         str(tiny_sessions[0]), str(tiny_sessions[1]), str(tiny_sessions[2]), "--val-fraction", "0.34", "--out",
         str(out), "--epochs", "1", "--max-steps", "6", "--batch", "16", "--workers", "0", "--device", "cpu",
         "--pretrained", "none"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    ckpt = checkpoint.load(out / "last.pt")
    assert ckpt["step"] == 6 and ckpt["train_config"]["epochs"] == 1
    assert ckpt["detector"]["annotated_frames"] == 6 * 16 * 2, "both ranks' annotated frames are counted"
    steps = [line.split(",")[0] for line in result.stdout.splitlines() if line.startswith("epoch 0: step ")]
    assert steps and len(steps) == len(set(steps)), "a log (no terminal) gets progress lines, from rank 0 only"
    assert all(s.endswith("/6") for s in steps), f"the total honours --max-steps: {steps}"
    assert any(re.match(r"epoch 0: keys F1 .*, mAP50-95 \d\.\d{3}", line) for line in result.stdout.splitlines()), \
        "an epoch's results are one line in a log, not wrapped at 80 columns"
    best = checkpoint.load(out / "best.pt")
    line = next(line for line in result.stdout.splitlines() if line.startswith("calibrated thresholds (epoch 0, "))
    for k, t in zip(best["keys"], best["thresholds"], strict=True):  # what ships, and why for a key too rare
        rare = best["metrics"][f"{k}_pressed"] < RARE
        assert f"{k.upper()} {t:.2f}" in line and (f"{k.upper()} {t:.2f} (down in" in line) == rare, line
    lines = result.stdout.splitlines()  # six steps learn nothing: the warning follows the epoch and ends the run
    epoch_line = next(i for i, line in enumerate(lines) if line.startswith("epoch 0: keys F1 "))
    assert lines[epoch_line + 1].startswith("WARNING: this model looks useless"), lines[epoch_line:epoch_line + 2]
    assert lines[-1].startswith("best.pt: WARNING: this model looks useless") and "crew2 data stats" in lines[-1]


def test_train_config_and_cli_errors(tiny_sessions, tmp_path):
    with pytest.raises(Crew2Error, match="in both the training and the validation"):
        TrainConfig(train=tiny_sessions[:2], val=tiny_sessions[1:], out=tmp_path)
    with pytest.raises(Crew2Error, match="unknown model scale"):
        config(tiny_sessions, tmp_path, scale="xxl")
    untrained = train(config(tiny_sessions, tmp_path / "r", epochs=1, max_steps=2))
    assert untrained.warning.startswith("WARNING: this model looks useless"), "two steps learn nothing"
    with open(tmp_path / "r" / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["val_f1_over_constant"]) < MARGIN and float(row["val_suspect"]) == 1, "benchmarks read these"
    with pytest.raises(Crew2Error, match="holds a training run already"):
        train(config(tiny_sessions, tmp_path / "r", epochs=1, max_steps=2))
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--split", str(tmp_path / "no.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no such split file" in result.stderr


def test_training_starts_from_the_shipped_weights_by_default(tiny_sessions, tmp_path):
    auto = config(tiny_sessions, tmp_path / "run", pretrained="auto", epochs=1, max_steps=1, lr=1e-12)
    assert starting_weights(auto) == str(DEFAULT_WEIGHTS)
    assert starting_weights(config(tiny_sessions, tmp_path, pretrained="auto", scale="n")) is None  # no fit
    assert starting_weights(config(tiny_sessions, tmp_path, pretrained="none")) is None
    train(auto)
    shipped = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)["model"]
    mine = checkpoint.load(tmp_path / "run" / "last.pt")["raw_model"]
    backbone = [k for k in shipped if k.startswith("det.model.") and mine[k].dtype.is_floating_point]
    assert len(backbone) > 100 and all(torch.allclose(mine[k], shipped[k], atol=1e-6) for k in backbone
                                       if "running" not in k)  # batch norm statistics move in one step
    assert mine["key_head.0.points.weight"].shape[0] == 32  # the key head is this run's own ("where")


def test_learning_rate_warms_up_linearly_then_falls_on_a_cosine_to_five_percent():
    from crew2.train.trainer import _schedule

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=0.01)
    scheduler = _schedule(optimizer, total=110, warmup=10, lr=0.01)
    lrs = []
    for _ in range(110):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.001) and lrs[4] == pytest.approx(0.005)  # (step + 1) / warmup of the peak
    assert lrs[9] == pytest.approx(0.01) and lrs[10] == pytest.approx(0.01)
    assert lrs[60] == pytest.approx(0.01 * (0.05 + 0.95 / 2))  # half way down the cosine
    assert lrs[109] == pytest.approx(0.0005, abs=1e-5) and all(a >= b for a, b in itertools.pairwise(lrs[10:]))
