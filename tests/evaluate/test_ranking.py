"""Tests for the ranking metrics against brute force and direct formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tfmmrec.evaluate.ranking import auc, log_loss, rmse


def brute_force_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Fraction of (positive, negative) pairs ordered correctly; ties count one half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_pairwise_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 150)
    scores = rng.integers(0, 12, 150).astype(np.float64)  # many ties, within and across classes
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)


def test_auc_on_continuous_scores() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 80)
    scores = rng.normal(size=80) + labels  # informative: well above one half
    value = auc(labels, scores)
    assert value == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)
    assert value > 0.6


def test_auc_perfect_reversed_and_all_tied() -> None:
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3])
    assert auc(labels, scores) == 1.0
    assert auc(labels, -scores) == 0.0
    assert auc(labels, np.zeros(6)) == 0.5


def test_auc_accepts_lists_and_bool_labels() -> None:
    assert auc([True, False, True], [3.0, 1.0, 2.0]) == 1.0


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0]])
def test_auc_single_class_is_nan(labels: list[int]) -> None:
    assert math.isnan(auc(np.array(labels), np.array([0.1, 0.5, 0.9])))


def test_rmse_direct() -> None:
    targets, preds = np.array([4.0, 3.0, 5.0, 1.0]), np.array([3.5, 3.0, 3.0, 2.0])
    # errors 0.5, 0, 2, -1 -> mean square (0.25 + 0 + 4 + 1) / 4
    assert rmse(targets, preds) == pytest.approx(math.sqrt(5.25 / 4))
    assert rmse(targets, targets) == 0.0


def test_rmse_uses_float64_for_int_inputs() -> None:
    assert rmse(np.array([0], np.int8), np.array([100], np.int8)) == pytest.approx(100.0)


def test_log_loss_direct() -> None:
    labels = np.array([1, 0, 1, 0, 1])
    logits = np.array([2.0, -1.0, -0.5, 0.0, 3.0])
    p = 1 / (1 + np.exp(-logits))
    expected = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert log_loss(labels, logits) == pytest.approx(expected, rel=1e-12)


def test_log_loss_stable_for_large_logits() -> None:
    # confidently right costs ~0; confidently wrong costs |logit| (log(1 + e^1000) = 1000 + tiny)
    assert log_loss(np.array([1, 0]), np.array([1000.0, -1000.0])) == pytest.approx(0.0, abs=1e-300)
    assert log_loss(np.array([0, 1]), np.array([1000.0, -1000.0])) == pytest.approx(1000.0)
    assert log_loss(np.array([1, 0]), np.array([-1000.0, 50.0])) == pytest.approx((1000.0 + 50.0) / 2)
