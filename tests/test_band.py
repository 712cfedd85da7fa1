"""The horizon band: a strip across the far road, zoomed and stacked under the frame, its boxes in both and back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crew2.data.loader import LoaderConfig, augment
from crew2.data.session import Session
from crew2.drive.decoder import DecoderConfig, KeyDecoder
from crew2.drive.fusion import Rules
from crew2.drive.loop import drive_loop
from crew2.errors import Crew2Error
from crew2.io.band import Band
from crew2.model.engine import ModelInfo, Prediction
from crew2.record.run import RecordConfig, record
from crew2.sim.world import SimConfig
from tests.drive_helpers import INFO, RecordingSender

BAND = Band(zoom=4.0, rows=48, at=0.42)  # at 256x144: frame pixels x 96-160, y 54.5-66.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_the_band_shows_the_horizon_zoomed_under_the_frame_and_its_boxes_go_back_where_they_were():
    capture = np.full((576, 1024, 3), 90, np.uint8)  # 4 times a 256x144 frame
    capture[224:248, 500:520] = (255, 0, 0)  # far, at the horizon: frame px x 125-130, y 56-62
    capture[500:560, 100:300] = (0, 0, 255)  # near, low in the picture: never in the band
    truth = np.array([[500, 224, 520, 248, 2], [100, 500, 300, 560, 0]], np.float32)
    stacked = BAND.stack(capture, (256, 144))
    assert stacked.shape == (192, 256, 3)
    red = np.argwhere((stacked[144:, :, 0] > 200) & (stacked[144:, :, 2] < 50))  # (n, 2) rows, cols in the band
    assert red[:, 0].min() == round((56 - 54.5) * 4) and red[:, 1].min() == (125 - 96) * 4  # the capture's pixels
    assert len(red) == 24 * 20  # 4 times the frame: the capture's own pixel size
    boxes = BAND.truth(truth, (1024, 576), (256, 144))
    assert len(boxes) == 3  # both in the frame, the far one once more in the band
    assert np.allclose(boxes[:2, :4], truth[:, :4] / 4)
    assert np.allclose(boxes[2], [116, 144 + 6, 136, 144 + 30, 2], atol=0.1)  # the red pixels' box
    # As predictions: the band's box goes back to the frame's pixels, where it stands in for the frame's (drawn from
    # a quarter of the pixels) of the same object
    pred = np.concatenate([boxes[:, :4], np.full((3, 1), 0.9), boxes[:, 4:]], 1)
    pred[0, :4] += (0.5, -0.5, 0.5, 0.5)  # the frame's box of the far cone, a little off
    back = BAND.to_frame(pred, (256, 144))
    assert len(back) == 2 and np.allclose(back[0], pred[1])
    assert np.allclose(back[1, :4], truth[0, :4] / 4, atol=0.03) and back[1, 5] == 2
    assert len(BAND.to_frame(pred, (256, 144), iou=2.0)) == 3  # nothing counts as the same object: all three


def test_a_box_the_bands_edge_cuts_gives_way_to_the_frames_whole_box():
    frame_box = [90, 50, 110, 64, 0.8, 1]  # a truck across the band's left edge (x 96)
    band_box = [0, 144 + 22, 56, 144 + 38, 0.9, 1]  # the band's view of it, cut at its left edge
    back = BAND.to_frame(np.array([frame_box, band_box], np.float32), (256, 144))
    assert np.allclose(back, [frame_box])


def test_a_box_mostly_outside_the_band_is_not_a_box_in_it():
    truth = np.array([[100, 230, 560, 300, 1]], np.float32)  # a truck across the band's left edge and below it
    assert len(BAND.truth(truth, (1024, 576), (256, 144))) == 1


def test_a_picture_too_small_for_the_band_is_a_clear_error():
    with pytest.raises(Crew2Error, match="at least 1024x576, and this one is 640x360"):
        BAND.stack(np.zeros((360, 640, 3), np.uint8), (256, 144))
    with pytest.raises(Crew2Error, match="--band"):
        Band(zoom=1.0)


def test_a_sim_recording_with_a_band_stores_the_far_road_with_its_boxes(tmp_path):
    out = tmp_path / "band.h5"
    record(RecordConfig(source="sim", out=out, frames=300, seed=3, band=BAND, countdown=0,
                        sim=SimConfig(obstacles=5.0, randomize=True)))
    s = Session(out)
    assert (s.meta.width, s.meta.height, s.meta.band) == (256, 192, BAND.to_dict())
    assert s.frame(0).shape == (192, 256, 3)
    in_band, far, whole = 0, 0, 0
    for i in range(len(s)):
        boxes = s.boxes(i)
        frame, band = boxes[boxes[:, 3] <= 144], boxes[boxes[:, 1] >= 144]
        assert len(frame) + len(band) == len(boxes)  # no box across the seam
        pred = np.concatenate([band[:, :4], np.ones((len(band), 1)), band[:, 4:]], 1)
        x0, y0, x1, y1 = BAND.region((256, 144))
        for b in BAND.to_frame(pred, (256, 144), iou=2.0):  # all of them: each is a frame box's object, closer
            if b[0] > x0 + 0.01 and b[1] > y0 + 0.01 and b[2] < x1 - 0.01 and b[3] < y1 - 0.01:  # not cut by the band
                assert max(iou(b[:4], f[:4]) for f in frame if f[4] == b[5]) > 0.99  # the same box, frame pixels
                whole += 1
        in_band += len(band)
        far += int(((band[:, 3] - band[:, 1]) / BAND.zoom < 5).sum())  # under 5 px in the frame
    assert in_band > 100 and far > 50 and whole > 50


def test_augmenting_a_frame_with_its_band_moves_nothing_across_the_seam():
    image = np.full((192, 256, 3), 50, np.uint8)
    image[144:] = 200
    boxes = np.array([[100, 120, 140, 143, 0], [60, 150, 120, 190, 2]], np.float32)
    cfg = LoaderConfig(shift=0.2, rotate=5.0, colour=0.0, flip=0.5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        img, _, bx = augment(image, np.zeros(4), boxes, rng, cfg, np.arange(4), band_rows=48)
        assert img[:144].max() == 50 and img[144:].min() == 200
        assert all(b[3] <= 144 for b in bx if b[4] == 0) and all(b[1] >= 144 for b in bx if b[4] == 2)


class CarInTheBand:
    """A model that sees a car filling the bottom of its input, 30 of 68 rows: with a band (zoom 4, 32 rows) under
    its 64x36 frame, a car far ahead; without one, a car right in front of us."""

    name = "band"

    def __init__(self, band: Band | None):
        self.info = ModelInfo(INFO.keys, INFO.roles, INFO.class_names, INFO.thresholds, (64, 68), 1,
                              band=None if band is None else band.to_dict())
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, frames: np.ndarray) -> list[Prediction]:
        self.shapes.append(frames.shape)
        return [Prediction(np.array([0.9, 0.1, 0.1, 0.1]), np.array([[16, 38, 48, 68, 0.9, 0]], np.float32))]


class BigPicture:
    done, frame_started = False, None

    def grab(self) -> np.ndarray:
        return np.random.default_rng().integers(0, 255, (144, 256, 3), np.uint8)


def drive(engine: CarInTheBand) -> list:
    logs: list = []
    decoder = KeyDecoder(INFO.keys, INFO.roles, INFO.thresholds, DecoderConfig(min_hold=0.0))
    drive_loop(BigPicture(), engine, decoder, RecordingSender(), fps=20, max_steps=10, realtime=False, rules=Rules(),
               on_frame=logs.append)
    return logs


def test_a_band_model_drives_on_the_frame_and_reads_its_band_boxes_as_far():
    band = Band(zoom=4.0, rows=32, at=0.5)
    engine = CarInTheBand(band)
    logs = drive(engine)
    assert engine.shapes[0] == (1, 68, 64, 3)  # the frame with the band under it, in one input
    assert logs[-1].frame.shape == (68, 64, 3) and engine.info.frame_size == (64, 36)
    # Back in the frame's pixels the car is 7.5 of 36 rows tall at the horizon, not growing: nothing to brake for
    assert all(not log.hits and "w" in log.pressed for log in logs)
    # The same box from a model without a band is a car right in front of us
    assert any(h.rule == "brake_for_obstacle" for log in drive(CarInTheBand(None)) for h in log.hits)
    assert ModelInfo.from_json(engine.info.to_json()) == engine.info


def test_detection_with_a_band_is_counted_in_the_frames_pixels_each_object_once():
    from crew2.detection.metrics import DetectionScore

    # truth as a band session stores it: a far cone (3 px in the frame) and a near car, the cone once more in the band
    truth = BAND.truth(np.array([[504, 228, 516, 240, 2], [100, 400, 400, 560, 0]], np.float32), (1024, 576),
                       (256, 144))
    assert len(truth) == 3
    found_by_band = np.array([[*truth[2, :4], 0.9, 2], [*truth[1, :4], 0.9, 0]], np.float32)  # the frame missed it
    scores = {}
    for name, band in (("band", BAND), ("stacked", None)):
        score = DetectionScore(["car", "truck", "cone", "barrier"], band=band, frame_size=(256, 144))
        score.add(torch.from_numpy(found_by_band), torch.from_numpy(truth[:, :4]), torch.from_numpy(truth[:, 4]))
        scores[name] = score.recall()
    assert scores["band"]["cone"]["<5px"] == (1, 1)  # the 3 px cone is found, and counted once
    assert scores["band"]["car"][">=32px"] == (1, 1)
    assert scores["stacked"]["cone"]["<5px"] == (0, 1) and scores["stacked"]["cone"]["8-16px"] == (1, 1)


def test_a_band_below_the_horizon_sees_nearer_cones_and_barriers_on_the_sim():
    """The sim's horizon stays where the default camera has it (0.42), so `--band-at` moves the band: centred a
    little below the horizon it shows cones and barriers whole from about 16 m on, one on the horizon from 30 m."""
    from crew2.keys import default_profile
    from crew2.sim.autopilot import Autopilot
    from crew2.sim.env import SimEnv
    from crew2.sim.world import BARRIER, CONE

    nearest = {}
    for at in (0.42, 0.46):
        band = Band(zoom=4.0, rows=48, at=at)
        sim = SimConfig(obstacles=8.0, traffic=0.5).for_band(band, (256, 144))
        assert (sim.width, sim.height, sim.horizon) == (1024, 576, 0.42)
        env = SimEnv(sim, default_profile())
        env.reset(seed=4)
        w = env.world
        first = float(np.min(w.objects.s[~w.objects.moving]))
        w.player.s, w.player.v = first - 70.0, 20.0  # 70 m before the first cone or barrier, at 72 km/h
        pilot, seen = Autopilot(), []
        for _ in range(60):
            env.step(env.action_of(*pilot.act(env.world)))
            f = env.frame
            _, top, _, bottom = band.region((256, 144))
            for box, cls, dist in zip(f.boxes / 4, f.classes, f.distances, strict=True):  # in the frame's pixels
                if cls in (CONE, BARRIER) and box[1] >= top and box[3] <= bottom:
                    seen.append(dist)  # whole within the band's rows
        nearest[at] = min(seen)
    assert nearest[0.46] < 18 and nearest[0.42] > 28, nearest
