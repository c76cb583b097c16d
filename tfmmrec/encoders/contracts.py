"""Each encoder contract handled in one place: raw content batch -> ``[batch, dim]`` float32.

``ContentEncoder`` is the one Keras layer that knows how every kind of model must be called
(see ``registry.CONTRACTS``): BERT goes through its matching preprocessing model (with a
configurable sequence length through ``tokenize`` + ``bert_pack_inputs``, as the BERT
preprocess models document) and is pooled or mean-pooled over the input mask; YAMNet, VGGish
and TRILL take one clip at a time and return per-frame outputs, which are mean-pooled; image
feature vectors and sentence encoders are called as they are. The same layer computes the
frozen embeddings for the store and, with ``trainable=True``, sits inside an item tower for
fine-tuning.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_hub as hub
import tf_keras as keras

from tfmmrec.encoders.handles import resolve_handle
from tfmmrec.encoders.registry import EncoderSpec, encoder_handle, get_encoder_spec

SAMPLE_RATE = 16000


def _pick(outputs: Any, key: str | int | None) -> tf.Tensor:
    if key is None:
        return outputs
    if isinstance(outputs, dict):
        if key not in outputs:
            raise KeyError(f"model output has no {key!r}; it has {sorted(outputs)}")
        return outputs[key]
    return outputs[key]


def _load_tf_text_if_needed() -> None:
    """BERT preprocessing models hold TF.Text ops, registered only once tensorflow_text is imported."""
    import tensorflow_text  # noqa: F401


@keras.utils.register_keras_serializable(package="tfmmrec")
class ContentEncoder(keras.layers.Layer):
    """A registered encoder applied to a batch of raw content, with its input contract.

    Args:
      encoder: a registry name (``bert-base``, ``yamnet``, ``builtin-text``, ``name@/local/dir``).
      trainable: fine-tune the encoder's weights (BERT, image CNNs; the preprocessing model is
        never trainable).
    Call args:
      inputs: ``text``: string ``[batch]``; ``image``: float ``[batch, s, s, 3]`` in [0, 1];
        ``audio``: 16 kHz mono float ``[batch, samples]``.
    Returns:
      float32 ``[batch, dim]``.
    """

    def __init__(self, encoder: str, trainable: bool = False, **kwargs: Any) -> None:
        super().__init__(trainable=trainable, **kwargs)
        self.encoder = encoder
        self.spec: EncoderSpec = get_encoder_spec(encoder)
        spec = self.spec
        self._model = hub.KerasLayer(encoder_handle(spec), trainable=trainable,
                                     arguments={"sample_rate": SAMPLE_RATE} if spec.sample_rate_arg else None,
                                     name="model")
        self._preprocess: Any = None
        if spec.contract == "bert":
            if not spec.preprocess:
                raise ValueError(f"encoder {spec.name!r}: a BERT encoder needs its preprocess handle")
            _load_tf_text_if_needed()
            path = resolve_handle(spec.preprocess, name=f"{spec.name} preprocess")
            if spec.seq_length == 128:  # the preprocessing model's own default
                self._preprocess = hub.KerasLayer(path, name="preprocess")
            else:
                loaded = hub.load(path)
                self._tokenize = hub.KerasLayer(loaded.tokenize, name="tokenize")
                self._pack = hub.KerasLayer(loaded.bert_pack_inputs, arguments={"seq_length": spec.seq_length},
                                            name="bert_pack_inputs")

    def _bert_inputs(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        if self._preprocess is not None:
            return self._preprocess(texts)
        return self._pack([self._tokenize(texts)])

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        spec = self.spec
        if spec.contract == "bert":
            encoder_inputs = self._bert_inputs(inputs)
            outputs = self._model(encoder_inputs, training=training)
            if spec.pooling == "pooled":
                return tf.cast(outputs["pooled_output"], tf.float32)
            mask = tf.cast(encoder_inputs["input_mask"], tf.float32)[..., None]
            summed = tf.reduce_sum(tf.cast(outputs["sequence_output"], tf.float32) * mask, axis=1)
            return summed / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        if spec.contract == "waveform_frames":
            def one_clip(clip: tf.Tensor) -> tf.Tensor:
                frames = tf.cast(_pick(self._model(clip, training=training), spec.output), tf.float32)
                frames = tf.reshape(frames, [-1, tf.shape(frames)[-1]])  # [frames, dim]
                return tf.reduce_mean(frames, axis=0)
            return tf.map_fn(one_clip, tf.cast(inputs, tf.float32), fn_output_signature=tf.float32)
        return tf.cast(_pick(self._model(inputs, training=training), spec.output), tf.float32)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "encoder": self.encoder}
