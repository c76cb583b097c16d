"""The TFRS FactorizedTopK protocol: against a naive reference and against TFRS's own metric."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfmmrec.evaluate import evaluate_retrieval, factorized_top_k_accuracy

KS = (1, 5, 10, 50)


def problem(seed: int = 0, n_users: int = 40, n_items: int = 120):
    rng = np.random.default_rng(seed)
    # multiples of 1/4 in [-1, 1]: exact dot products, and plenty of ties
    users = (rng.integers(-4, 5, (n_users, 4)) / 4).astype(np.float32)
    items = (rng.integers(-4, 5, (n_items, 4)) / 4).astype(np.float32)
    return users, items, (rng.integers(0, n_users, 300), rng.integers(0, n_items, 300))


def naive(users: np.ndarray, items: np.ndarray, heldout: tuple, ks: tuple[int, ...], members: np.ndarray) -> dict:
    """Each interaction alone: a hit at K if fewer than K items score strictly higher."""
    hits = {k: [] for k in ks}
    for u, i in zip(*heldout):
        if not members[i]:
            continue
        own = float(np.dot(users[u], items[i]))
        higher = sum(1 for j in range(len(items)) if float(np.dot(users[u], items[j])) > own)
        for k in ks:
            hits[k].append(higher < k)
    return {**{f"top_{k}_categorical_accuracy": float(np.mean(h)) for k, h in hits.items()},
            "interactions": len(hits[ks[0]])}


def test_matches_naive_reference_per_group() -> None:
    users, items, heldout = problem()
    cold = np.random.default_rng(9).random(len(items)) < 0.25
    got = factorized_top_k_accuracy(users, items, heldout, ks=KS, item_groups={"cold": cold}, batch_size=17)
    for group, members in (("all", np.ones(len(items), bool)), ("cold", cold)):
        want = naive(users, items, heldout, KS, members)
        assert got[group] == pytest.approx(want), group
    assert 0 < got["cold"]["interactions"] < got["all"]["interactions"] == 300


def test_matches_tfrs_factorized_top_k() -> None:
    users, items, (u, i) = problem(1)
    metric = tfrs.metrics.FactorizedTopK(candidates=tfrs.layers.factorized_top_k.BruteForce().index(items), ks=KS)
    metric.update_state(tf.constant(users[u]), tf.constant(items[i]))
    tfrs_values = {m.name.split("/")[-1]: float(m.result()) for m in metric._top_k_metrics}
    ours = factorized_top_k_accuracy(users, items, (u, i), ks=KS)["all"]
    for k in KS:
        assert ours[f"top_{k}_categorical_accuracy"] == pytest.approx(tfrs_values[f"top_{k}_categorical_accuracy"])


def test_no_exclusion_unlike_evaluate_retrieval() -> None:
    # the user's training item 0 scores highest; the held-out item 1 comes second
    items = np.array([[3.0], [2.0], [1.0]], np.float32)
    user = np.ones((1, 1), np.float32)
    heldout, train = (np.array([0]), np.array([1])), (np.array([0]), np.array([0]))
    assert factorized_top_k_accuracy(user, items, heldout, ks=(1, 2))["all"] == {
        "top_1_categorical_accuracy": 0.0, "top_2_categorical_accuracy": 1.0, "interactions": 1}
    assert evaluate_retrieval(user, items, heldout, train, ks=(1,))["all"]["recall@1"] == 1.0


def test_ties_count_for_the_heldout_item_and_repeats_count_each_time() -> None:
    items = np.array([[1.0], [1.0], [1.0]], np.float32)  # all tie
    res = factorized_top_k_accuracy(np.ones((1, 1), np.float32), items, (np.array([0, 0]), np.array([2, 2])), ks=(1,))
    assert res["all"] == {"top_1_categorical_accuracy": 1.0, "interactions": 2}
