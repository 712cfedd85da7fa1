"""Detection measured as crash prevention needs it: mAP50 (all boxes, tall boxes, per class) and each class's
recall by box height at the score the rules act on, matched by Ultralytics' own code."""

from __future__ import annotations

import math

import pytest
import torch

from crew2.data.session import Session
from crew2.detection.metrics import DetectionScore, height_bins
from crew2.record.run import RecordConfig, record
from crew2.sim.world import CLASSES, SimConfig

CAR, TRUCK, CONE, BARRIER = range(4)


def boxes(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, len(rows[0]) if rows else 4)


def test_recall_by_height_against_hand_checked_matches():
    score = DetectionScore(list(CLASSES), score=0.35)
    # Image 1. Targets: a cone 4 px tall, a cone 6 px, a barrier 10 px, a car 40 px.
    truth = boxes([10, 50, 13, 54], [20, 50, 24, 56], [40, 45, 60, 55], [100, 60, 160, 100])
    classes = torch.tensor([CONE, CONE, BARRIER, CAR], dtype=torch.float32)
    pred = boxes([10, 50, 13, 54, 0.9, CONE],  # found
                 [20, 50, 24, 56, 0.3, CONE],  # under the rules' score: missed
                 [40, 45, 60, 55, 0.8, CONE],  # the barrier called a cone: missed
                 [115, 60, 175, 100, 0.7, CAR])  # IoU 1800 / 3000 = 0.6: found
    score.add(pred, truth, classes)
    # Image 2. A car 20 px tall seen at IoU 360 / 840 = 0.43 (missed), a cone 12 px tall found.
    score.add(boxes([12, 70, 42, 90, 0.9, CAR], [70, 60, 74, 72, 0.5, CONE]),
              boxes([0, 70, 30, 90], [70, 60, 74, 72]), torch.tensor([CAR, CONE], dtype=torch.float32))

    recall = score.recall()
    assert height_bins() == ["<5px", "5-8px", "8-16px", "16-32px", ">=32px"]
    assert recall["cone"] == {"<5px": (1, 1), "5-8px": (0, 1), "8-16px": (1, 1), "16-32px": (0, 0), ">=32px": (0, 0)}
    assert recall["barrier"]["8-16px"] == (0, 1) and recall["car"]["16-32px"] == (0, 1)
    assert recall["car"][">=32px"] == (1, 1) and all(total == 0 for _, total in recall["truck"].values())
    result = score.result()
    assert result["recall_cone_5-8px"] == 0.0 and result["recall_car_>=32px"] == 1.0
    assert math.isnan(result["recall_truck_<5px"]) and math.isnan(result["map50_truck"])
    assert 0 < result["map50"] < 1 and 0 < result["map50_tall"] < 1


@pytest.fixture(scope="module")
def sim_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "s0.h5"
    record(RecordConfig(source="sim", out=path, frames=160, seed=0, sim=SimConfig(obstacles=20.0)))
    return path


def test_a_real_sim_session_counted_by_height(sim_session):
    """Seed 0's ground truth, counted by hand once: cars, trucks, cones and barriers per height bin. Fed back as
    predictions it is found everywhere; without its boxes under 8 px, found only from 8 px up."""
    s = Session(sim_session)
    frames = [s.boxes(i) for i in range(len(s))]
    s.close()
    counts = {"car": [214, 47, 28, 61, 24], "truck": [84, 42, 34, 0, 0], "cone": [2, 0, 0, 0, 0],
              "barrier": [13, 0, 0, 0, 0]}
    perfect, tall_only = DetectionScore(list(CLASSES)), DetectionScore(list(CLASSES))
    for truth in frames:
        t = torch.from_numpy(truth)
        pred = torch.cat([t[:, :4], torch.full((len(t), 1), 0.9), t[:, 4:]], 1)
        perfect.add(pred, t[:, :4], t[:, 4])
        tall_only.add(pred[t[:, 3] - t[:, 1] >= 8], t[:, :4], t[:, 4])
    for name, expected in counts.items():
        assert [total for _, total in perfect.recall()[name].values()] == expected
        assert [found for found, _ in perfect.recall()[name].values()] == expected
        assert [found for found, _ in tall_only.recall()[name].values()] == [0, 0, *expected[2:]]
    assert perfect.result()["map50"] == pytest.approx(0.995, abs=0.005)
    result = tall_only.result()
    assert result["map50_tall"] == pytest.approx(0.995, abs=0.005) and result["map50"] < 0.6
    assert result["map50_cone"] == 0.0, "every cone is under 8 px: none found"
