"""DCN-v2 ranking: the same fields and interface as DeepFM, selected by ``ranking.model``."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmmrec.config import RankingConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.models.build import build_ranking
from tfmmrec.models.dcn import DCN
from tfmmrec.models.features import ItemFeatures
from tfmmrec.models.ranking import DeepFM
from tfmmrec.train.fit import train_ranking

NUM_ITEMS, NUM_USERS = 40, 30  # sizes of the shared fixtures (conftest.py)


def test_config_selects_the_model(features: ItemFeatures) -> None:
    dcn = build_ranking(features, NUM_USERS, RankingConfig(model="dcn", field_dim=4, hidden_units=[8],
                                                           cross_layers=3, cross_projection_dim=2))
    assert isinstance(dcn, DCN) and len(dcn.cross) == 3
    deepfm = build_ranking(features, NUM_USERS, RankingConfig(model="deepfm", field_dim=4, hidden_units=[8]))
    assert type(deepfm) is DeepFM
    with pytest.raises(ValueError, match="ranking.model"):
        build_ranking(features, NUM_USERS, RankingConfig(model="xgboost"))
    out = dcn({"user": tf.constant([1, 2, 0]), "item": tf.constant([1, 35, 0])})
    assert out.shape == (3,)
    clone = DCN.from_config(dcn.get_config())
    assert clone.get_config() == dcn.get_config()
    assert keras.utils.get_registered_object("tfmmrec>DCN") is DCN


def test_cross_layers_carry_feature_crosses(features: ItemFeatures) -> None:
    """Each cross layer's output depends on the product of fields: its gradient w.r.t. its kernel
    is nonzero, so the crosses are in the graph, not bypassed."""
    dcn = build_ranking(features, NUM_USERS, RankingConfig(model="dcn", field_dim=4, hidden_units=[8]))
    batch = {"user": tf.constant([1, 2, 3]), "item": tf.constant([1, 2, 3])}
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(dcn(batch))
    grads = tape.gradient(out, [layer.trainable_variables[0] for layer in dcn.cross])
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)


@pytest.mark.parametrize("mode", ["implicit", "rating"])
def test_dcn_learns_bce_and_mse(features: ItemFeatures, interactions: EncodedInteractions, mode: str) -> None:
    """BCE head on positives vs sampled negatives; MSE head on a rating that depends on the cluster."""
    data = interactions
    if mode == "rating":
        import dataclasses

        rating = ((data.train.item - 1) % 4).astype(np.float32) + 1.0
        data = dataclasses.replace(data, train=dataclasses.replace(data.train, target=rating))
    cfg = RankingConfig(model="dcn", field_dim=4, hidden_units=[16], epochs=8, batch_size=64, learning_rate=0.02,
                        negatives=2)
    model = build_ranking(features, NUM_USERS, cfg)
    history = train_ranking(model, data, cfg, mode=mode, verbose=0).history
    metric = "rmse" if mode == "rating" else "auc"
    if mode == "rating":
        assert history[metric][-1] < 0.5 * history[metric][0]
    else:
        assert history[metric][-1] > 0.8


def test_ratings_start_from_their_mean(features: ItemFeatures, interactions: EncodedInteractions) -> None:
    """With a zero learning rate nothing trains, so what the model predicts is where training
    starts: the global bias holds the training ratings' mean (not 0, where the ID embeddings would
    first have to learn it), so the first epoch's RMSE is far below the ratings' distance from 0."""
    import dataclasses

    rating = (3.0 + interactions.train.item % 3).astype(np.float32)  # 3, 4, 5
    data = dataclasses.replace(interactions, train=dataclasses.replace(interactions.train, target=rating))
    cfg = RankingConfig(model="dcn", field_dim=4, hidden_units=[8], epochs=1, batch_size=64, learning_rate=0.0)
    keras.utils.set_random_seed(0)
    model = build_ranking(features, NUM_USERS, cfg)
    assert float(model.global_bias.numpy()) == 0.0
    assert model.get_config()["dropout"] == 0.1  # not built for ratings: the implicit-feedback default
    model = build_ranking(features, NUM_USERS, cfg, rating=True)
    assert model.get_config()["dropout"] == 0.5  # ratings overfit sooner (RankingConfig.deep_dropout)
    history = train_ranking(model, data, cfg, mode="rating", verbose=0).history
    assert float(model.global_bias.numpy()) == pytest.approx(float(rating.mean()), abs=1e-6)
    assert history["rmse"][0] < 0.5 * float(np.sqrt(np.mean(rating ** 2)))  # ~1.1-1.5 against 4.1


def test_history_field_holds_each_users_training_items_except_the_candidate(
        features: ItemFeatures, interactions: EncodedInteractions) -> None:
    """``ranking.history_length`` (SVD++-style): the user's training items, looked up inside the
    model, become one more field; the item being scored is left out of it, so a training
    example (whose target is in its user's history) sees what a held-out one sees."""
    cfg = RankingConfig(field_dim=4, hidden_units=[8], history_length=4)
    model = build_ranking(features, NUM_USERS, cfg, data=interactions)
    table = model.user_history.numpy()
    assert table.shape == (NUM_USERS + 1, 4) and not table[0].any()  # row 0: the unknown user
    for u in (1, 2, 7):
        trained = set(interactions.train.item[interactions.train.user == u])
        assert set(table[u][table[u] > 0]) <= trained and (table[u] > 0).sum() == min(4, len(trained))
    user = 5
    history = [int(i) for i in table[user] if i > 0]
    outside = next(i for i in range(1, 31) if i not in history)
    pairs = {"user": tf.constant([user, user, user]), "item": tf.constant([history[0], history[1], outside])}
    before = model(pairs).numpy()
    # Move the history embedding of the first history item only: the score of that item (left out
    # of its own history) stays; the scores of items whose history holds it move.
    slot = int(features.id_slot[history[0]])
    rows = model.history_vec.embeddings
    rows.assign(tf.tensor_scatter_nd_add(rows, [[slot]], [[5.0] * 4]))
    after = model(pairs).numpy()
    assert after[0] == pytest.approx(before[0], abs=1e-6)
    assert abs(after[1] - before[1]) > 1e-3 and abs(after[2] - before[2]) > 1e-3
    clone = DCN.from_config(model.get_config())
    assert clone.get_config()["history_length"] == 4
    with pytest.raises(ValueError, match="history_length"):
        build_ranking(features, NUM_USERS, RankingConfig(history_length=-1))
