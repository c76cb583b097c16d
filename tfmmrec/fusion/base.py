"""What every fusion layer shares: presence masks, modality dropout, masked softmax, projection.

The call contract of every fusion layer (``ConcatFusion`` included)::

    fused = layer(embeddings, masks, training=None)         # -> float [batch, output_dim]
    fused = layer(embeddings, masks, query=q, training=...)  # QueryCrossAttentionFusion only

- ``embeddings``: dict modality name -> float ``[batch, dim_m]`` (dims may differ);
- ``masks``: dict modality name -> float/bool ``[batch]``, 1 where the item has that modality.

An absent modality contributes nothing: its values are replaced by zeros before anything reads
them (``tf.where``, so even NaN/inf in an absent slot cannot leak, forward or backward;
``ConcatFusion`` multiplies by the mask, so absent values must be finite there), and
layers that weigh modalities renormalise their weights over the present ones. An item with no
modality at all gets finite output (all weights 0). In training, whole modalities are hidden at
random (``modality_dropout``) so the model learns to live with missing modalities.

Layers that weigh modalities (``weighs_modalities = True``) expose the weights through one method,
``layer.modality_weights(embeddings, masks[, query])`` -> dict modality -> float ``[batch]``, in
inference mode; over the present modalities of an item they sum to 1 (all 0 if none is present).
Use them to log what the model leans on and to explain a recommendation. The same layers take
``balance_weight``: when > 0, training adds ``balance_weight * batch_size * sum_m (mean_b w[b, m] -
mean_b u[b, m])**2`` to the model losses (``u`` = uniform weights over the item's present
modalities), a modality-balance regulariser that stops the model leaning on one modality. It is
scaled by the batch size because TFRS's retrieval loss sums over the batch: ``balance_weight`` is
then "per example" whatever the batch size (with a mean-reduced loss, divide it by the batch size).
Off (0) by default.

Modalities are always taken in sorted name order, so weights are created in a stable order.
"""
from __future__ import annotations

from typing import Any, ClassVar

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion import randomness


def presence(masks: dict[str, tf.Tensor], names: list[str], modality_dropout: float,
             training: bool | None) -> tf.Tensor:
    """Float ``[batch, M]`` presence matrix (columns in ``names`` order), with modality dropout
    applied in training: each present modality of each item is hidden with that probability."""
    mask = tf.stack([tf.cast(masks[n], tf.float32) for n in names], axis=1)
    if training and modality_dropout > 0:
        mask *= tf.cast(randomness.uniform(tf.shape(mask)) >= modality_dropout, tf.float32)
    return mask


def zero_absent(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """``values`` ``[batch, ...]`` with rows where ``mask`` ``[batch]`` is 0 set to exactly 0.

    ``tf.where`` rather than a product: ``inf * 0`` is NaN, and the gradient to a masked row is 0."""
    keep = tf.reshape(mask > 0, tf.concat([tf.shape(mask), tf.ones([tf.rank(values) - 1], tf.int32)], 0))
    return tf.where(keep, tf.cast(values, tf.float32), tf.zeros_like(values, tf.float32))


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """Softmax over the positions where ``mask`` is 1; 0 elsewhere; all zeros (not NaN) when
    nothing is present. ``mask`` broadcasts against ``logits``."""
    present = tf.broadcast_to(mask > 0, tf.shape(logits))
    logits = tf.where(present, logits, tf.fill(tf.shape(logits), -1e9))
    shifted = logits - tf.stop_gradient(tf.reduce_max(logits, axis=axis, keepdims=True))
    unnorm = tf.where(present, tf.exp(shifted), tf.zeros_like(shifted))
    return unnorm / tf.maximum(tf.reduce_sum(unnorm, axis=axis, keepdims=True), 1e-12)


def uniform_over_present(mask: tf.Tensor) -> tf.Tensor:
    """Uniform weights ``[batch, M]`` over each item's present modalities (0 if none)."""
    return mask / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)


def mlp_head(hidden_units: tuple[int, ...], dropout: float, output_dim: int) -> keras.Sequential:
    """ReLU MLP (with dropout) ending in a linear layer of ``output_dim`` units."""
    return keras.Sequential(
        [layer for units in hidden_units
         for layer in (keras.layers.Dense(units, activation="relu"), randomness.Dropout(dropout))]
        + [keras.layers.Dense(output_dim)])


