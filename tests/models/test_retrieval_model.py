"""The two-tower model's training options: mixed negatives, hard negatives, adversarial content."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.config import RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.models.build import build_retrieval
from tfmmrec.models.features import ItemFeatures
from tfmmrec.train.fit import train_retrieval

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


def test_partial_logq_subtracts_its_share_of_log_probability(features: ItemFeatures,
                                                             interactions: EncodedInteractions) -> None:
    """``logq_weight`` w: the logits are ``q.c / T - w * log(p)``; w = 1 is the full correction."""
    p = interactions.item_prob
    batch = {"user": tf.constant([1, 2, 3]), "item": tf.constant([1, 5, 9]), "item_prob": tf.constant(p[[1, 5, 9]])}
    for weight in (0.0, 0.5, 1.0):
        model = build_retrieval(features, NUM_USERS, RetrievalConfig(**TINY, temperature=0.5, logq_weight=weight),
                                data=interactions)
        q = model.query_tower(batch["user"]).numpy()
        c = model.item_tower(batch["item"]).numpy()
        expected = _softmax_loss(q @ c.T / 0.5 - weight * np.log(p[[1, 5, 9]]))
        np.testing.assert_allclose(model.compute_loss(batch).numpy(), expected, rtol=1e-4)


def test_mixed_and_hard_negatives_train(features: ItemFeatures, interactions: EncodedInteractions) -> None:
    """Users end up nearest to their own cluster's items."""
    cfg = RetrievalConfig(**TINY, epochs=10, mixed_negatives=16, num_hard_negatives=8)
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
    cfg = RetrievalConfig(**TINY, epochs=5, id_dropout=0.0, modality_dropout=0.0, adversarial_epsilon=0.3)
    model = build_retrieval(features, NUM_USERS, cfg, data=interactions)
    train = interactions.train
    batch = {"user": tf.constant(train.user), "item": tf.constant(train.item),
             "item_prob": tf.constant(interactions.item_prob[train.item])}
    before = model.compute_loss(batch).numpy()
    history = train_retrieval(model, interactions, cfg, verbose=0).history
    assert all(a > c for a, c in zip(history["adversarial_loss"], history["loss"]))
    assert model.compute_loss(batch).numpy() < 0.9 * before
    plain = build_retrieval(features, NUM_USERS, RetrievalConfig(**TINY, epochs=1))
    assert "adversarial_loss" not in train_retrieval(plain, interactions, RetrievalConfig(**TINY, epochs=1),
                                                     verbose=0).history


def test_every_option_is_reachable_from_the_run_config(features: ItemFeatures, interactions: EncodedInteractions,
                                                       tmp_path) -> None:
    """YAML -> RunConfig -> builders: each option arrives in the model it configures."""
    from tfmmrec.config import RunConfig
    from tfmmrec.models.build import build_multitask, build_ranking
    from tfmmrec.models.dcn import DCN
    from tfmmrec.models.features import UserFeatures

    (tmp_path / "run.yaml").write_text("""
retrieval: {embedding_dim: 8, fusion_hidden: [16], mixed_negatives: 7, num_hard_negatives: 5, history_length: 3,
            history_pooling: attention, user_features: true, user_id_dropout: 0.25, adversarial_epsilon: 0.05,
            adversarial_weight: 0.5, fusion: gated, fusion_balance_weight: 0.1, logq_weight: 0.5,
            embedding_dropout: 0.1}
ranking: {model: dcn, cross_layers: 3, cross_projection_dim: 4, field_dim: 4, hidden_units: [8]}
multitask: {enabled: true, retrieval_weight: 1.0, ranking_weight: 0.3, category_weight: 0.2, category_field: 0}
""")
    cfg = RunConfig.from_yaml(tmp_path / "run.yaml")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    users = UserFeatures(np.ones((NUM_USERS + 1, 1), np.int32), [2], ["region"])
    model = build_retrieval(features, NUM_USERS, cfg.retrieval, data=interactions, users=users)
    assert (model.mixed_negatives, model.task.num_hard_negatives) == (7, 5)
    assert (model.adversarial_epsilon, model.adversarial_weight) == (0.05, 0.5)
    assert model.logq_weight == 0.5 and model.item_tower.embedding_dropout == model.query_tower.embedding_dropout == 0.1
    q = model.query_tower
    assert (q.history_length, q.history_pooling, q.user_id_dropout, q.user_feature_cardinalities) == \
        (3, "attention", 0.25, (2,))
    assert q.history_encoder is model.item_tower  # history lives in the candidates' space
    assert model.item_tower.fusion_kind == "gated" and model.item_tower.fusion.balance_weight == 0.1
    ranker = build_ranking(features, NUM_USERS, cfg.ranking)
    assert isinstance(ranker, DCN) and len(ranker.cross) == 3 and ranker.projection_dim == 4
    multitask = build_multitask(features, NUM_USERS, cfg.retrieval, cfg.multitask, data=interactions)
    assert multitask.weights_ == {"retrieval": 1.0, "ranking": 0.3, "category": 0.2}
