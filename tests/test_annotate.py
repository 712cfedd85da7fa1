"""Annotation: YOLO export/import round trip, Ultralytics accepts the export, edits keep everything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crew2.data.session import NOT_ANNOTATED, REVIEWED, SIM_TRUTH, Session
from crew2.detection.classes import load_spec
from crew2.detection.store import write_annotations
from crew2.detection.yolo_io import export_yolo, import_yolo
from crew2.errors import Crew2Error
from crew2.record.run import RecordConfig, record

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


def test_auto_from_sim_rebuilds_the_ground_truth(sim_sessions):
    from crew2.detection.simtruth import annotate_from_sim

    path = sim_sessions[0]
    truth = snapshot(path)["boxes"]
    write_annotations(path, {i: (np.zeros((0, 5)), NOT_ANNOTATED) for i in range(40)}, NAMES)
    assert annotate_from_sim(path) == 40
    after = snapshot(path)
    for a, b in zip(truth, after["boxes"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert (after["sources"] == SIM_TRUTH).all()


def test_auto_from_sim_refuses_other_sessions(tmp_path):
    from crew2.data.session import SessionMeta, SessionWriter, encode
    from crew2.detection.simtruth import annotate_from_sim
    from crew2.keys import default_profile

    path = tmp_path / "screen.h5"
    meta = SessionMeta.for_profile(default_profile(), fps=20, width=64, height=36, source="screen")
    with SessionWriter(path, meta) as w:
        w.append(encode(np.zeros((36, 64, 3), np.uint8), 90), np.zeros(4), 0.0)
    with pytest.raises(Crew2Error, match="not a simulator session"):
        annotate_from_sim(path)


def test_teacher_prelabels_with_the_class_mapping(sim_sessions, tmp_path):
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from crew2.data.session import TEACHER
    from crew2.detection.teacher import load_teacher, prelabel
    from crew2.model.net import _yolo_cfg

    model = DetectionModel({**_yolo_cfg("t"), "nc": 3}, ch=3, nc=3, verbose=False)  # built here, no download
    model.names = {0: "person", 1: "car", 2: "bus"}
    with torch.no_grad():  # each detection level prefers another class: car, bus, person
        for level, conv in enumerate(model.model[-1].cv3):
            conv[-1].bias.copy_(torch.tensor([[-1.0, 4.0, 1.0], [-1.0, 1.0, 4.0], [4.0, -1.0, -1.0]][level]))
    torch.save({"model": model, "train_args": {}}, tmp_path / "teacher.pt")
    spec = load_spec(ROOT / "datasets" / "sim.yaml")
    path = sim_sessions[0]
    write_annotations(path, {5: (np.array([[1, 1, 9, 9, 3]]), REVIEWED)}, NAMES)  # a person's work
    with pytest.raises(Crew2Error, match="trust-pickle"):  # a full pickle runs code when loaded: only on request
        load_teacher(tmp_path / "teacher.pt")
    seen = []
    done = prelabel(load_teacher(tmp_path / "teacher.pt", trust_pickle=True), [path], spec, conf=0.5,
                    on_frames=seen.append)
    assert done == {"sim0.h5": 39}, "every frame but the reviewed one"
    assert sum(seen) == 40 and len(seen) > 2, "progress over every frame, labelled or left alone"
    after = snapshot(path)
    classes = np.concatenate([b[:, 4] for b in after["boxes"]])
    assert set(classes.tolist()) == {0.0, 1.0, 3.0}, "car -> car, bus -> truck, person dropped; frame 5 kept"
    np.testing.assert_array_equal(after["boxes"][5], [[1, 1, 9, 9, 3]])
    assert after["sources"][5] == REVIEWED and (np.delete(after["sources"], 5) == TEACHER).all()
    with pytest.raises(Crew2Error, match="never downloads"):
        load_teacher(tmp_path / "yolo11n.pt")


def test_select_marks_frames_worth_annotating(sim_sessions):
    from crew2.detection.select import hard_inputs, select

    path = sim_sessions[0]
    chosen, counts = select(path, every=10, hard=True, min_gap=3)
    assert counts["every"] == 4 and set(range(0, 40, 10)) <= set(chosen.tolist())
    assert np.all(np.diff(chosen) >= 3)
    s = Session(path)
    assert s.f["selected"][:].sum() == len(chosen)
    s.close()
    keys = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]])
    assert hard_inputs(keys, ["w", "a", "s", "d"], {"brake": "s", "left": "a", "right": "d"}).tolist() == \
        [False, True, False, True, False]
    chosen, _ = select(path, every=1, min_gap=1, budget=5)
    assert len(chosen) == 5 and chosen[0] == 0 and chosen[-1] == 39
    with pytest.raises(Crew2Error, match="at least one of"):
        select(path)


def test_review_editing_logic_without_a_screen(sim_sessions):
    from crew2.detection.review import load_state, save

    path = sim_sessions[0]
    state = load_state(path, NAMES, only="all")
    start = state.boxes[0].copy()
    state.set_class(2)
    state.add(100, 80, 90, 60)  # corners in any order
    assert state.boxes[0][-1].tolist() == [90, 60, 100, 80, 2] and state.selected == len(start)
    state.add(10, 10, 11, 11)  # a click, not a box
    assert len(state.boxes[0]) == len(start) + 1
    state.set_class(3)  # reclass the selected box
    assert state.boxes[0][-1, 4] == 3
    state.select_at(95, 70)
    state.delete()
    np.testing.assert_array_equal(state.boxes[0], start)
    state.undo()
    assert state.boxes[0][-1].tolist() == [90, 60, 100, 80, 3]
    state.next()
    state.accept()
    with pytest.raises(Crew2Error, match="class 9 does not exist"):
        state.set_class(9)
    assert save(path, state) == 2
    after = snapshot(path)
    assert after["boxes"][0][-1].tolist() == [90, 60, 100, 80, 3]
    assert after["sources"][0] == after["sources"][1] == REVIEWED and after["sources"][2] == SIM_TRUTH
    state.accept_all()
    assert not state.undo() and save(path, state) == 40
    assert state.next_unreviewed() is False


@pytest.mark.x11
def test_review_window_opens_and_saves_with_keys(sim_sessions, xvfb):
    import os
    import subprocess
    import sys
    import time

    from crew2 import x11
    from tests.x11_helpers import wait_for_window

    path = sim_sessions[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "annotate", "review", str(path), "--frames",
                             "all"], env={**os.environ, "DISPLAY": xvfb}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    dpy = x11.open_display(xvfb)
    try:
        win = wait_for_window(dpy, "crew2 annotate review", proc, min_width=256 * 3)
        rect = x11.window_rect(dpy, win)
        assert rect.width >= 256 * 3
        time.sleep(0.5)
        x11.focus(dpy, win)
        for key in ("a", "n", "a", "q"):  # accept frame 0, next, accept frame 1, save and quit
            x11.send_key(dpy, key, True)
            x11.send_key(dpy, key, False)
            time.sleep(0.3)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        dpy.close()
    assert proc.returncode == 0, err
    assert "saved 2 frame(s)" in out
    sources = snapshot(path)["sources"]
    assert sources[0] == sources[1] == REVIEWED and sources[2] == SIM_TRUTH


def test_a_teacher_trained_on_the_export_labels_new_sessions_that_crew2_trains_on(sim_sessions, tmp_path, monkeypatch):
    """The real-game path with a user's own detector: `annotate export --yolo`, `yolo train` on it, `annotate auto
    --teacher` with the result on a session with no boxes, `crew2 train` on teacher-labelled and reviewed frames."""
    import h5py
    from ultralytics import YOLO

    from crew2.data.session import BOX_SOURCE, TEACHER
    from crew2.detection.teacher import load_teacher, prelabel
    from crew2.model import checkpoint
    from crew2.train.trainer import TrainConfig, train

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    export_yolo({"train": sim_sessions[:1], "val": sim_sessions[1:]}, tmp_path / "yolo", NAMES)
    YOLO("yolo11n.yaml").train(data=str(tmp_path / "yolo" / "data.yaml"), epochs=1, imgsz=256, batch=8,
                               device="cpu", workers=0, plots=False, amp=False, project=str(tmp_path),
                               name="teacher", exist_ok=True, verbose=False)
    teacher = load_teacher(tmp_path / "teacher" / "weights" / "last.pt", trust_pickle=True)
    assert list(teacher.names.values()) == NAMES, "crew2's own classes: no teacher table needed"

    fresh = tmp_path / "fresh.h5"
    record(RecordConfig(source="sim", out=fresh, frames=40, seed=5))
    with h5py.File(fresh, "a") as f:  # as a game's session: frames without boxes
        f[BOX_SOURCE][...] = NOT_ANNOTATED
    done = prelabel(teacher, [fresh], load_spec(ROOT / "datasets" / "sim.yaml"), conf=0.001)
    assert done == {"fresh.h5": 40} and (Session(fresh).box_sources() == TEACHER).all()

    config = TrainConfig(train=[fresh, sim_sessions[0]], val=sim_sessions[1:], out=tmp_path / "run", batch=16,
                         workers=0, epochs=1, max_steps=4, pretrained=None)
    train(config)
    ckpt = checkpoint.load(tmp_path / "run" / "best.pt")
    assert ckpt["detector"]["annotated_frames"] == 4 * 16, "teacher-labelled and reviewed frames both train the head"
