"""Annotation: YOLO export/import round trip, Ultralytics accepts the export, edits keep everything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crew2.data.session import NOT_ANNOTATED, REVIEWED, SIM_TRUTH, Session
from crew2.errors import Crew2Error
from crew2.record.run import RecordConfig, record
from detection.classes import load_spec
from detection.store import write_annotations
from detection.yolo_io import export_yolo, import_yolo

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["car", "truck", "cone", "barrier"]


@pytest.fixture
def sim_sessions(tmp_path) -> list[Path]:
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"sim{seed}.h5"
        record(RecordConfig(source="sim", out=path, frames=40, seed=seed))
        paths.append(path)
    return paths


def snapshot(path: Path) -> dict:
    s = Session(path)
    out = {"keys": s.keys(), "times": s.times(), "sources": s.box_sources(),
           "boxes": [s.boxes(i) for i in range(len(s))], "frames": [s.f["frames"][i].tobytes() for i in range(len(s))]}
    s.close()
    return out


def test_yolo_round_trip_is_exact(sim_sessions, tmp_path):
    before = [snapshot(p) for p in sim_sessions]
    assert sum(len(b) for b in before[0]["boxes"]) > 0
    counts = export_yolo({"train": sim_sessions[:1], "val": sim_sessions[1:]}, tmp_path / "yolo", NAMES)
    assert counts == {"train": 40, "val": 40}
    for p in sim_sessions:  # wipe the boxes, then read them back from the YOLO labels
        write_annotations(p, {i: (np.zeros((0, 5)), NOT_ANNOTATED) for i in range(40)}, NAMES)
    assert all(len(b) == 0 for b in snapshot(sim_sessions[0])["boxes"])
    imported = import_yolo(tmp_path / "yolo" / "labels", sim_sessions, NAMES)
    assert imported == {"sim0.h5": 40, "sim1.h5": 40}
    for path, old in zip(sim_sessions, before, strict=True):
        new = snapshot(path)
        for a, b in zip(old["boxes"], new["boxes"], strict=True):
            np.testing.assert_array_equal(a, b)
        assert (new["sources"] == REVIEWED).all()
        assert new["frames"] == old["frames"], "frames untouched, in order"
        np.testing.assert_array_equal(new["keys"], old["keys"])
        np.testing.assert_array_equal(new["times"], old["times"])


def test_ultralytics_checker_and_loader_accept_the_export(sim_sessions, tmp_path, monkeypatch):
    import ultralytics.data.utils as data_utils
    from ultralytics.data.dataset import YOLODataset

    monkeypatch.setattr(data_utils, "check_font", lambda *a, **k: None)  # it would try to download a font
    export_yolo({"train": sim_sessions[:1], "val": sim_sessions[1:]}, tmp_path / "yolo", NAMES)
    data = data_utils.check_det_dataset(str(tmp_path / "yolo" / "data.yaml"), autodownload=False)
    assert data["nc"] == 4 and data["names"] == dict(enumerate(NAMES))
    dataset = YOLODataset(img_path=data["train"], imgsz=256, data=data, task="detect", augment=False)
    s = Session(sim_sessions[0])
    assert len(dataset.labels) == len(s)
    for label in dataset.labels:
        i = int(Path(label["im_file"]).stem.split("_")[-1])
        boxes = s.boxes(i)
        assert label["shape"] == (144, 256)
        np.testing.assert_array_equal(label["cls"].reshape(-1), boxes[:, 4])
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / 256, (boxes[:, 1] + boxes[:, 3]) / 2 / 144
        np.testing.assert_allclose(label["bboxes"][:, 0], cx, atol=1e-5)
        np.testing.assert_allclose(label["bboxes"][:, 1], cy, atol=1e-5)


def test_bad_annotations_are_refused_and_nothing_is_lost(sim_sessions, tmp_path):
    path = sim_sessions[0]
    before = snapshot(path)
    with pytest.raises(Crew2Error, match="outside the 256x144 frame"):
        write_annotations(path, {0: (np.zeros((0, 5)), REVIEWED), 1: (np.array([[10, 10, 300, 50, 0]]), REVIEWED)},
                          NAMES)
    with pytest.raises(Crew2Error, match="unknown class id"):
        write_annotations(path, {3: (np.array([[10, 10, 30, 50, 9]]), REVIEWED)}, NAMES)
    with pytest.raises(Crew2Error, match="does not exist"):
        write_annotations(path, {400: (np.zeros((0, 5)), REVIEWED)}, NAMES)
    with pytest.raises(Crew2Error, match="annotated with classes"):
        write_annotations(path, {0: (np.zeros((0, 5)), REVIEWED)}, ["person"])
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "sim0_000002.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (labels / "other_000001.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(Crew2Error, match="not a frame of the given sessions"):
        import_yolo(labels, sim_sessions, NAMES)
    (labels / "other_000001.txt").unlink()
    (labels / "sim0_000003.txt").write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(Crew2Error, match="not a YOLO label line"):
        import_yolo(labels, sim_sessions, NAMES)
    after = snapshot(path)
    assert after["frames"] == before["frames"]
    for a, b in zip(before["boxes"], after["boxes"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert (after["sources"] == SIM_TRUTH).all(), "a refused import wrote nothing"


def test_dataset_spec(tmp_path):
    spec = load_spec(ROOT / "datasets" / "sim.yaml")
    assert spec.names == NAMES and spec.teacher["bus"] == "truck"
    bad = tmp_path / "bad.yaml"
    bad.write_text("names: [car]\nteacher: {bus: lorry}\n")
    with pytest.raises(Crew2Error, match="unknown class"):
        load_spec(bad)
