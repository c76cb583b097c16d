"""The retrieval task against TFRS's own task, and the mixed-negatives sampling probability."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfmmrec.models.tasks import RetrievalTask, mixed_sampling_probability


@pytest.fixture()
def batch() -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(0)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    return {"q": tf.constant(unit(rng.standard_normal((6, 4))), tf.float32),
            "c": tf.constant(unit(rng.standard_normal((6, 4))), tf.float32),
            "ids": tf.constant([1, 2, 3, 2, 5, 6]),  # item 2 twice: an accidental hit for rows 1 and 3
            "prob": tf.constant(rng.uniform(0.01, 0.3, 6), tf.float32),
            "weight": tf.constant(rng.uniform(0.5, 2.0, 6), tf.float32)}


@pytest.mark.parametrize("hard", [None, 2])
def test_task_equals_tfrs_retrieval(batch: dict[str, tf.Tensor], hard: int | None) -> None:
    ours = RetrievalTask(temperature=0.2, remove_accidental_hits=True, num_hard_negatives=hard)
    theirs = tfrs.tasks.Retrieval(temperature=0.2, remove_accidental_hits=True, num_hard_negatives=hard)
    kwargs = dict(sample_weight=batch["weight"], candidate_sampling_probability=batch["prob"],
                  candidate_ids=batch["ids"])
    expected = theirs(batch["q"], batch["c"], compute_metrics=False, **kwargs).numpy()
    np.testing.assert_allclose(ours(batch["q"], batch["c"], **kwargs).numpy(), expected, rtol=1e-5)


def test_task_by_hand_with_one_hard_negative(batch: dict[str, tf.Tensor]) -> None:
    """Softmax over the positive and the single highest other logit, summed over queries."""
    task = RetrievalTask(temperature=0.5, num_hard_negatives=1)
    logits = (batch["q"].numpy() @ batch["c"].numpy().T) / 0.5
    expected = 0.0
    for row, scores in enumerate(logits):
        hardest = np.delete(scores, row).max()
        expected += -scores[row] + np.log(np.exp(scores[row]) + np.exp(hardest))
    np.testing.assert_allclose(task(batch["q"], batch["c"]).numpy(), expected, rtol=1e-5)


def test_positive_columns_other_than_the_diagonal(batch: dict[str, tf.Tensor]) -> None:
    """Candidates from elsewhere (e.g. other replicas) in front of the batch's own, positives named by
    column: the same loss as with those candidates appended behind the diagonal, as extra negatives."""
    task = RetrievalTask(temperature=0.2, remove_accidental_hits=True)
    others = tf.constant(np.random.default_rng(1).standard_normal((3, 4)), tf.float32)
    other_ids, other_prob = tf.constant([90, 2, 92]), tf.constant([0.1, 0.2, 0.05])
    in_front = task(batch["q"], tf.concat([others, batch["c"]], 0),
                    candidate_sampling_probability=tf.concat([other_prob, batch["prob"]], 0),
                    candidate_ids=tf.concat([other_ids, batch["ids"]], 0), positive_indices=tf.range(3, 9))
    behind = task(batch["q"], tf.concat([batch["c"], others], 0),
                  candidate_sampling_probability=tf.concat([batch["prob"], other_prob], 0),
                  candidate_ids=tf.concat([batch["ids"], other_ids], 0))
    only_batch = task(batch["q"], batch["c"], candidate_sampling_probability=batch["prob"],
                      candidate_ids=batch["ids"])
    np.testing.assert_allclose(in_front.numpy(), behind.numpy(), rtol=1e-5)
    assert in_front.numpy() > only_batch.numpy()  # more negatives can only add to each row's loss


def test_loss_without_label_matrix_equals_the_one_hot_cross_entropy(batch: dict[str, tf.Tensor]) -> None:
    """``call`` skips the dense one-hot labels; the loss must be the same as on ``logits_and_labels``."""
    task = RetrievalTask(temperature=0.2, remove_accidental_hits=True)
    candidates = tf.concat([batch["c"], batch["q"][:2]], 0)
    kwargs = dict(candidate_sampling_probability=tf.concat([batch["prob"], [0.1, 0.2]], 0),
                  candidate_ids=tf.concat([batch["ids"], [2, 7]], 0), positive_indices=tf.constant([0, 1, 2, 3, 4, 6]))
    logits, labels = task.logits_and_labels(batch["q"], candidates, **kwargs)
    expected = tf.reduce_sum(batch["weight"] * tf.nn.softmax_cross_entropy_with_logits(labels, logits))
    np.testing.assert_allclose(task(batch["q"], candidates, sample_weight=batch["weight"], **kwargs).numpy(),
                               expected.numpy(), rtol=1e-5)


def test_mixed_probability_is_the_mixture_of_both_samplers() -> None:
    """Monte Carlo: how often an item fills a candidate slot, when B slots come from the training
    distribution and B' from the uniform sampler, matches the formula."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(20, 0.3))
    b, b_extra, trials = 8, 4, 20000
    counts = np.zeros(20)
    for _ in range(trials):
        counts += np.bincount(rng.choice(20, b, p=p), minlength=20) + np.bincount(rng.integers(0, 20, b_extra),
                                                                                 minlength=20)
    empirical = counts / counts.sum()
    formula = mixed_sampling_probability(tf.constant(p, tf.float32), b, b_extra, 20).numpy()
    np.testing.assert_allclose(formula.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(empirical, formula, atol=3e-3)
    np.testing.assert_allclose(mixed_sampling_probability(tf.constant(p, tf.float32), b, 0, 20).numpy(), p, rtol=1e-6)


def test_task_config_round_trip() -> None:
    task = RetrievalTask(temperature=0.1, remove_accidental_hits=True, num_hard_negatives=5)
    assert RetrievalTask.from_config(task.get_config()).get_config() == task.get_config()
