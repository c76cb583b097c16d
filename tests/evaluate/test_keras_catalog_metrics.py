"""The Keras catalog metrics (``model.evaluate`` on a ``retrieval_eval_dataset``) give the numbers of
``evaluate_retrieval``: same protocol, same exclusions, same warm/cold groups, to float32 precision."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.config import RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions, SplitArrays
from tfmmrec.evaluate.protocol import cold_pool_metrics, embed_all, retrieval_eval_protocol
from tfmmrec.evaluate.retrieval import evaluate_retrieval
from tfmmrec.models.build import build_retrieval
from tfmmrec.models.catalog_eval import catalog_metric_values
from tfmmrec.models.features import ItemFeatures
from tfmmrec.train.eval_inputs import retrieval_eval_dataset

KS = (1, 5, 20)


def _interactions(seed: int = 0, n_users: int = 40, n_items: int = 120) -> EncodedInteractions:
    """Random train/valid/test pairs (repeats included), the last 20 items never in training (cold),
    and a user index 0 in the test split (unknown users are not evaluated)."""
    rng = np.random.default_rng(seed)

    def split(n: int, items: np.ndarray) -> SplitArrays:
        return SplitArrays(rng.integers(1, n_users + 1, n).astype(np.int32), rng.choice(items, n).astype(np.int32),
                           None)

    warm_items, all_items = np.arange(1, n_items - 19), np.arange(1, n_items + 1)
    train, valid, test = split(800, warm_items), split(150, all_items), split(150, all_items)
    test.user[:3] = 0
    user_ids = np.array([f"u{i}" for i in range(n_users)])
    prob = np.bincount(train.item, minlength=n_items + 1) / len(train)
    return EncodedInteractions(user_ids, n_items, train, valid, test, np.maximum(prob, 1e-6).astype(np.float32))


def _reference(users: np.ndarray, items: np.ndarray, data: EncodedInteractions, split: str) -> dict:
    heldout, exclude, warm = retrieval_eval_protocol(data, split)
    return evaluate_retrieval(users, items, heldout, exclude, item_groups={"warm": warm, "cold": ~warm}, ks=KS)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_batched_values_equal_evaluate_retrieval(split: str) -> None:
    data = _interactions()
    rng = np.random.default_rng(1)
    users = rng.normal(size=(data.num_users + 1, 8)).astype(np.float32)
    items = rng.normal(size=(data.num_items, 8)).astype(np.float32)
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for batch in retrieval_eval_dataset(data, split, batch_size=7):  # several batches, the last partial
        values = catalog_metric_values(tf.gather(users, batch["user"]), tf.constant(items), batch["relevant"],
                                       batch["exclude"], batch["relevant_warm"], KS)
        for name, (v, w) in values.items():
            sums[name] = sums.get(name, 0.0) + float(tf.reduce_sum(v * w if not name.startswith("users") else v))
            weights[name] = weights.get(name, 0.0) + float(tf.reduce_sum(w))
    expected = _reference(users, items, data, split)
    for group, suffix in (("all", ""), ("warm", "_warm"), ("cold", "_cold")):
        assert sums[f"users{suffix}"] == expected[group]["users"] > 0
        for k in KS:
            for metric in ("recall", "ndcg", "hitrate", "mrr", "map"):
                name = f"{metric}_at_{k}{suffix}"
                assert sums[name] / weights[name] == pytest.approx(expected[group][f"{metric}@{k}"], abs=1e-6), name


def test_model_evaluate_equals_evaluate_retrieval_on_the_models_embeddings() -> None:
    data = _interactions(seed=3)
    n = data.num_items
    rng = np.random.default_rng(0)
    features = ItemFeatures({"text": np.vstack([np.zeros((1, 6)), rng.normal(size=(n, 6))]).astype(np.float32)},
                            {"text": np.r_[0.0, np.ones(n)].astype(np.float32)},
                            np.r_[0, np.arange(1, n - 19), np.zeros(20)].astype(np.int32),
                            np.zeros((n + 1, 0), np.int32), [], np.zeros((n + 1, 0), np.float32))
    model = build_retrieval(features, data.num_users, RetrievalConfig(embedding_dim=8), data=data)
    model.compile()
    model.catalog_ks = KS
    got = model.evaluate(retrieval_eval_dataset(data, "test", batch_size=16), return_dict=True, verbose=0)
    expected = _reference(*embed_all(model, data), data, "test")
    assert got["users_cold"] == expected["cold"]["users"] > 0
    for group, suffix in (("all", ""), ("warm", "_warm"), ("cold", "_cold")):
        for k in KS:
            assert got[f"recall_at_{k}{suffix}"] == pytest.approx(expected[group][f"recall@{k}"], abs=1e-6)
            assert got[f"ndcg_at_{k}{suffix}"] == pytest.approx(expected[group][f"ndcg@{k}"], abs=1e-6)
    # Restricted to the cold items, the "_cold" metrics are the cold pool's: cold held-out items
    # ranked among the cold items only, as evaluate_retrieval ranks them in a catalog of those alone.
    pool = cold_pool_metrics(*embed_all(model, data), data, "test", KS)
    model.restrict_catalog(np.flatnonzero(~retrieval_eval_protocol(data, "test")[2]))
    restricted = model.evaluate(retrieval_eval_dataset(data, "test", batch_size=16), return_dict=True, verbose=0)
    assert restricted["users_cold"] == pool["users"] == got["users_cold"]
    for k in KS:
        assert restricted[f"recall_at_{k}_cold"] == pytest.approx(pool[f"recall@{k}"], abs=1e-6)
        assert restricted[f"ndcg_at_{k}_cold"] == pytest.approx(pool[f"ndcg@{k}"], abs=1e-6)
    assert restricted["recall_at_20_cold"] > got["recall_at_20_cold"]  # fewer competitors, more hits
    assert restricted["recall_at_20_warm"] == 0.0  # warm items are no candidates
    model.restrict_catalog(None)  # every item a candidate again
    again = model.evaluate(retrieval_eval_dataset(data, "test", batch_size=16), return_dict=True, verbose=0)
    assert again["recall_at_20_cold"] == pytest.approx(got["recall_at_20_cold"], abs=1e-6)
    with pytest.raises(ValueError, match="restrict_catalog"):
        model.restrict_catalog(np.array([n]))
    # Training-style pairs still evaluate the loss, as a TFRS model does.
    pairs = tf.data.Dataset.from_tensor_slices({"user": data.train.user, "item": data.train.item}).batch(64)
    assert "loss" in model.evaluate(pairs, return_dict=True, verbose=0)
