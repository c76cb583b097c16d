"""Mask-aware concatenation fusion: the baseline every other fusion is compared with."""
from __future__ import annotations

from typing import Any, ClassVar

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion import randomness
from tfmmrec.fusion.base import mlp_head


@keras.utils.register_keras_serializable(package="tfmmrec")
class ConcatFusion(keras.layers.Layer):
    """Concatenate masked modality embeddings and their masks, then an MLP.

    An absent modality enters as zeros *and* a 0 in its mask column, so the MLP can tell "absent"
    from "present but near zero" and shift its output accordingly. During training, whole
    modalities are dropped at random (``modality_dropout``) so that the model does not come to
    rely on a modality that some items lack.

    Call args:
      embeddings: dict modality -> float ``[batch, dim_m]``.
      masks: dict modality -> float/bool ``[batch]``, 1 where the item has that modality.
    Returns:
      float ``[batch, output_dim]``.
    """

    weighs_modalities: ClassVar[bool] = False
    needs_query: ClassVar[bool] = False

    def __init__(self, output_dim: int, hidden_units: tuple[int, ...] = (128,), dropout: float = 0.0,
                 modality_dropout: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.hidden_units = tuple(hidden_units)
        self.dropout = dropout
        self.modality_dropout = modality_dropout
        self.mlp = mlp_head(self.hidden_units, dropout, output_dim)

    def call(self, embeddings: dict[str, tf.Tensor], masks: dict[str, tf.Tensor],
             training: bool | None = None) -> tf.Tensor:
        # Unlike the other layers it multiplies by the mask, so absent values must be finite (the
        # item feature table stores zeros there).
        parts, flags = [], []
        for name in sorted(embeddings):
            mask = tf.cast(masks[name], tf.float32)[:, None]
            if training and self.modality_dropout > 0:
                keep = tf.cast(randomness.uniform(tf.shape(mask)) >= self.modality_dropout, tf.float32)
                mask = mask * keep
            parts.append(tf.cast(embeddings[name], tf.float32) * mask)
            flags.append(mask)
        return self.mlp(tf.concat(parts + flags, axis=-1), training=training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_dim": self.output_dim, "hidden_units": list(self.hidden_units),
                "dropout": self.dropout, "modality_dropout": self.modality_dropout}
