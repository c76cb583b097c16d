"""The retrieval task: a sampled-softmax loss over in-batch (and optionally extra) candidates.

It has the interface of ``tfrs.tasks.Retrieval`` (query and candidate embeddings in, a scalar
loss out, the same temperature -> logQ -> accidental-hit -> hard-negative order and the same
summed cross-entropy), and two additions that two-tower training at scale needs:

* ``positive_indices``: which candidate column is each query's positive. TFRS assumes the
  diagonal (``tf.eye``); a model that gathers candidates from all replicas, or that puts extra
  candidates in front, needs another column. Default: the diagonal, i.e. TFRS's behaviour.
* candidates beyond the first ``num_queries`` columns are negatives for every query. This is how
  *mixed negatives* (Yang et al. 2020, "Mixed Negative Sampling for Learning Two-tower Neural
  Networks in Recommendations") enter: the caller appends uniformly sampled items and passes
  their sampling probability under the mixed distribution (see :func:`mixed_sampling_probability`).

References: Yi et al. 2019 (logQ correction), TFRS ``layers/loss.py`` (the three layers reused here).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras


def mixed_sampling_probability(unigram_prob: tf.Tensor, num_in_batch: tf.Tensor | int, num_uniform: int,
                               num_pool_items: tf.Tensor | int) -> tf.Tensor:
    """Probability that one candidate slot holds an item, when the candidate set is ``num_in_batch``
    in-batch items (drawn by the training distribution, ``unigram_prob``) plus ``num_uniform`` items
    drawn uniformly from ``num_pool_items``: the mixture ``(B p(i) + B' / N) / (B + B')``.

    Subtracting its log from the logits is the logQ correction of the whole candidate set, the
    same value for an item whether it arrived in the batch or from the uniform sampler. With
    ``num_uniform == 0`` it is ``unigram_prob`` itself, i.e. plain in-batch logQ.
    """
    b = tf.cast(num_in_batch, tf.float32)
    b_extra = tf.cast(num_uniform, tf.float32)
    n = tf.cast(num_pool_items, tf.float32)
    return (b * tf.cast(unigram_prob, tf.float32) + b_extra / n) / (b + b_extra)


@keras.utils.register_keras_serializable(package="tfmmrec")
class RetrievalTask(keras.layers.Layer):
    """Softmax retrieval loss with temperature, logQ correction, accidental-hit removal and
    hard-negative mining.

    Args:
      temperature: logits are ``score / temperature`` (cosine scores need ~0.05-0.3).
      remove_accidental_hits: a candidate with the positive's id is not a negative for that query.
      num_hard_negatives: keep only the positive and the ``k`` highest-scoring negatives per query
        (after the corrections), as ``tfrs.layers.loss.HardNegativeMining``; ``None``/0: all.

    Example::

        task = RetrievalTask(temperature=0.2)
        loss = task(queries, candidates, candidate_sampling_probability=p, candidate_ids=ids)
    """

    def __init__(self, temperature: float | None = None, remove_accidental_hits: bool = False,
                 num_hard_negatives: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = temperature
        self.remove_accidental_hits = remove_accidental_hits
        self.num_hard_negatives = num_hard_negatives or None
        self.loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                            reduction=keras.losses.Reduction.SUM)

    def logits_and_labels(self, query_embeddings: tf.Tensor, candidate_embeddings: tf.Tensor,
                          candidate_sampling_probability: tf.Tensor | None = None,
                          candidate_ids: tf.Tensor | None = None,
                          positive_indices: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Corrected logits ``[queries, candidates or k + 1]`` and one-hot labels of the same shape."""
        scores = tf.linalg.matmul(query_embeddings, candidate_embeddings, transpose_b=True)
        num_queries, num_candidates = tf.shape(scores)[0], tf.shape(scores)[1]
        if positive_indices is None:
            labels = tf.eye(num_queries, num_candidates)
        else:
            labels = tf.one_hot(positive_indices, num_candidates)
        if self.temperature is not None:
            scores = scores / self.temperature
        if candidate_sampling_probability is not None:
            scores = tfrs.layers.loss.SamplingProbablityCorrection()(scores, candidate_sampling_probability)
        if self.remove_accidental_hits:
            if candidate_ids is None:
                raise ValueError("remove_accidental_hits needs candidate_ids")
            scores = tfrs.layers.loss.RemoveAccidentalHits()(labels, scores, candidate_ids)
        if self.num_hard_negatives:
            scores, labels = tfrs.layers.loss.HardNegativeMining(self.num_hard_negatives)(scores, labels)
        return scores, labels

    def call(self, query_embeddings: tf.Tensor, candidate_embeddings: tf.Tensor,
             sample_weight: tf.Tensor | None = None, candidate_sampling_probability: tf.Tensor | None = None,
             candidate_ids: tf.Tensor | None = None, compute_metrics: bool = False,
             compute_batch_metrics: bool = False, positive_indices: tf.Tensor | None = None) -> tf.Tensor:
        """Summed cross-entropy over queries (TFRS's reduction). ``compute_*metrics`` are accepted
        for interface compatibility; evaluation is a separate full-catalog pass (``tfmmrec.evaluate``)."""
        del compute_metrics, compute_batch_metrics
        if not self.num_hard_negatives:
            return self._sparse_loss(query_embeddings, candidate_embeddings, sample_weight,
                                     candidate_sampling_probability, candidate_ids, positive_indices)
        logits, labels = self.logits_and_labels(query_embeddings, candidate_embeddings,
                                                candidate_sampling_probability, candidate_ids, positive_indices)
        return self.loss_fn(y_true=labels, y_pred=logits, sample_weight=sample_weight)

    def _sparse_loss(self, query_embeddings: tf.Tensor, candidate_embeddings: tf.Tensor,
                     sample_weight: tf.Tensor | None, candidate_sampling_probability: tf.Tensor | None,
                     candidate_ids: tf.Tensor | None, positive_indices: tf.Tensor | None) -> tf.Tensor:
        """The same loss as :meth:`logits_and_labels` + categorical cross-entropy, without a dense
        ``[queries, candidates]`` label matrix: at batch 8192 TFRS's ``tf.eye`` labels are 268 MB of
        floats written, masked and read on every step. Positives are column indices; the accidental-hit
        mask and the cross-entropy use them directly."""
        scores = tf.linalg.matmul(query_embeddings, candidate_embeddings, transpose_b=True)
        num_queries, num_candidates = tf.shape(scores)[0], tf.shape(scores)[1]
        positives = (tf.range(num_queries) if positive_indices is None
                     else tf.cast(positive_indices, tf.int32))
        if self.temperature is not None:
            scores = scores / self.temperature
        if candidate_sampling_probability is not None:
            # As tfrs.layers.loss.SamplingProbablityCorrection, clip included.
            probability = tf.cast(candidate_sampling_probability, scores.dtype)
            scores = scores - tf.math.log(tf.clip_by_value(probability, 1e-6, 1.0))
        if self.remove_accidental_hits:
            if candidate_ids is None:
                raise ValueError("remove_accidental_hits needs candidate_ids")
            candidate_ids = tf.reshape(candidate_ids, [-1])
            hit = tf.equal(tf.gather(candidate_ids, positives)[:, None], candidate_ids[None, :])
            hit = tf.logical_and(hit, tf.not_equal(tf.range(num_candidates)[None, :], positives[:, None]))
            # TFRS adds the float minimum to such logits (tfrs.layers.loss.MIN_FLOAT).
            scores = tf.where(hit, scores + tfrs.layers.loss.MIN_FLOAT, scores)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=scores)
        if sample_weight is not None:
            losses = losses * tf.reshape(tf.cast(sample_weight, losses.dtype), [-1])
        return tf.reduce_sum(losses)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature,
                "remove_accidental_hits": self.remove_accidental_hits,
                "num_hard_negatives": self.num_hard_negatives}
