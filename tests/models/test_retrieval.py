"""The two-tower model's training options: mixed negatives, hard negatives, adversarial content."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.config import RetrievalConfig
from tfmmrec.models.features import ItemFeatures
from tfmmrec.train.fit import build_retrieval, train_retrieval
from tfmmrec.train.inputs import EncodedInteractions

NUM_ITEMS, NUM_USERS = 40, 30  # sizes of the shared fixtures (conftest.py)
TINY = dict(embedding_dim=8, fusion_hidden=[16], batch_size=64, learning_rate=0.02)


def _softmax_loss(logits: np.ndarray) -> float:
    """Summed cross-entropy with the positive on the diagonal."""
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-np.trace(log_probs[:, :len(logits)]))


def test_mixed_negatives_loss_by_hand(features: ItemFeatures, interactions: EncodedInteractions) -> None:
    """A pool of one item makes the sampled negatives known; the loss must then be the softmax over
    in-batch + sampled candidates with the mixture's logQ and item 5's accidental hits removed."""
    cfg = RetrievalConfig(**TINY, temperature=0.5, mixed_negatives=3)
    model = build_retrieval(features, NUM_USERS, cfg, data=interactions)
    model.negative_pool = tf.constant([5])
    p = interactions.item_prob
    batch = {"user": tf.constant([1, 2, 3]), "item": tf.constant([1, 5, 9]),
             "item_prob": tf.constant(p[[1, 5, 9]])}
    loss = model.compute_loss(batch).numpy()

    ids = np.array([1, 5, 9, 5, 5, 5])
    q = model.query_tower(batch["user"]).numpy()
    c = model.item_tower(tf.constant(ids)).numpy()
    mixture = (3 * p[ids] + 3 * 1.0) / 6  # B = 3 in-batch slots, B' = 3 uniform slots over a pool of 1
    logits = q @ c.T / 0.5 - np.log(np.clip(mixture, 1e-6, 1.0))
    logits[1, [3, 4, 5]] = -1e30  # item 5 is row 1's positive: its sampled copies are not negatives
    np.testing.assert_allclose(loss, _softmax_loss(logits), rtol=1e-4)
    without = build_retrieval(features, NUM_USERS, RetrievalConfig(**TINY, temperature=0.5))
    assert without.mixed_negatives == 0 and model.task.num_hard_negatives is None


def test_mixed_and_hard_negatives_train(features: ItemFeatures, interactions: EncodedInteractions) -> None:
    """Users end up nearest to their own cluster's items."""
    cfg = RetrievalConfig(**TINY, epochs=15, mixed_negatives=16, num_hard_negatives=8)
    model = build_retrieval(features, NUM_USERS, cfg, data=interactions)
    assert model.task.num_hard_negatives == 8
    train_retrieval(model, interactions, cfg, verbose=0)
    users = np.arange(1, NUM_USERS + 1)
    scores = model.query_tower(users).numpy() @ model.item_tower(np.arange(1, 31)).numpy().T
    top5_cluster = np.argsort(-scores, axis=1)[:, :5] % 4  # item index i + 1 has cluster i % 4
    assert (top5_cluster == (users % 4)[:, None]).mean() > 0.8
    with pytest.raises(ValueError, match="training data"):
        build_retrieval(features, NUM_USERS, cfg)  # mixed negatives need the training items to sample


def test_hard_negatives_keep_the_hardest_only(features: ItemFeatures, interactions: EncodedInteractions) -> None:
    """Fewer negatives, the hardest ones: the loss is below the full softmax's, above the 1-negative one's."""
    batch = {"user": tf.constant(interactions.train.user[:32]), "item": tf.constant(interactions.train.item[:32]),
             "item_prob": tf.constant(interactions.item_prob[interactions.train.item[:32]])}
    losses = []
    for k in (0, 8, 1):
        tf.keras.utils.set_random_seed(0)
        model = build_retrieval(features, NUM_USERS, RetrievalConfig(**TINY, num_hard_negatives=k))
        losses.append(model.compute_loss(batch).numpy())
    assert losses[0] > losses[1] > losses[2] > 0


def test_adversarial_content_step(features: ItemFeatures, interactions: EncodedInteractions) -> None:
    """With FGSM on, each step also fits content moved in its worst direction; that loss is higher
    than the clean one (the step goes uphill), and training still converges."""
    cfg = RetrievalConfig(**TINY, epochs=4, id_dropout=0.0, modality_dropout=0.0, adversarial_epsilon=0.3)
    model = build_retrieval(features, NUM_USERS, cfg, data=interactions)
    history = train_retrieval(model, interactions, cfg, verbose=0).history
    assert all(a > c for a, c in zip(history["adversarial_loss"], history["loss"]))
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    plain = build_retrieval(features, NUM_USERS, RetrievalConfig(**TINY, epochs=1))
    assert "adversarial_loss" not in train_retrieval(plain, interactions, RetrievalConfig(**TINY, epochs=1),
                                                     verbose=0).history
