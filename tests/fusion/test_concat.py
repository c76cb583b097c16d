"""ConcatFusion: shapes, masking, serialization, gradients."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion.concat import ConcatFusion


def inputs(batch: int = 4) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    rng = np.random.default_rng(0)
    embeddings = {"text": tf.constant(rng.standard_normal((batch, 5)), tf.float32),
                  "image": tf.constant(rng.standard_normal((batch, 3)), tf.float32)}
    masks = {"text": tf.constant([1, 1, 0, 1], tf.float32), "image": tf.constant([1, 0, 1, 1], tf.float32)}
    return embeddings, masks


def test_output_shape() -> None:
    embeddings, masks = inputs()
    assert ConcatFusion(7, (16,))(embeddings, masks).shape == (4, 7)


def test_an_absent_modality_contributes_nothing() -> None:
    fusion = ConcatFusion(6, (8,), modality_dropout=0.0)
    embeddings, masks = inputs()
    before = fusion(embeddings, masks).numpy()
    scrambled = dict(embeddings)
    scrambled["image"] = embeddings["image"] * 100.0 + 3.0  # item 1 has no image
    after = fusion(scrambled, masks).numpy()
    np.testing.assert_allclose(after[1], before[1], rtol=1e-6)
    assert not np.allclose(after[0], before[0])


def test_modality_dropout_only_in_training() -> None:
    fusion = ConcatFusion(6, (8,), modality_dropout=0.5)
    embeddings, masks = inputs(4)
    np.testing.assert_allclose(fusion(embeddings, masks, training=False), fusion(embeddings, masks, training=False))
    tf.random.set_seed(1)
    trained = [fusion(embeddings, masks, training=True).numpy() for _ in range(5)]
    assert any(not np.allclose(trained[0], t) for t in trained[1:])


def test_config_round_trip_and_gradients() -> None:
    fusion = ConcatFusion(6, (8, 4), dropout=0.1, modality_dropout=0.2)
    clone = ConcatFusion.from_config(fusion.get_config())
    assert clone.get_config() == fusion.get_config()
    restored = keras.layers.deserialize(keras.layers.serialize(fusion))
    assert isinstance(restored, ConcatFusion) and restored.hidden_units == (8, 4)
    embeddings, masks = inputs()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fusion(embeddings, masks, training=True) ** 2)
    grads = tape.gradient(loss, fusion.trainable_variables)
    assert grads and all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
