"""Two-tower retrieval on TFRS, with the defaults that matter for full-catalog quality.

With in-batch negatives, popular items appear as negatives far more often than the uniform
softmax assumes, and the model learns to push them down. The logQ correction (Yi et al. 2019,
"Sampling-bias-corrected neural modeling") subtracts log(sampling probability) of each
candidate from its logit; together with a low softmax temperature on L2-normalised towers it
gives several times the full-catalog Recall of TFRS's plain defaults. Both are on by default.

Options (all off by default, see ``RetrievalConfig``):

* mixed negatives (Yang et al. 2020): ``mixed_negatives`` extra items drawn uniformly from the
  training items join the in-batch candidates, so long-tail items are seen as negatives too; the
  logQ correction then uses the mixture's probability (``tasks.mixed_sampling_probability``).
* hard-negative mining: only the ``num_hard_negatives`` highest-scoring negatives per query count.
* FGSM-style adversarial training (Goodfellow et al. 2015; for recommenders He et al. 2018,
  "Adversarial Personalized Ranking"): the batch items' content embeddings are moved by
  ``epsilon * sign(gradient)``, the direction that hurts the loss most, and the loss on the
  perturbed content is added with ``adversarial_weight``; the model learns not to hinge on small
  changes of a frozen encoder's output.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfmmrec.fusion import randomness
from tfmmrec.models.catalog_eval import CatalogEvaluation
from tfmmrec.models.distributed import gather_candidates_across_replicas
from tfmmrec.models.tasks import RetrievalTask, mixed_sampling_probability
from tfmmrec.models.towers import ItemTower, QueryTower

QUERY_KEYS = ("user", "history", "user_features")


def query_inputs(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The part of a training batch the query tower reads."""
    return {k: features[k] for k in QUERY_KEYS if k in features}


