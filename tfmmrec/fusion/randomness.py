"""Training-time random draws (dropouts, hidden ids, sampled negatives) from one checkpointed generator.

Why: a run killed mid-epoch and resumed from its backup (``tfmmrec.train.resume``) must draw the
random numbers the uninterrupted run would have drawn. Seeded stateful ops (``tf.random.uniform``,
Keras ``Dropout``) keep their position in op kernels, which start afresh in a new process, so a
resumed run re-draws from the beginning of their sequences. A ``tf.random.Generator`` keeps its
position in a variable: ``training_randomness`` creates one per ``fit`` from the run's seed and
attaches it to the model, so the backup saves and restores it with the weights and optimizer.

Every training-time draw of the models goes through :func:`uniform` (and :class:`Dropout`).
Outside ``training_randomness`` (a layer called with ``training=True`` by hand, or traced by a
SavedModel export) they are plain ``tf.random.uniform`` ops: a function traced there must not
capture the generator's variable, which is not part of the exported object.

Lives in ``fusion`` because that is the lowest stage that draws at random (modality dropout);
``models`` and ``train`` import it from here.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import tensorflow as tf
import tf_keras as keras

# The model attribute that holds the generator during ``fit`` (and so its name in the backup).
GENERATOR_ATTRIBUTE = "training_rng"
_active: list[tf.random.Generator] = []  # innermost ``training_randomness`` last


@contextlib.contextmanager
def training_randomness(model: keras.Model, seed: int) -> Iterator[tf.random.Generator]:
    """Within: every :func:`uniform` draw comes from a generator seeded by ``seed``, tracked by
    ``model`` (so ``BackupAndRestore`` checkpoints its state). Create the model's train function
    (call ``fit``) inside: it captures the generator when traced. On exit the attribute is removed
    again, so saved weights and exports do not carry it."""
    with model.distribute_strategy.scope():  # per-replica streams under a distribution strategy
        generator = tf.random.Generator.from_seed(seed)
    setattr(model, GENERATOR_ATTRIBUTE, generator)
    _active.append(generator)
    try:
        yield generator
    finally:
        _active.remove(generator)
        if hasattr(model, GENERATOR_ATTRIBUTE):
            delattr(model, GENERATOR_ATTRIBUTE)


def uniform(shape: Any, minval: Any = 0, maxval: Any = None, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """``tf.random.uniform`` from the training generator (``maxval`` defaults to 1 for floats)."""
    if maxval is None:
        maxval = 1.0 if dtype.is_floating else None
    if not _active:
        return tf.random.uniform(shape, minval, maxval, dtype=dtype)
    return _active[-1].uniform(shape, minval, maxval, dtype=dtype)


@keras.utils.register_keras_serializable(package="tfmmrec")
class Dropout(keras.layers.Dropout):
    """Keras ``Dropout`` whose masks come from the training generator (see the module doc).
    Same arguments and config as ``keras.layers.Dropout`` (``noise_shape`` is not supported)."""

    def call(self, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
        if training is None:
            training = keras.backend.learning_phase()
        if not self.rate or (isinstance(training, (bool, int)) and not training):
            return tf.identity(inputs)

        def dropped() -> tf.Tensor:
            keep = uniform(tf.shape(inputs)) >= self.rate
            return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))

        if isinstance(training, (bool, int)):
            return dropped()
        return tf.cond(tf.cast(training, tf.bool), dropped, lambda: tf.identity(inputs))
