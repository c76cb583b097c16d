"""The query tower's parts (user features, pooled history) and the item tower's unknown items."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.config import ConfigError, RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.models.build import build_retrieval
from tfmmrec.models.features import ItemFeatures, ItemFeatureTable, UserFeatures
from tfmmrec.models.towers import ItemTower, QueryTower
from tfmmrec.train.fit import train_retrieval

NUM_ITEMS, NUM_USERS = 40, 30  # sizes of the shared fixtures (conftest.py)


@pytest.fixture(scope="module")
def item_tower(features: ItemFeatures) -> ItemTower:
    return ItemTower(ItemFeatureTable.from_features(features), features.num_id_slots, 8,
                     tuple(features.cardinalities), id_dropout=0.0, modality_dropout=0.0)


@pytest.mark.parametrize("pooling", ["mean", "attention", "mean+attention"])
def test_history_pooling_ignores_padding_and_order(item_tower: ItemTower, pooling: str) -> None:
    tower = QueryTower(NUM_USERS, 8, history_length=4, history_pooling=pooling, history_encoder=item_tower)
    pooled = tower.pool_history(tf.constant([[0, 0, 3, 7], [7, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 12]])).numpy()
    np.testing.assert_allclose(pooled[0], pooled[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled[2], 0.0)  # no history: no history part
    single = item_tower(tf.constant([12])).numpy()[0]
    expected = single * (2 if pooling == "mean+attention" else 1)  # one item: mean = attention = that item
    np.testing.assert_allclose(pooled[3], expected, rtol=1e-5, atol=1e-6)


def test_query_tower_serves_from_its_tables_or_from_given_inputs(item_tower: ItemTower) -> None:
    tower = QueryTower(NUM_USERS, 8, user_feature_cardinalities=(3,), history_length=3,
                       history_encoder=item_tower)
    codes = np.zeros((NUM_USERS + 1, 1), np.int32)
    codes[1:, 0] = np.arange(NUM_USERS) % 2 + 1
    history = np.zeros((NUM_USERS + 1, 3), np.int32)
    history[1] = [0, 4, 8]
    tower.set_user_tables(codes, history)
    users = tf.constant([1, 2])
    from_tables = tower(users).numpy()
    given = tower({"user": users, "history": tf.constant(history[[1, 2]]),
                   "user_features": tf.constant(codes[[1, 2]])}).numpy()
    np.testing.assert_allclose(from_tables, given, rtol=1e-6)
    other_history = tower({"user": tf.constant([1]), "history": tf.constant([[1, 2, 3]])}).numpy()
    other_feature = tower({"user": tf.constant([1]), "user_features": tf.constant([[2]])}).numpy()
    assert not np.allclose(other_history, from_tables[:1]) and not np.allclose(other_feature, from_tables[:1])
    np.testing.assert_allclose(np.linalg.norm(from_tables, axis=1), 1.0, rtol=1e-5)


def test_query_tower_config_round_trip(item_tower: ItemTower) -> None:
    tower = QueryTower(NUM_USERS, 8, user_feature_cardinalities=(3, 4), history_length=5,
                       history_pooling="mean+attention", history_encoder=item_tower, user_id_dropout=0.2)
    clone = QueryTower.from_config(tower.get_config())
    assert clone.get_config() == tower.get_config()
    with pytest.raises(ValueError, match="history_encoder"):
        QueryTower(NUM_USERS, 8, history_length=5)
    with pytest.raises(ValueError, match="history_pooling"):
        QueryTower(NUM_USERS, 8, history_pooling="max")


def test_unknown_item_index_is_content_free_and_the_same_for_all(item_tower: ItemTower) -> None:
    """Index 0 (an id the lookup does not know): no id row, no content, unknown category -- one
    fixed, finite vector, whatever the trained id rows are."""
    out = item_tower(tf.constant([0, 0])).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], out[1])


def test_new_user_with_a_short_history_gets_items_like_that_history(
        features: ItemFeatures, interactions: EncodedInteractions) -> None:
    """A user unseen in training (index 0, untrained id row) with three items of one cluster in
    their history is served that cluster -- including never-trained (cold) items of it."""
    cfg = RetrievalConfig(embedding_dim=8, fusion_hidden=[16], epochs=30, batch_size=64, learning_rate=0.02,
                          history_length=5, history_pooling="mean+attention", user_id_dropout=0.3)
    model = build_retrieval(features, NUM_USERS, cfg, data=interactions)
    train_retrieval(model, interactions, cfg, verbose=0)
    items = model.item_tower(tf.range(1, NUM_ITEMS + 1)).numpy()
    cluster = (np.arange(1, NUM_ITEMS + 1) - 1) % 4
    for c in range(4):
        history = [i for i in range(1, 31) if (i - 1) % 4 == c][:3]
        query = model.query_tower({"user": tf.constant([0]), "history": tf.constant([[0, 0] + history])}).numpy()
        scores = (query @ items.T)[0]
        top = np.argsort(-scores)[:10]
        assert (cluster[top] == c).mean() >= 0.8, (c, cluster[top])
        cold_top = 30 + np.argsort(-scores[30:])[:2]  # items 31..40: no id embedding, content only
        assert (cluster[cold_top] == c).all()


def test_history_sampling_fills_the_served_history_table(features: ItemFeatures,
                                                         interactions: EncodedInteractions) -> None:
    """The served table holds, per user, the last training items ('before') or a draw of them
    ('others'); an unknown sampling is refused at build time naming the key."""
    for sampling in ("before", "others"):
        cfg = RetrievalConfig(embedding_dim=8, fusion_hidden=[16], history_length=3, history_sampling=sampling)
        table = build_retrieval(features, NUM_USERS, cfg, data=interactions).query_tower.user_history.numpy()
        for user in range(1, NUM_USERS + 1):
            own = interactions.train.item[interactions.train.user == user]
            drawn = [h for h in table[user].tolist() if h]
            assert len(drawn) == min(3, len(own)) and set(drawn) <= set(own.tolist())
            if sampling == "before":  # no timestamps: log order
                assert drawn == own[-3:].tolist()
    with pytest.raises(ConfigError, match=r"retrieval\.history_sampling must be one of before, others"):
        build_retrieval(features, NUM_USERS, RetrievalConfig(history_length=3, history_sampling="recent"),
                        data=interactions)


def test_user_features_codes(features: ItemFeatures) -> None:
    import pandas as pd

    from tfmmrec.models.features import build_user_features

    users = pd.DataFrame({"user_id": ["a", "b", "c", "x"], "region": ["north", "south", None, "north"],
                          "age": [20.5, 30.0, 40.0, 50.0], "tier": [1, 2, 1, 3]})
    uf = build_user_features(users, np.array(["b", "a", "c", "d"]))  # "d": not in the users table
    assert isinstance(uf, UserFeatures) and uf.names == ["region", "tier"]  # floats are not categories
    assert uf.codes.shape == (5, 2) and uf.cardinalities == [3, 4]
    assert uf.codes[:, 0].tolist() == [0, 2, 1, 0, 0]  # row 0 unknown user; c missing; d absent
    assert uf.codes[:, 1].tolist() == [0, 2, 1, 1, 0]
    assert build_user_features(None, np.array(["a"])).codes.shape == (2, 0)


def test_query_tower_with_history_and_features_exports(item_tower: ItemTower, tmp_path) -> None:
    """The served query reads the stored history and features inside the SavedModel, by raw user id."""
    from tfmmrec.export.retrieval import QueryEncoder, RetrievalServing, export_retrieval

    tower = QueryTower(NUM_USERS, 8, user_feature_cardinalities=(3,), history_length=3,
                       history_pooling="mean+attention", history_encoder=item_tower)
    history = np.zeros((NUM_USERS + 1, 3), np.int32)
    history[1:, 2] = np.arange(1, NUM_USERS + 1)
    tower.set_user_tables(np.ones((NUM_USERS + 1, 1), np.int32), history)
    user_ids = np.array([f"u{u}" for u in range(1, NUM_USERS + 1)])
    items = item_tower(tf.range(1, NUM_ITEMS + 1)).numpy()
    serving = RetrievalServing(QueryEncoder(user_ids, tower), np.array([f"i{i}" for i in range(NUM_ITEMS)]), items,
                               max_k=5)
    path = export_retrieval(tmp_path, "history_retrieval", serving)
    loaded = tf.saved_model.load(str(path))
    served = loaded.signatures["embed_query"](user_id=tf.constant(["u3", "nobody"]))
    np.testing.assert_allclose(served["embedding"].numpy()[0], tower(tf.constant([3])).numpy()[0],
                               rtol=1e-5, atol=1e-6)
    assert served["known"].numpy().tolist() == [True, False]  # "nobody" gets the export's documented fallback
    top = loaded.signatures["serving_default"](user_id=tf.constant(["u3"]), recent_item_ids=tf.constant([[""]]),
                                               exclude_item_ids=tf.constant([[""]]), k=tf.constant([5]))
    assert top["item_ids"].shape == (1, 5)


def test_embedding_dropout_acts_in_training_only_and_survives_the_config(features: ItemFeatures) -> None:
    """``embedding_dropout`` zeroes elements of the id embeddings in training; served (training
    off) both towers are exactly the towers without it, and the setting round-trips."""
    cfg = RetrievalConfig(embedding_dim=8, fusion_hidden=[16], embedding_dropout=0.5)
    model = build_retrieval(features, NUM_USERS, cfg, use_content=False)
    plain = build_retrieval(features, NUM_USERS, RetrievalConfig(embedding_dim=8, fusion_hidden=[16]),
                            use_content=False)
    users, items = tf.constant([1, 2, 3]), tf.constant([1, 2, 3])
    pairs = ((model.query_tower, plain.query_tower, users), (model.item_tower, plain.item_tower, items))
    for tower, other, ids in pairs:
        other(ids)
        tower(ids)
        tower.set_weights(other.get_weights())
        np.testing.assert_allclose(tower(ids).numpy(), other(ids).numpy(), rtol=1e-6)
        dropped = tower(ids, training=True).numpy()
        assert (dropped == 0).mean() > 0.2 and not np.allclose(dropped, other(ids).numpy())
        assert type(tower).from_config(tower.get_config()).embedding_dropout == 0.5
    assert "embedding_dropout" not in plain.query_tower.get_config()  # old configs stay as they were
