"""The warm/cold item tower: warm items are their warm embedding, cold ones their content, one index."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmmrec.config import RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.models.build import build_warm_cold
from tfmmrec.models.coldstart import ContentStudent, WarmColdItemTower, alignment_loss, blend_embeddings
from tfmmrec.models.features import ItemFeatures, id_keep_mask
from tfmmrec.models.retrieval import TwoTowerRetrieval
from tfmmrec.train.fit import train_retrieval

NUM_ITEMS, NUM_USERS = 40, 30  # sizes of the shared fixtures (conftest.py)
TINY = dict(embedding_dim=8, fusion_hidden=[16], batch_size=64, learning_rate=0.02)
ITEMS = tf.range(1, NUM_ITEMS + 1)


def test_served_embedding_is_warm_for_seen_items_and_scaled_content_for_unseen(
        features: ItemFeatures, interactions: EncodedInteractions) -> None:
    cfg = RetrievalConfig(**TINY, warm_tower="id", cold_scale=[0.7])
    model = build_warm_cold(features, NUM_USERS, cfg, data=interactions)
    tower = model.item_tower
    assert isinstance(tower, WarmColdItemTower) and tower.table is tower.content_tower.table
    served, warm, content = (t(ITEMS).numpy() for t in (tower, tower.warm_tower, tower.content_tower))
    np.testing.assert_allclose(served[:30], warm[:30], atol=1e-6)  # items 1..30 were trained (c = 0)
    np.testing.assert_allclose(served[30:], 0.7 * content[30:], atol=1e-6)  # items 31..40: content, scaled
    np.testing.assert_allclose(np.linalg.norm(warm[30:], axis=1), 0.0)  # no trained id row: nothing warm


def test_blend_constant_mixes_in_content_for_rarely_seen_items(features: ItemFeatures,
                                                               interactions: EncodedInteractions) -> None:
    model = build_warm_cold(features, NUM_USERS, RetrievalConfig(**TINY), data=interactions)
    tower = model.item_tower
    tower.blend_c.assign(3.0)
    tower.cold_scale.assign(0.8)
    served = tower(ITEMS).numpy()
    expected = blend_embeddings(tower.warm_tower(ITEMS).numpy(), tower.content_tower(ITEMS).numpy(),
                                tower.train_counts.numpy()[1:], 3.0, 0.8)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    g = tower.warm_share(ITEMS).numpy()
    counts = np.bincount(interactions.train.item, minlength=NUM_ITEMS + 1)[1:]
    np.testing.assert_allclose(g, np.where(counts > 0, counts / (counts + 3.0), 0.0), rtol=1e-6)
    assert not np.allclose(served[:30], tower.warm_tower(ITEMS).numpy()[:30], atol=1e-3)


def test_tower_round_trips_through_its_config(features: ItemFeatures, interactions: EncodedInteractions) -> None:
    tower = build_warm_cold(features, NUM_USERS, RetrievalConfig(**TINY, warm_tower="id_content"),
                            data=interactions).item_tower
    tower.blend_c.assign(10.0)
    clone = keras.layers.deserialize(keras.layers.serialize(tower))
    assert isinstance(clone, WarmColdItemTower) and clone.warm_tower.use_content
    assert float(clone.blend_c.numpy()) == 10.0 and clone.content_tower.num_id_slots == 1


def test_the_content_switch_serves_ids_plus_content_or_ids_alone(features: ItemFeatures,
                                                                  interactions: EncodedInteractions) -> None:
    # warm_tower: select builds the warm tower with content behind a switch; training keeps either.
    model = build_warm_cold(features, NUM_USERS, RetrievalConfig(**TINY, warm_tower="select"), data=interactions)
    warm = model.item_tower.warm_tower
    feats = warm.table(ITEMS)
    ids = warm.id_embedding(feats["id_slot"]) * id_keep_mask(feats["id_slot"], 0.0, training=False)
    on = warm(ITEMS).numpy()
    np.testing.assert_allclose(on, tf.math.l2_normalize(ids + warm.content_embedding(feats), -1).numpy(), atol=1e-6)
    warm.set_content(False)
    off = warm(ITEMS).numpy()
    np.testing.assert_allclose(off, tf.math.l2_normalize(ids, -1).numpy(), atol=1e-6)
    assert not np.allclose(on[:30], off[:30], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(off[30:], axis=1), 0.0)  # no trained id row and no content: nothing
    # The switch is a weight, never trained, and the config carries its state: a clone serves ids alone too.
    assert [w.name for w in warm.non_trainable_weights if "content_on" in w.name] and \
        not [w for w in warm.trainable_weights if "content_on" in w.name]
    clone = keras.layers.deserialize(keras.layers.serialize(model.item_tower))
    assert warm.get_config()["content_on"] is False and float(clone.warm_tower.content_on.numpy()) == 0.0
    clone(ITEMS), model.item_tower(ITEMS)  # (builds every layer of both)
    clone.set_weights(model.item_tower.get_weights())
    np.testing.assert_allclose(clone.warm_tower(ITEMS).numpy(), off, atol=1e-6)
    with pytest.raises(TypeError, match="no content switch"):
        model.item_tower.content_tower.set_content(False)


def test_unknown_warm_tower_is_refused(features: ItemFeatures) -> None:
    with pytest.raises(ValueError, match="retrieval.warm_tower"):
        build_warm_cold(features, NUM_USERS, RetrievalConfig(**TINY, warm_tower="graph"))


def test_content_student_trains_only_the_content_tower_and_aligns_it(features: ItemFeatures,
                                                                     interactions: EncodedInteractions) -> None:
    cfg = RetrievalConfig(**TINY, epochs=5)
    model = build_warm_cold(features, NUM_USERS, cfg, data=interactions)
    tower = model.item_tower
    train_retrieval(TwoTowerRetrieval(model.query_tower, tower.warm_tower), interactions, cfg, verbose=0)
    query, warm = model.query_tower(tf.range(NUM_USERS + 1)).numpy(), tower.warm_tower(ITEMS).numpy()
    before = alignment_loss(tower.content_tower(ITEMS[:30]), tower.warm_tower(ITEMS[:30])).numpy()
    for layer in (model.query_tower, tower.warm_tower):
        layer.trainable = False
    student = ContentStudent(model.query_tower, tower.content_tower, tower.warm_tower, align_weight=5.0)
    train_retrieval(student, interactions, cfg, verbose=0)
    np.testing.assert_array_equal(model.query_tower(tf.range(NUM_USERS + 1)).numpy(), query)
    np.testing.assert_array_equal(tower.warm_tower(ITEMS).numpy(), warm)
    after = alignment_loss(tower.content_tower(ITEMS[:30]), tower.warm_tower(ITEMS[:30])).numpy()
    assert after < 0.5 * before, (before, after)


def test_alignment_loss_is_zero_on_the_target_and_two_per_item_opposite() -> None:
    v = tf.math.l2_normalize(tf.random.normal([5, 4]), -1)
    assert float(alignment_loss(v, v)) == pytest.approx(0.0, abs=1e-5)
    assert float(alignment_loss(-v, v)) == pytest.approx(10.0, rel=1e-5)


def test_content_tower_ignores_ids(features: ItemFeatures) -> None:
    """Two items with the same content get one content embedding, whatever their ids."""
    same = dataclasses.replace(features, content={"text": features.content["text"].copy()},
                               categorical=features.categorical.copy())
    same.content["text"][2] = same.content["text"][1]
    same.categorical[2] = same.categorical[1]
    tower = build_warm_cold(same, NUM_USERS, RetrievalConfig(**TINY)).item_tower.content_tower
    out = tower(tf.constant([1, 2])).numpy()
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)


def test_warm_negatives_put_each_positive_against_the_other_items_warm_embeddings(
        features: ItemFeatures) -> None:
    """The content loss with ``warm_negatives``: softmax over the batch's content embeddings and
    their warm embeddings, the positive's own warm copy removed (item 3 is in the batch twice)."""
    model = build_warm_cold(features, NUM_USERS, RetrievalConfig(**TINY))
    tower = model.item_tower
    student = ContentStudent(model.query_tower, tower.content_tower, tower.warm_tower, align_weight=0.0,
                             warm_negatives=True, temperature=1.0, logq=False)
    batch = {"user": tf.constant([1, 2, 3, 4]), "item": tf.constant([3, 5, 3, 9])}
    q = model.query_tower(batch["user"]).numpy()
    c, w = tower.content_tower(batch["item"]).numpy(), tower.warm_tower(batch["item"]).numpy()
    items = batch["item"].numpy()
    expected = 0.0
    for i in range(4):
        others = [j for j in range(4) if items[j] != items[i]]  # the other copy of item 3 is no negative
        logits = np.concatenate([[q[i] @ c[i]], q[i] @ c[others].T, q[i] @ w[others].T])
        expected += -logits[0] + np.log(np.exp(logits).sum())
    assert float(student.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)
    plain = ContentStudent(model.query_tower, tower.content_tower, tower.warm_tower, align_weight=0.0,
                           temperature=1.0, logq=False)
    assert float(plain.compute_loss(batch)) < float(student.compute_loss(batch))  # more negatives, more loss
