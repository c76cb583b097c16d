"""The biased matrix factorisation ranker (``ranking.model: mf``, the default on ratings)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmmrec.config import RankingConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.models.build import build_ranking
from tfmmrec.models.dcn import DCN
from tfmmrec.models.features import ItemFeatures
from tfmmrec.models.mf import MatrixFactorization
from tfmmrec.train.fit import train_ranking

NUM_ITEMS, NUM_USERS = 40, 30  # sizes of the shared fixtures (conftest.py)


def test_the_ranker_follows_the_feedback_unless_set() -> None:
    assert RankingConfig().ranker(rating=True) == "mf" and RankingConfig().ranker(rating=False) == "dcn"
    assert RankingConfig(model="deepfm").ranker(rating=True) == "deepfm"


def test_the_score_is_global_bias_plus_user_and_item_biases_plus_their_factors(features: ItemFeatures) -> None:
    model = build_ranking(features, NUM_USERS, RankingConfig(mf_factors=8), rating=True)
    assert isinstance(model, MatrixFactorization) and model.factors == 8
    users, items = np.array([1, 2, 3, 4]), np.array([1, 5, 30, 35])  # item 35: no id slot (cold)
    score = model({"user": users, "item": items}).numpy()
    p, bu = model.user_vec.embeddings.numpy()[users], model.user_bias.embeddings.numpy()[users, 0]
    slots = features.id_slot[items]
    q, bi = model.item_vec.embeddings.numpy()[slots], model.item_bias.embeddings.numpy()[slots, 0]
    known = (slots > 0).astype(np.float32)  # a cold item is scored mu + b_u: no id row, no content
    want = float(model.global_bias.numpy()) + bu + known * (bi + (p * q).sum(-1))
    np.testing.assert_allclose(score, want, rtol=1e-5, atol=1e-6)
    clone = MatrixFactorization.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert keras.utils.get_registered_object("tfmmrec>MatrixFactorization") is MatrixFactorization
    assert not model.use_content  # the export's explain has no modality to take away


def test_it_learns_ratings_with_a_per_rating_penalty(features: ItemFeatures,
                                                     interactions: EncodedInteractions) -> None:
    """Each training example pays ``l2 * (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)`` on its own rows: the
    training loss is the squared error plus that, and a larger ``l2`` keeps the factors smaller."""
    rating = (1.0 + (interactions.train.item + interactions.train.user) % 5).astype(np.float32)  # 1..5
    data = dataclasses.replace(interactions, train=dataclasses.replace(interactions.train, target=rating))
    norms = {}
    for l2 in (0.0, 0.5):
        keras.utils.set_random_seed(0)
        cfg = RankingConfig(mf_factors=8, mf_l2=l2, epochs=30, batch_size=32, learning_rate=0.02)
        model = build_ranking(features, NUM_USERS, cfg, rating=True)
        history = train_ranking(model, data, cfg, mode="rating", verbose=0).history
        assert history["rmse"][-1] < (0.5 if l2 == 0 else 0.9) * history["rmse"][0]  # the penalty slows it
        batch = {"user": tf.constant(data.train.user[:64]), "item": tf.constant(data.train.item[:64])}
        model(batch, training=True)
        penalty = float(tf.add_n(model.losses)) if model.losses else 0.0
        vecs, firsts, _ = model.fields(batch, training=False)
        rows = tf.concat(vecs + firsts, -1).numpy()
        assert penalty == pytest.approx(l2 * float(np.mean(np.sum(rows ** 2, -1))), rel=1e-4, abs=1e-8)
        norms[l2] = float(np.linalg.norm(model.item_vec.embeddings.numpy()))
    assert norms[0.5] < 0.75 * norms[0.0]  # measured: about half


def test_content_models_stay_the_default_on_implicit_feedback(features: ItemFeatures) -> None:
    assert isinstance(build_ranking(features, NUM_USERS, RankingConfig(), rating=False), DCN)
    assert isinstance(build_ranking(features, NUM_USERS, RankingConfig(model="dcn"), rating=True), DCN)