class TwoTowerRetrieval(CatalogEvaluation, tfrs.Model):
    """A TFRS model over ``{"user": int, "item": int[, "item_prob": float, "history": int [b, L]]}`` batches.

    ``evaluate`` / ``fit(validation_data=...)`` on a ``tfmmrec.train.retrieval_eval_dataset`` give the
    full-catalog metrics (``recall_at_20``, ...; see ``tfmmrec.models.catalog_eval``), the numbers
    of ``tfmmrec.evaluate_retrieval``; on training-style pairs, the loss as in TFRS.

    Args:
      temperature: softmax temperature on cosine scores.
      logq: subtract log(sampling probability) of each candidate from its logit.
      logq_weight: subtract ``logq_weight * log(probability)`` instead (1: the full correction; below
        1 leaves popular items part of their in-batch advantage).
      remove_accidental_hits: don't count another row's copy of the positive item as a negative.
      num_hard_negatives: keep only the k hardest negatives per query (0: all).
      mixed_negatives: extra uniformly sampled candidates per batch (0: in-batch only).
      item_prob: ``[num_items + 1]`` training share of each item index (needed by mixed negatives).
      negative_pool: item indices the uniform sampler draws from (the training items).
      adversarial_epsilon: size of the FGSM step on content embeddings (0: off).
      adversarial_weight: weight of the loss on perturbed content.
    """

    def __init__(self, query_tower: QueryTower, item_tower: ItemTower, *, temperature: float = 0.2,
                 logq: bool = True, logq_weight: float = 1.0, remove_accidental_hits: bool = True,
                 num_hard_negatives: int = 0, mixed_negatives: int = 0, item_prob: np.ndarray | None = None,
                 negative_pool: np.ndarray | None = None, adversarial_epsilon: float = 0.0,
                 adversarial_weight: float = 1.0) -> None:
        super().__init__()
        self.query_tower, self.item_tower = query_tower, item_tower
        self.logq, self.logq_weight, self.remove_accidental_hits = logq, logq_weight, remove_accidental_hits
        self.mixed_negatives = mixed_negatives
        if mixed_negatives and (item_prob is None or negative_pool is None or not len(negative_pool)):
            raise ValueError("mixed_negatives needs item_prob and a non-empty negative_pool")
        self.item_prob = None if item_prob is None else tf.constant(item_prob, tf.float32)
        self.negative_pool = None if negative_pool is None else tf.constant(negative_pool, tf.int32)
        self.adversarial_epsilon, self.adversarial_weight = adversarial_epsilon, adversarial_weight
        # No FactorizedTopK metrics here: scoring the whole catalog on every training step costs
        # more than the step itself. Evaluation is a separate, batched pass (tfmmrec.evaluate).
        self.task = RetrievalTask(temperature=temperature, remove_accidental_hits=remove_accidental_hits,
                                  num_hard_negatives=num_hard_negatives)

    def build_variables(self) -> None:
        """Create every variable now (the towers'; subclasses add their heads), before a first
        step: a restored backup needs variables to land in even when ``fit`` runs zero epochs, and
        ``get_weights`` must hold the whole model to snapshot its initial weights."""
        self.query_tower(tf.zeros([1], tf.int32))
        self.item_tower(tf.zeros([1], tf.int32))

    def share_candidates(self, embeddings: tf.Tensor, ids: tf.Tensor, probs: tf.Tensor
                         ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | None]:
        """The in-batch candidates every query of this replica is scored against, and the column of
        each query's positive (``None``: the diagonal).

        Under a multi-replica strategy every replica's candidates (with their ids and sampling
        probabilities) are negatives for every query, so a global batch of N gives N - 1 negatives
        as on one device; the gathered rows are rotated so the positives stay on the diagonal. On
        one device the inputs come back unchanged."""
        embeddings, probs, ids = gather_candidates_across_replicas(embeddings, probs, ids)
        return embeddings, ids, probs, None

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False,
                     content_delta: dict[str, tf.Tensor] | None = None) -> tf.Tensor:
        queries = self.query_tower(query_inputs(features), training=training)
        candidates = self.item_tower(features["item"], training=training, content_delta=content_delta)
        return self.retrieval_loss(queries, candidates, features, training)

    def retrieval_loss(self, queries: tf.Tensor, candidates: tf.Tensor, features: dict[str, tf.Tensor],
                       training: bool = False) -> tf.Tensor:
        """The task's loss for a batch's query and positive-item embeddings (negatives added here)."""
        ids = tf.cast(features["item"], tf.int32)
        probs = features["item_prob"] if "item_prob" in features else tf.ones_like(candidates[:, 0])
        candidates, ids, probs, positives = self.share_candidates(candidates, ids, probs)
        if self.mixed_negatives:
            pool = self.negative_pool
            extra = tf.gather(pool, randomness.uniform([self.mixed_negatives], 0, tf.shape(pool)[0], tf.int32))
            num_in_batch = tf.shape(ids)[0]
            ids = tf.concat([ids, extra], 0)
            candidates = tf.concat([candidates, self.item_tower(extra, training=training)], 0)
            probs = mixed_sampling_probability(tf.gather(self.item_prob, ids), num_in_batch, self.mixed_negatives,
                                               tf.shape(pool)[0])
        if self.logq and self.logq_weight != 1.0:  # p ** w: the correction subtracts w * log(p)
            probs = tf.pow(probs, self.logq_weight)
        return self.task(queries, candidates, sample_weight=features.get("weight"),
                         candidate_sampling_probability=probs if self.logq else None,
                         candidate_ids=ids if self.remove_accidental_hits else None, positive_indices=positives)

    def train_step(self, inputs: dict[str, tf.Tensor]) -> dict[str, Any]:
        if not self.adversarial_epsilon:
            return super().train_step(inputs)
        content = self.item_tower.table(inputs["item"])["content"] if self.item_tower.use_content else {}
        with tf.GradientTape() as tape:
            zero = {m: tf.zeros_like(v) for m, v in content.items()}
            with tf.GradientTape() as probe:
                probe.watch(zero)
                loss = self.compute_loss(inputs, training=True, content_delta=zero)
            grads = probe.gradient(loss, zero)
            delta = {m: tf.stop_gradient(self.adversarial_epsilon * tf.sign(g)) for m, g in grads.items()
                     if g is not None}
            adversarial_loss = self.compute_loss(inputs, training=True, content_delta=delta)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in self.losses])
            total_loss = loss + self.adversarial_weight * adversarial_loss + regularization_loss
        gradients = tape.gradient(total_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return {"loss": loss, "adversarial_loss": adversarial_loss, "regularization_loss": regularization_loss,
                "total_loss": total_loss}
