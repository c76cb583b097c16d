"""Learned weighted sum: one learned weight per modality, renormalised over what an item has."""
from __future__ import annotations

from typing import ClassVar

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion.base import FusionLayer, masked_softmax


@keras.utils.register_keras_serializable(package="tfmmrec")
class WeightedSumFusion(FusionLayer):
    """``sum_m w_m * P_m x_m`` with ``w = softmax(logits)`` over the item's present modalities.

    The simplest fusion that weighs modalities: the weights are global (the same for every item),
    so they say how much the model trusts each modality overall; per item they only differ by
    which modalities are present. A good baseline for the per-item weighing layers.

    Example:
      >>> fusion = WeightedSumFusion(64)
      >>> fused = fusion({"text": t, "image": i}, {"text": tm, "image": im})   # [batch, 64]
      >>> fusion.modality_weights({"text": t, "image": i}, {"text": tm, "image": im})["text"]  # [batch]
    """

    weighs_modalities: ClassVar[bool] = True

    def build_fusion(self, num_modalities: int) -> None:
        self.modality_logits = self.add_weight(name="modality_logits", shape=(num_modalities,),
                                               initializer="zeros")

    def fuse(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool | None,
             query: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
        weights = masked_softmax(tf.broadcast_to(self.modality_logits[None, :], tf.shape(mask)), mask)
        return tf.reduce_sum(weights[:, :, None] * tokens, axis=1), weights
