"""Tests for evaluate_retrieval against a naive per-user reference and hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tfmmrec.evaluate.retrieval import evaluate_retrieval

KS = (1, 5, 20)


def naive_metrics(users: np.ndarray, items: np.ndarray, heldout: tuple, exclude: tuple,
                  groups: dict[str, np.ndarray], ks: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """One user at a time: drop excluded items, sort the rest by score (ties: lower index first),
    then each metric straight from its definition."""
    held = {u: set() for u in range(len(users))}
    for u, i in zip(*heldout):
        held[int(u)].add(int(i))
    excluded = {u: set() for u in range(len(users))}
    for u, i in zip(*exclude):
        excluded[int(u)].add(int(i))
    rankings = {}
    for u in range(len(users)):
        if held[u]:
            scores = [float(np.dot(users[u], items[i])) for i in range(len(items))]
            candidates = [i for i in range(len(items)) if i not in excluded[u]]
            rankings[u] = sorted(candidates, key=lambda i: (-scores[i], i))
    out = {}
    for g, members in groups.items():
        sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hitrate", "mrr", "map")}
        n_users = 0
        for u, ranking in rankings.items():
            relevant = {i for i in held[u] if members[i]}
            if not relevant:
                continue
            n_users += 1
            for k in ks:
                top = ranking[:k]
                hits = [i in relevant for i in top]
                sums[f"recall@{k}"] += sum(hits) / len(relevant)
                dcg = sum(1 / math.log2(p + 2) for p, h in enumerate(hits) if h)
                ideal = sum(1 / math.log2(p + 2) for p in range(min(k, len(relevant))))
                sums[f"ndcg@{k}"] += dcg / ideal
                sums[f"hitrate@{k}"] += 1.0 if any(hits) else 0.0
                sums[f"mrr@{k}"] += 1 / (hits.index(True) + 1) if any(hits) else 0.0
                precisions = [sum(hits[:p + 1]) / (p + 1) for p, h in enumerate(hits) if h]
                sums[f"map@{k}"] += sum(precisions) / min(k, len(relevant))
        metrics = {name: (v / n_users if n_users else float("nan")) for name, v in sums.items()}
        for k in ks:
            shown = {i for ranking in rankings.values() for i in ranking[:k]}
            metrics[f"coverage@{k}"] = sum(1 for i in shown if members[i]) / members.sum()
        out[g] = {**metrics, "users": n_users}
    return out


def random_problem(seed: int = 0, n_users: int = 60, n_items: int = 200, d: int = 8):
    rng = np.random.default_rng(seed)
    # multiples of 1/16 in [-4, 4]: every dot product is exact in float32, so the reference
    # and the batched matmul rank identically (ties, which do occur, go to the lower index)
    users = (rng.integers(-64, 65, (n_users, d)) / 16).astype(np.float32)
    items = (rng.integers(-64, 65, (n_items, d)) / 16).astype(np.float32)
    pairs = lambda n: (rng.integers(0, n_users, n), rng.integers(0, n_items, n))  # noqa: E731
    heldout = pairs(150)  # some users get none, some pairs repeat
    exclude = pairs(1200)  # overlaps the held-out pairs now and then
    warm = rng.random(n_items) < 0.7
    return users, items, heldout, exclude, {"warm": warm, "cold": ~warm}


def assert_metrics_equal(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for g in want:
        assert got[g]["users"] == want[g]["users"], g
        assert set(got[g]) == set(want[g])
        for name in want[g]:
            assert got[g][name] == pytest.approx(want[g][name], abs=1e-9, nan_ok=True), (g, name)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_reference(seed: int) -> None:
    users, items, heldout, exclude, groups = random_problem(seed)
    got = evaluate_retrieval(users, items, heldout, exclude, item_groups=groups, ks=KS)
    want = naive_metrics(users, items, heldout, exclude, {"all": np.ones(len(items), bool), **groups}, KS)
    assert_metrics_equal(got, want)
    assert 0 < want["cold"]["users"] < want["all"]["users"] < len(users)


def test_batch_size_does_not_change_results() -> None:
    users, items, heldout, exclude, groups = random_problem(2)
    small = evaluate_retrieval(users, items, heldout, exclude, item_groups=groups, ks=KS, batch_size=7)
    large = evaluate_retrieval(users, items, heldout, exclude, item_groups=groups, ks=KS, batch_size=10_000)
    assert_metrics_equal(small, large)


def one_dim(scores: list[float]) -> np.ndarray:
    """Item embeddings in 1-D: a user with embedding [1] scores item i as scores[i]."""
    return np.array(scores, np.float32)[:, None]


NONE = (np.array([], int), np.array([], int))


def test_heldout_item_ranked_first() -> None:
    items = one_dim([1.0, 9.0, 3.0, 2.0])
    res = evaluate_retrieval(np.ones((1, 1), np.float32), items, (np.array([0]), np.array([1])), NONE, ks=(1, 3))
    assert res["all"]["recall@1"] == 1.0 and res["all"]["ndcg@1"] == 1.0
    assert res["all"]["recall@3"] == 1.0 and res["all"]["ndcg@3"] == 1.0
    assert res["all"]["users"] == 1


def test_heldout_item_ranked_second() -> None:
    items = one_dim([1.0, 9.0, 3.0, 2.0])
    res = evaluate_retrieval(np.ones((1, 1), np.float32), items, (np.array([0]), np.array([2])), NONE, ks=(1, 2))
    assert res["all"]["recall@1"] == 0.0 and res["all"]["ndcg@1"] == 0.0
    assert res["all"]["recall@2"] == 1.0
    assert res["all"]["ndcg@2"] == pytest.approx(1 / math.log2(3))


def test_excluded_item_is_no_hit_and_takes_no_slot() -> None:
    # item 0 scores highest but is excluded; held-out items are 0 and 1
    items = one_dim([10.0, 5.0, 1.0, 0.0])
    heldout = (np.array([0, 0]), np.array([0, 1]))
    exclude = (np.array([0]), np.array([0]))
    res = evaluate_retrieval(np.ones((1, 1), np.float32), items, heldout, exclude, ks=(1, 2))["all"]
    assert res["recall@1"] == 0.5  # item 1 moves up to the first slot: 1 hit of 2
    assert res["ndcg@1"] == 1.0  # ideal DCG over min(1, 2) = 1 slot
    assert res["recall@2"] == 0.5  # slots hold items 1 and 2, never the excluded item 0
    assert res["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_excluded_heldout_item_is_no_hit_even_when_k_covers_catalog() -> None:
    # candidates are items 1 and 2 only; K=10 > catalog size must not bring item 0 back
    items = one_dim([10.0, 5.0, 1.0])
    heldout = (np.array([0, 0]), np.array([0, 1]))
    exclude = (np.array([0]), np.array([0]))
    res = evaluate_retrieval(np.ones((1, 1), np.float32), items, heldout, exclude, ks=(10,))["all"]
    assert res["recall@10"] == 0.5
    assert res["ndcg@10"] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_users_without_heldout_items_are_not_counted() -> None:
    users = np.array([[1.0], [1.0], [-1.0], [1.0]], np.float32)
    items = one_dim([3.0, 2.0, 1.0])
    heldout = (np.array([0, 2, 2]), np.array([0, 2, 2]))  # users 1 and 3 hold out nothing
    cold = np.array([False, False, True])
    res = evaluate_retrieval(users, items, heldout, NONE, item_groups={"cold": cold}, ks=(1,))
    assert res["all"]["users"] == 2
    assert res["all"]["recall@1"] == 1.0  # user 0 ranks item 0 first, user 2 (negated) item 2
    assert res["cold"]["users"] == 1 and res["cold"]["recall@1"] == 1.0


def test_group_without_heldout_items_is_nan() -> None:
    items = one_dim([3.0, 2.0])
    res = evaluate_retrieval(np.ones((1, 1), np.float32), items, (np.array([0]), np.array([0])), NONE,
                             item_groups={"cold": np.array([False, True])}, ks=(1,))
    assert res["cold"]["users"] == 0
    assert math.isnan(res["cold"]["recall@1"]) and math.isnan(res["cold"]["ndcg@1"])


def test_k_larger_than_catalog() -> None:
    rng = np.random.default_rng(5)
    users, items = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    heldout = (np.array([0, 0, 1, 3]), np.array([1, 4, 5, 0]))
    res = evaluate_retrieval(users, items, heldout, NONE, ks=(3, 50))
    want = naive_metrics(users, items, heldout, NONE, {"all": np.ones(6, bool)}, (3, 50))
    assert_metrics_equal(res, want)
    assert res["all"]["recall@50"] == 1.0  # every item is in the top 50 of a 6-item catalog


def test_matches_naive_reference_with_many_ties() -> None:
    # integer embeddings in [-1, 1], d=2: only a handful of distinct scores, ties at every K boundary
    rng = np.random.default_rng(7)
    users, items = rng.integers(-1, 2, (30, 2)).astype(np.float32), rng.integers(-1, 2, (40, 2)).astype(np.float32)
    heldout = (rng.integers(0, 30, 90), rng.integers(0, 40, 90))
    exclude = (rng.integers(0, 30, 200), rng.integers(0, 40, 200))
    cold = rng.random(40) < 0.3
    got = evaluate_retrieval(users, items, heldout, exclude, item_groups={"cold": cold}, ks=(1, 3, 10), batch_size=4)
    want = naive_metrics(users, items, heldout, exclude, {"all": np.ones(40, bool), "cold": cold}, (1, 3, 10))
    assert_metrics_equal(got, want)


def test_ties_go_to_the_lower_item_index() -> None:
    items = one_dim([1.0, 2.0, 2.0, 2.0])  # items 1, 2, 3 tie
    res = evaluate_retrieval(np.ones((1, 1), np.float32), items, (np.array([0]), np.array([2])), NONE, ks=(1, 2))
    assert res["all"]["recall@1"] == 0.0  # item 1 wins the tie for the first slot
    assert res["all"]["recall@2"] == 1.0 and res["all"]["mrr@2"] == 0.5


def test_hitrate_mrr_map_and_coverage_by_hand() -> None:
    # user 0 ranks items 3 > 2 > 1 > 0 and holds out items 2 and 0; user 1 ranks 0 > 1 > 2 > 3, holds out 3
    users = np.array([[1.0], [-1.0]], np.float32)
    items = one_dim([0.0, 1.0, 2.0, 3.0])
    heldout = (np.array([0, 0, 1]), np.array([2, 0, 3]))
    res = evaluate_retrieval(users, items, heldout, NONE, item_groups={"odd": np.array([False, True, False, True])},
                             ks=(1, 2, 4))
    a = res["all"]
    assert a["hitrate@1"] == 0.0 and a["hitrate@2"] == 0.5 and a["hitrate@4"] == 1.0
    assert a["mrr@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert a["mrr@4"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    # user 0: hits at ranks 2 and 4 -> (1/2 + 2/4) / min(4, 2); user 1: hit at rank 4 -> (1/4) / 1
    assert a["map@4"] == pytest.approx(((1 / 2 + 2 / 4) / 2 + 1 / 4) / 2)
    assert a["coverage@1"] == 0.5  # items 3 and 0 are someone's first choice
    assert a["coverage@2"] == 1.0
    assert res["odd"]["users"] == 1 and res["odd"]["coverage@1"] == 0.5  # item 3 of {1, 3}
