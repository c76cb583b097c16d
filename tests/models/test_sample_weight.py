"""The interactions ``weight`` column: each example's weight in the retrieval and ranking losses."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmmrec.config import RankingConfig, RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions, encode_interactions
from tfmmrec.models.build import build_ranking, build_retrieval
from tfmmrec.models.features import ItemFeatures
from tfmmrec.train.fit import train_ranking, train_retrieval
from tfmmrec.train.inputs import ranking_dataset, retrieval_dataset

NUM_USERS = 30
TINY = dict(embedding_dim=8, fusion_hidden=[16], batch_size=64, learning_rate=0.02)


def weighted(data: EncodedInteractions, weights: np.ndarray) -> EncodedInteractions:
    return dataclasses.replace(data, train=dataclasses.replace(data.train, weight=weights.astype(np.float32)))


def test_retrieval_loss_is_the_weighted_sum_of_per_example_losses(features: ItemFeatures,
                                                                 interactions: EncodedInteractions) -> None:
    model = build_retrieval(features, NUM_USERS, RetrievalConfig(**TINY), data=interactions)
    batch = {"user": tf.constant([1, 2, 3]), "item": tf.constant([1, 6, 11]),
             "item_prob": tf.constant(interactions.item_prob[[1, 6, 11]])}
    per_example = [model.compute_loss({**batch, "weight": tf.one_hot(i, 3)}).numpy() for i in range(3)]
    w = np.array([2.0, 0.0, 0.5], np.float32)
    loss = model.compute_loss({**batch, "weight": tf.constant(w)}).numpy()
    np.testing.assert_allclose(loss, float(np.dot(w, per_example)), rtol=1e-5)
    assert loss != pytest.approx(model.compute_loss(batch).numpy(), rel=1e-3)


def test_weights_reach_the_training_batches(interactions: EncodedInteractions) -> None:
    data = weighted(interactions, np.arange(1, len(interactions.train) + 1))
    batch = next(iter(retrieval_dataset(data, batch_size=1000, seed=0)))
    order = np.argsort(batch["item"].numpy() * 1000 + batch["user"].numpy())
    ref = np.argsort(data.train.item * 1000 + data.train.user)
    np.testing.assert_array_equal(batch["weight"].numpy()[order], data.train.weight[ref])
    x, y, sw = next(iter(ranking_dataset(data, batch_size=40, negatives=3, seed=0, explicit=False)))
    assert sw.shape == y.shape == x["user"].shape  # a positive's negatives carry its weight
    np.testing.assert_array_equal(sw.numpy().reshape(-1, 4), np.repeat(sw.numpy()[::4, None], 4, axis=1))


def test_weight_zero_rows_are_dropped_from_training() -> None:
    """A 0-weight row has no effect: training sees exactly the log without it."""
    log = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_idx": [0, 1, 1, 2, 3],
                        "split": ["train"] * 4 + ["test"], "weight": [1.0, 0.0, 2.0, 0.0, 1.0]})
    with_zero = encode_interactions(log, num_items=4)
    without = encode_interactions(log[log["weight"] > 0].reset_index(drop=True), num_items=4)
    np.testing.assert_array_equal(with_zero.train.item, without.train.item)
    np.testing.assert_array_equal(with_zero.train.weight, [1.0, 2.0])
    np.testing.assert_array_equal(with_zero.item_prob, without.item_prob)


def test_weights_change_retrieval_and_ranking_training(features: ItemFeatures,
                                                       interactions: EncodedInteractions) -> None:
    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 3.0, len(interactions.train))
    cfg = RetrievalConfig(**TINY, epochs=2)
    losses = []
    for data in (interactions, weighted(interactions, w)):
        tf.keras.utils.set_random_seed(0)
        model = build_retrieval(features, NUM_USERS, cfg, data=data)
        losses.append(train_retrieval(model, data, cfg, seed=0, verbose=0).history["loss"])
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)

    rcfg = RankingConfig(epochs=2, batch_size=64, field_dim=4, hidden_units=[8])
    rank_losses = []
    for data in (interactions, weighted(interactions, w)):
        tf.keras.utils.set_random_seed(0)
        ranker = build_ranking(features, NUM_USERS, rcfg)
        rank_losses.append(train_ranking(ranker, data, rcfg, mode="implicit", seed=0, verbose=0).history["loss"])
    assert rank_losses[0] != pytest.approx(rank_losses[1], rel=1e-3)
