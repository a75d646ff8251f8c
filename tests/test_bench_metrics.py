import numpy as np
import pytest

from faultlines.bench.metrics import mode_scores, precision_at_k, slice_precision
from faultlines.detect.metrics import detection_metrics, fpr_at_tpr
from faultlines.types import FailureMode


def test_precision_at_k_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    truth = np.array([1, 0, 1, 1, 0], bool)
    assert precision_at_k(scores, truth, 1) == 1.0
    assert precision_at_k(scores, truth, 2) == 0.5
    assert precision_at_k(scores, truth, 4) == 0.75


def test_slice_precision_takes_the_best_candidate_or_its_complement():
    truth = np.array([1, 1, 0, 0, 0, 0], bool)
    good = np.array([5, 4, 3, 2, 1, 0.0])  # AP 1: both slice members ranked first
    bad = np.array([0, 1, 2, 3, 4, 5.0])  # its complement ranks them first too
    noise = np.array([1, 3, 2, 6, 5, 4.0])
    assert slice_precision(np.stack([noise, good]), truth, ks=(2, 4)) == {"ap": 1.0, "p@2": 1.0, "p@4": 0.5}
    assert slice_precision(bad[None], truth, ks=(2,))["p@2"] == 1.0
    # noise alone: members at ranks 4 and 6 -> AP = (1/4 + 2/6) / 2; complement ranks them 3rd and 1st
    # -> AP = (1/1 + 2/3) / 2 = 0.8333, which wins
    assert slice_precision(noise[None], truth, ks=(1,)) == {"ap": pytest.approx(5 / 6), "p@1": 1.0}


def test_mode_scores_rank_members_above_everyone_in_their_order():
    a = FailureMode("a", "x", "", members=np.array([3, 1]), weights=np.array([0.8, 0.4]))
    b = FailureMode("b", "x", "", members=np.array([0, 2, 4]))
    s = mode_scores([a, b], 5)
    assert s[0].tolist() == [0, 1.5, 0, 2, 0]
    assert np.argsort(-s[1], kind="stable")[:3].tolist() == [0, 2, 4]
    assert s[1, [1, 3]].tolist() == [0, 0]


def test_detection_metrics_by_hand():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    positive = np.array([0, 0, 1, 1], bool)
    m = detection_metrics(scores, positive)
    assert m["auroc"] == pytest.approx(0.75)  # 3 of 4 (positive, negative) pairs ordered right
    assert m["aupr"] == pytest.approx((1 + 2 / 3) / 2)
    # reaching both positives (TPR 1 >= 0.95) needs threshold 0.35, which passes 1 of 2 negatives
    assert m["fpr95"] == 0.5
    assert fpr_at_tpr(np.array([0.0, 1.0]), np.array([0, 1], bool)) == 0.0
