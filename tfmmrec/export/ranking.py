"""The ranking SavedModel: a DeepFM or DCN-v2 score for (user, item) pairs, and where it comes from.

Signatures:

``serving_default``: ``user_id``, ``item_id`` string [B] (the same B) -> ``score`` float32 [B]: the
  probability of an interaction (implicit or 0/1 feedback) or the predicted rating. Unknown
  ids map to index 0: an unknown user gets the untrained-user field, an unknown item has no id
  field and no content (the ranker only knows catalog items; rank new items with retrieval).

``explain``: the same inputs -> ``score`` and, per content modality ``m``, ``contribution_<m>``
  float32 [B] = score - (score with modality ``m`` masked), in the units of ``score``.
  Masking a modality is what the model sees when an item lacks it (its field vector and its
  first-order term are zero), so a contribution answers "how much did this item's image move
  its score, compared with the same item without an image?". Contributions are not additive:
  FM and MLP terms interact, so they need not sum to the score. A modality the item lacks
  contributes exactly 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmmrec.export.versioning import save_versioned


class RankingServing(tf.Module):
    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, model: keras.Model, binary: bool) -> None:
        super().__init__()
        table = lambda ids: tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(  # noqa: E731
            tf.constant([str(i) for i in ids], tf.string), tf.range(1, len(ids) + 1, dtype=tf.int64)), 0)
        self.users, self.items = table(user_ids), table(item_ids)
        self.model, self.binary = model, binary
        self.modalities = sorted(model.table.modality_dims) if model.use_content else []

    def _features(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        user_id, item_id = same_batch({"user_id": user_id, "item_id": item_id}).values()
        return {"user": tf.cast(self.users.lookup(user_id), tf.int32),
                "item": tf.cast(self.items.lookup(item_id), tf.int32)}

    def _output(self, logit: tf.Tensor) -> tf.Tensor:
        return tf.sigmoid(logit) if self.binary else logit

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.string, name="item_id")])
    def score(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"score": self._output(self.model(self._features(user_id, item_id), training=False))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.string, name="item_id")])
    def explain(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        vecs, firsts, names = self.model.fields(self._features(user_id, item_id), training=False)
        score = self._output(self.model.logit(vecs, firsts, training=False))
        out = {"score": score}
        for m in self.modalities:
            i = names.index(m)
            masked_vecs = vecs[:i] + [tf.zeros_like(vecs[i])] + vecs[i + 1:]
            masked_firsts = firsts[:i] + [tf.zeros_like(firsts[i])] + firsts[i + 1:]
            without = self._output(self.model.logit(masked_vecs, masked_firsts, training=False))
            out[f"contribution_{m}"] = score - without
        return out

    def signatures(self) -> dict[str, Any]:
        return {"serving_default": self.score, "explain": self.explain}


def same_batch(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """``inputs``, after checking every one has as many rows as the first: a request whose inputs
    disagree fails with an error naming them, not deep inside the model (ConcatOp, AddN)."""
    names = list(inputs)
    rows = tf.shape(inputs[names[0]])[0]
    checks = [tf.debugging.Assert(tf.equal(tf.shape(inputs[n])[0], rows), [
        f"{n} has", tf.shape(inputs[n])[0], f"rows and {names[0]} has", rows,
        "; every input needs one value per example"]) for n in names[1:]]
    with tf.control_dependencies(checks):
        return {n: tf.identity(v) for n, v in inputs.items()}


def export_ranking(base: str | Path, name: str, serving: RankingServing, version: int | None = None,
                   assets_extra: dict[str, bytes] | None = None) -> Path:
    return save_versioned(serving, base, name, serving.signatures(), version, assets_extra=assets_extra)