class FusionLayer(keras.layers.Layer):
    """Base of the fusion layers that work on modality tokens of one common width.

    ``call`` builds the presence matrix (with modality dropout), projects each modality to
    ``projection_dim`` (a linear layer per modality, created on first call in sorted name order),
    zeroes absent tokens, hands ``tokens [b, M, d]`` and ``mask [b, M]`` to ``fuse`` and passes
    the fused vector, concatenated with the presence flags (so the head can tell "absent" from
    "present but near zero"), through an MLP head to ``output_dim``.

    Subclasses implement ``fuse(tokens, mask, training, query) -> (fused [b, k], weights)`` where
    ``weights`` is ``[b, M]`` for weighing layers, else ``None``.
    """

    weighs_modalities: ClassVar[bool] = False
    needs_query: ClassVar[bool] = False

    def __init__(self, output_dim: int, hidden_units: tuple[int, ...] = (128,), dropout: float = 0.0,
                 modality_dropout: float = 0.1, projection_dim: int | None = None,
                 balance_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.hidden_units = tuple(hidden_units)
        self.dropout = dropout
        self.modality_dropout = modality_dropout
        self.projection_dim = projection_dim or output_dim
        if balance_weight and not self.weighs_modalities:
            raise ValueError(f"{type(self).__name__} does not weigh modalities: balance_weight must be 0")
        self.balance_weight = balance_weight
        self.head = mlp_head(self.hidden_units, dropout, output_dim)
        self.names: list[str] = []

    def build(self, input_shape: Any) -> None:
        if not isinstance(input_shape, dict) or not input_shape:
            raise ValueError(f"{type(self).__name__} expects a non-empty dict of modality embeddings")
        self.names = sorted(input_shape)
        self.projections = {n: keras.layers.Dense(self.projection_dim, name=f"project_{n}") for n in self.names}
        self.build_fusion(len(self.names))
        super().build(input_shape)

    def build_fusion(self, num_modalities: int) -> None:
        """Create the fusion's own weights once the modalities are known."""

    def tokens(self, embeddings: dict[str, tf.Tensor], masks: dict[str, tf.Tensor],
               training: bool | None) -> tuple[tf.Tensor, tf.Tensor]:
        """Projected, masked modality tokens ``[b, M, projection_dim]`` and presence ``[b, M]``."""
        if sorted(embeddings) != self.names:
            raise ValueError(f"{self.name}: built for modalities {self.names}, called with {sorted(embeddings)}")
        mask = presence(masks, self.names, self.modality_dropout, training)
        tokens = [zero_absent(self.projections[n](zero_absent(embeddings[n], mask[:, i])), mask[:, i])
                  for i, n in enumerate(self.names)]
        return tf.stack(tokens, axis=1), mask

    def fuse(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool | None,
             query: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor | None]:
        raise NotImplementedError

    def _fused_and_weights(self, embeddings: dict[str, tf.Tensor], masks: dict[str, tf.Tensor],
                           query: tf.Tensor | None, training: bool | None
                           ) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        if self.needs_query and query is None:
            raise ValueError(f"{type(self).__name__} needs a `query` tensor [batch, query_dim]")
        if not self.needs_query and query is not None:
            raise ValueError(f"{type(self).__name__} takes no query")
        tokens, mask = self.tokens(embeddings, masks, training)
        fused, weights = self.fuse(tokens, mask, training, query)
        return fused, weights, mask

    def call(self, embeddings: dict[str, tf.Tensor], masks: dict[str, tf.Tensor], query: tf.Tensor | None = None,
             training: bool | None = None) -> tf.Tensor:
        fused, weights, mask = self._fused_and_weights(embeddings, masks, query, training)
        if training and self.balance_weight > 0 and weights is not None:
            gap = tf.reduce_mean(weights, axis=0) - tf.reduce_mean(uniform_over_present(mask), axis=0)
            batch = tf.cast(tf.shape(weights)[0], tf.float32)
            self.add_loss(self.balance_weight * batch * tf.reduce_sum(tf.square(gap)))
        return self.head(tf.concat([fused, mask], axis=-1), training=training)

    def modality_weights(self, embeddings: dict[str, tf.Tensor], masks: dict[str, tf.Tensor],
                         query: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Per-item modality weights ``{modality: [batch]}`` (inference mode, no dropout)."""
        if not self.weighs_modalities:
            raise TypeError(f"{type(self).__name__} does not weigh modalities")
        if not self.built:
            self(embeddings, masks, **({"query": query} if query is not None else {}))
        _, weights, _ = self._fused_and_weights(embeddings, masks, query, False)
        return {n: weights[:, i] for i, n in enumerate(self.names)}

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "output_dim": self.output_dim, "hidden_units": list(self.hidden_units),
                  "dropout": self.dropout, "modality_dropout": self.modality_dropout,
                  "projection_dim": self.projection_dim}
        if self.weighs_modalities:
            config["balance_weight"] = self.balance_weight
        return config
