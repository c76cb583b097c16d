"""Towers, the TFRS two-tower model and DeepFM on a small, fully known item table."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmmrec.config import RankingConfig, RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.models.build import build_ranking, build_retrieval
from tfmmrec.models.features import ItemFeatures, ItemFeatureTable
from tfmmrec.models.ranking import DeepFM
from tfmmrec.models.towers import ItemTower, QueryTower
from tfmmrec.train.fit import train_retrieval
from tfmmrec.train.inputs import retrieval_dataset

NUM_ITEMS, NUM_USERS = 40, 30  # sizes of the shared fixtures (conftest.py)


def test_item_tower_unknown_item_is_its_content_alone(features: ItemFeatures) -> None:
    table = ItemFeatureTable.from_features(features)
    tower = ItemTower(table, features.num_id_slots, 8, tuple(features.cardinalities), id_dropout=0.0)
    cold = tf.constant([35])
    before = tower(cold).numpy()
    tower.id_embedding.embeddings.assign(tower.id_embedding.embeddings * 0 + 5.0)
    np.testing.assert_allclose(tower(cold).numpy(), before, rtol=1e-6)  # id slot 0: no id part
    assert not np.allclose(tower(tf.constant([3])).numpy(), before)
    np.testing.assert_allclose(np.linalg.norm(tower(tf.range(1, 41)).numpy(), axis=1), 1.0, rtol=1e-5)


def test_id_only_tower_ignores_content(features: ItemFeatures) -> None:
    tower = ItemTower(ItemFeatureTable.from_features(features), features.num_id_slots, 8, use_content=False)
    assert not hasattr(tower, "fusion")
    assert tower(tf.constant([1, 2])).shape == (2, 8)


def test_towers_config_round_trip(features: ItemFeatures) -> None:
    tower = ItemTower(ItemFeatureTable.from_features(features), features.num_id_slots, 8, (5,), id_dropout=0.25)
    clone = ItemTower.from_config(tower.get_config())
    assert clone.get_config() == tower.get_config()
    query = QueryTower(NUM_USERS, 8)
    assert QueryTower.from_config(query.get_config()).get_config() == query.get_config()


def test_two_tower_training_finds_cold_items_by_content(features: ItemFeatures,
                                                        interactions: EncodedInteractions) -> None:
    cfg = RetrievalConfig(embedding_dim=8, fusion_hidden=[16], epochs=30, batch_size=64, learning_rate=0.02)
    model = build_retrieval(features, NUM_USERS, cfg)

    def full_loss() -> float:  # the loss over all training pairs (a logged loss is one noisy batch)
        return sum(float(model.compute_loss(b)) for b in retrieval_dataset(interactions, 64, seed=1))

    before = full_loss()
    train_retrieval(model, interactions, cfg, verbose=0)
    assert full_loss() < before * 0.8
    users = np.arange(1, NUM_USERS + 1)
    scores = model.query_tower(users).numpy() @ model.item_tower(np.arange(31, 41)).numpy().T
    cold_clusters = (np.arange(31, 41) - 1) % 4
    best_cold = cold_clusters[scores.argmax(axis=1)]
    assert (best_cold == users % 4).mean() > 0.8  # never-trained items reached through their content


def test_deepfm_scores_and_serializes(features: ItemFeatures) -> None:
    model = build_ranking(features, NUM_USERS, RankingConfig(model="deepfm", field_dim=4, hidden_units=[8]))
    out = model({"user": tf.constant([1, 2, 0]), "item": tf.constant([1, 35, 0])})
    assert out.shape == (3,)
    _, _, names = model.fields({"user": tf.constant([1]), "item": tf.constant([1])})
    assert names == ["user", "item", "categorical_0", "text"]
    clone = DeepFM.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert isinstance(keras.utils.get_registered_object("tfmmrec>DeepFM"), type)
