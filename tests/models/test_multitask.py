"""The multitask model: retrieval + ranking head + item category from content, weighted."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.config import MultitaskConfig, RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.models.build import build_multitask
from tfmmrec.models.features import ItemFeatures
from tfmmrec.models.multitask import MultitaskRetrieval
from tfmmrec.train.fit import train_retrieval

NUM_ITEMS, NUM_USERS = 40, 30  # sizes of the shared fixtures (conftest.py)
TINY = RetrievalConfig(embedding_dim=8, fusion_hidden=[16], epochs=10, batch_size=64, learning_rate=0.02)


def test_all_three_tasks_learn(features: ItemFeatures, interactions: EncodedInteractions) -> None:
    tf.keras.utils.set_random_seed(0)  # the initial weights, whatever ran before in this process
    model = build_multitask(features, NUM_USERS, TINY, MultitaskConfig(category_weight=2.0, ranking_hidden=[16]),
                            data=interactions)
    assert isinstance(model, MultitaskRetrieval) and model.num_categories == 5
    history = train_retrieval(model, interactions, TINY, verbose=0).history
    # The training metric sees modality dropout (10% of examples without their text, so about 0.92 at
    # best); served, the category (= cluster here) is read from content alone, for trained items ...
    assert history["category_accuracy"][-1] > 0.75
    warm = model.category_logits(tf.range(1, 31)).numpy().argmax(1)
    assert (warm == (np.arange(1, 31) - 1) % 4 + 1).mean() >= 0.9
    # ... and for cold items (31..40: never in training, no id row)
    cold = tf.range(31, 41)
    predicted = model.category_logits(cold).numpy().argmax(1)
    assert (predicted == (np.arange(31, 41) - 1) % 4 + 1).mean() >= 0.9
    users = tf.range(1, NUM_USERS + 1)
    queries = model.query_tower(users)
    own = tf.constant((np.arange(NUM_USERS) + 1) % 4 + 1)  # an item of each user's cluster ...
    other = tf.constant((np.arange(NUM_USERS) + 3) % 4 + 1)  # ... and one of another cluster
    liked = model.rank(queries, model.item_tower(own)).numpy()
    disliked = model.rank(queries, model.item_tower(other)).numpy()
    assert (liked > disliked).mean() > 0.9
    scores = queries.numpy() @ model.item_tower(tf.range(1, 31)).numpy().T
    top5 = np.argsort(-scores, axis=1)[:, :5] % 4
    assert (top5 == (np.arange(1, NUM_USERS + 1) % 4)[:, None]).mean() > 0.8


def test_weights_switch_tasks_and_targets_are_used(features: ItemFeatures,
                                                   interactions: EncodedInteractions) -> None:
    batch = {"user": tf.constant([1, 2, 3]), "item": tf.constant([1, 2, 3]),
             "item_prob": tf.constant(interactions.item_prob[[1, 2, 3]])}
    model = build_multitask(features, NUM_USERS, TINY, MultitaskConfig(), data=interactions)
    only = {}
    for task in ("retrieval", "ranking", "category"):
        model.weights_ = {t: float(t == task) for t in model.weights_}
        only[task] = model.compute_loss(batch).numpy()
        assert only[task] > 0
    model.weights_ = {t: 2.0 for t in model.weights_}
    np.testing.assert_allclose(model.compute_loss(batch).numpy(), 2 * sum(only.values()), rtol=1e-5)
    # With a rating in the batch, the ranking head fits it (MSE): a far-off rating costs more.
    tf.keras.utils.set_random_seed(0)
    ranking_only = MultitaskConfig(retrieval_weight=0.0, category_weight=0.0)
    rating = build_multitask(features, NUM_USERS, TINY, ranking_only, data=interactions, rating=True)
    near = rating.compute_loss({**batch, "target": tf.constant([0.0, 0.0, 0.0])}).numpy()
    far = rating.compute_loss({**batch, "target": tf.constant([9.0, 9.0, 9.0])}).numpy()
    assert far > near + 100
    no_categories = dataclasses.replace(features, categorical=features.categorical[:, :0], cardinalities=[])
    with pytest.raises(ValueError, match="category_field"):
        build_multitask(no_categories, NUM_USERS, TINY, MultitaskConfig(), data=interactions)
