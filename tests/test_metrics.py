"""Key metrics' verdict: a model no better than always pressing every key, or with thresholds collapsed to the
extremes, gets a loud warning; a model that learnt its keys gets none."""

from __future__ import annotations

import numpy as np
import pytest

from crew2.train.metrics import MARGIN, calibrate, judge, key_metrics

KEYS = ["w", "a", "s", "d"]


def labels(n: int = 400, seed: int = 0) -> np.ndarray:
    """(n, 4) 0/1 keys: W mostly down, A and D often, S rarely."""
    return (np.random.default_rng(seed).random((n, 4)) < [0.7, 0.3, 0.1, 0.3]).astype(np.float32)


def verdict_of(probs: np.ndarray, truth: np.ndarray):
    thresholds = calibrate(probs, truth)
    val = key_metrics(probs, truth, thresholds, KEYS)
    return val, thresholds, judge(val, thresholds, KEYS)


def test_a_model_with_constant_outputs_gets_the_warning():
    truth = labels()
    val, thresholds, verdict = verdict_of(np.full(truth.shape, 0.3, np.float32), truth)
    assert val["f1"] == pytest.approx(val["constant_f1"]), "a constant model is the constant baseline"
    p = truth.mean(0)
    assert [val[f"{k}_pressed"] for k in KEYS] == pytest.approx(p)
    assert val["constant_f1"] == pytest.approx(np.mean(2 * p / (1 + p))), "per key 2p/(1+p), averaged over keys"
    assert thresholds.tolist() == [0.02] * 4
    assert verdict.no_better_than_constant and verdict.collapsed == dict.fromkeys(KEYS, 0.02)
    assert verdict.metrics() == {"f1_over_constant": pytest.approx(0.0), "collapsed_thresholds": 4.0, "suspect": 1.0}
    warning = verdict.warning()
    assert warning.startswith("WARNING: this model looks useless") and "crew2 data stats" in warning
    assert f"W 0.02 (down in {val['w_pressed']:.0%} of validation frames)" in warning


def test_a_model_that_learnt_its_keys_gets_none_and_one_with_a_collapsed_key_is_flagged():
    truth = labels()
    noise = np.random.default_rng(1).random(truth.shape) * 0.4
    good = np.where(truth > 0.5, 0.4 + noise, 0.2 + noise * 0.9).astype(np.float32)  # overlapping in 0.4..0.56
    val, thresholds, verdict = verdict_of(good, truth)
    assert val["f1"] - val["constant_f1"] >= MARGIN and not verdict.collapsed
    assert verdict.warning() is None and verdict.metrics()["suspect"] == 0.0
    one_off = np.array(thresholds)
    one_off[2] = 0.96  # S: only pressed when the model is all but sure
    flagged = judge(val, one_off, KEYS)
    assert flagged.suspect and not flagged.no_better_than_constant and list(flagged.collapsed) == ["s"]
    assert flagged.warning().startswith("WARNING: calibrated thresholds collapsed to the extremes: S 0.96")


def test_a_nan_f1_is_no_better_than_the_baseline():
    verdict = judge({"f1": float("nan"), "constant_f1": 0.4}, [0.5, 0.5], ["w", "s"])
    assert verdict.no_better_than_constant and verdict.warning() is not None


def test_a_key_never_pressed_in_validation_is_pressed_only_when_sure_and_is_no_warning():
    truth = labels()
    truth[:, 2] = 0  # S: the person never braked
    noise = np.random.default_rng(1).random(truth.shape) * 0.4
    good = np.where(truth > 0.5, 0.4 + noise, 0.2 + noise * 0.9).astype(np.float32)
    val, thresholds, verdict = verdict_of(good, truth)
    assert thresholds[2] == pytest.approx(0.98)  # not 0.02: that would brake at every frame whose p passes it
    assert val["s_pressed"] == 0 and verdict.collapsed == {} and verdict.warning() is None


def test_a_key_pressed_only_where_the_model_gives_it_no_chance_is_pressed_only_when_sure():
    truth = labels()
    truth[:, 2] = 0
    truth[7, 2] = 1  # S once, in a frame where the model says 0
    noise = np.random.default_rng(1).random(truth.shape) * 0.4
    probs = np.where(truth > 0.5, 0.4 + noise, 0.2 + noise * 0.9).astype(np.float32)
    probs[:, 2] = np.where(np.arange(len(truth)) == 7, 0.0, probs[:, 2] * 0.1)
    thresholds = calibrate(probs, truth)
    assert thresholds[2] == pytest.approx(0.98)  # F1 is 0 at every threshold: not the lowest, 0.02
    val = key_metrics(probs, truth, thresholds, KEYS)
    assert "s" not in judge(val, thresholds, KEYS).collapsed, "pressed once in 400 frames: too rare to warn about"
    assert 0.02 < thresholds[0] < 0.98  # the keys it did learn keep their best-F1 thresholds


def test_a_key_pressed_in_too_few_frames_to_calibrate_is_pressed_only_when_sure():
    """CarRacing's expert braked in 2 of 1,163 validation frames; the best F1 there (0.03 at 0.14) braked in 12-17%
    of the frames crew2 drove. A key pressed in under 1% of the frames is not calibrated on them."""
    truth = labels()
    truth[:, 2] = 0
    truth[[7, 99], 2] = 1  # S twice in 400 frames (0.5%)
    noise = np.random.default_rng(1).random(truth.shape) * 0.4
    probs = np.where(truth > 0.5, 0.4 + noise, 0.2 + noise * 0.9).astype(np.float32)
    probs[7, 2] = 0.5  # the model gives one of them a chance, as it does 20 frames the person did not brake in
    probs[200:220, 2] = 0.5
    assert calibrate(probs, truth)[2] == pytest.approx(0.98)
    *_, verdict = verdict_of(probs, truth)
    assert verdict.rare == ["s"] and "s" not in verdict.collapsed, "named as too rare, not warned about"
    truth[:8, 2] = 1  # S in 9 frames of 400 (2.25%): calibrated on them
    probs[:8, 2] = 0.6
    assert calibrate(probs, truth)[2] < 0.98
