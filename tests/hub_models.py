"""Tiny SavedModels with exactly the interfaces of the real TF-Hub models tfmmrec registers.

The network is unavailable, so the real models cannot be downloaded in tests. These stand-ins
reproduce each model's calling convention -- input and output names, ranks, dtypes, sizes and
value ranges, and the checks the real ones make implicitly (an image must be 299x299 in [0, 1],
a YAMNet waveform must be one 1-D 16 kHz clip) -- with a few random weights, so the whole
encoder path (contracts, store, towers, fine-tuning) runs through the same code as with the
real models. Each is a Reusable SavedModel (``variables``, ``trainable_variables``, ``__call__``
with a ``training`` argument where the real one has it), like the models on TF-Hub / Kaggle.

Interfaces (from the model cards):
- BERT preprocess: ``__call__(strings [b]) -> {input_word_ids, input_mask, input_type_ids}``
  int32 ``[b, 128]``; ``tokenize(strings [b]) -> int32 ragged [b, words, wordpieces]``;
  ``bert_pack_inputs([ragged], seq_length) -> the same dict with [b, seq_length]``. Built with
  TF.Text ops (BertTokenizer, RoundRobinTrimmer, combine_segments, pad_model_inputs), as the
  real one is, so it loads only where ``tensorflow_text`` is imported.
- BERT encoder: ``__call__(dict of three int32 [b, s], training) -> {pooled_output [b, H],
  sequence_output [b, s, H], default [b, H], encoder_outputs [L x [b, s, H]]}``.
- Universal Sentence Encoder: ``__call__(strings [b]) -> float32 [b, 512]``.
- Image feature vector: ``__call__(float32 [b, S, S, 3] in [0, 1], training) -> [b, D]``
  (Inception v3: S=299, D=2048; MobileNet v2 100/224: S=224, D=1280).
- YAMNet: ``__call__(float32 [samples] at 16 kHz in [-1, 1]) -> (scores [N, 521],
  embeddings [N, 1024], log_mel_spectrogram [M, 64])``, N patches of 0.96 s every 0.48 s.
- VGGish: ``__call__(float32 [samples]) -> embeddings [N, 128]``.
- TRILL v3: ``__call__(samples float32 [samples], sample_rate int32 scalar) -> {embedding
  [T, 512], layer19 [T, 12288]}``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_text as text

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "red", "blue", "green", "lamp", "chair", "table", "song", "fast",
         "slow", "vintage", "modern", "the", "a", "##s", "##ing", "rock", "jazz"]
CLS, SEP, PAD = 2, 3, 0


def _rng_var(shape: tuple[int, ...], seed: int, name: str, trainable: bool = True) -> tf.Variable:
    # float32 after the division: with numpy 2 a float32 array / np.float64 scalar is float64 (NEP 50)
    values = (np.random.default_rng(seed).standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
    return tf.Variable(values, trainable=trainable, name=name)


def reusable(module: tf.Module, call: object) -> object:
    """A Reusable SavedModel object: ``__call__`` plus ``variables`` / ``trainable_variables`` lists,
    the attributes hub.KerasLayer reads (a tf.Module's own properties are not saved)."""
    obj = tf.__internal__.tracking.AutoTrackable()
    obj.module = module
    obj.__call__ = call
    obj.variables = list(module.variables)
    obj.trainable_variables = list(module.trainable_variables)
    obj.regularization_losses = []
    return obj


class BertPreprocess(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        table = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(VOCAB, tf.range(len(VOCAB), dtype=tf.int64)), num_oov_buckets=1)
        self.tokenizer = text.BertTokenizer(table, token_out_type=tf.int32, lower_case=True)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, sentences: tf.Tensor) -> tf.RaggedTensor:
        ids = self.tokenizer.tokenize(sentences)
        return tf.ragged.map_flat_values(lambda t: tf.minimum(t, len(VOCAB) - 1), ids)  # OOV bucket -> [UNK]-ish

    @tf.function(input_signature=[[tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)],
                                  tf.TensorSpec([], tf.int32)])
    def bert_pack_inputs(self, inputs: list[tf.RaggedTensor], seq_length: tf.Tensor) -> dict[str, tf.Tensor]:
        segments = [s.merge_dims(1, 2) for s in inputs]
        trimmed = text.RoundRobinTrimmer(max_seq_length=seq_length - 1 - len(segments)).trim(segments)
        ids, type_ids = text.combine_segments(trimmed, start_of_sequence_id=CLS, end_of_segment_id=SEP)
        word_ids, mask = text.pad_model_inputs(ids, max_seq_length=seq_length, pad_value=PAD)
        type_ids, _ = text.pad_model_inputs(type_ids, max_seq_length=seq_length, pad_value=0)
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, sentences: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.bert_pack_inputs([self.tokenize(sentences)], tf.constant(128))


class BertEncoder(tf.Module):
    def __init__(self, hidden: int, layers: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.hidden, self.num_layers = hidden, layers
        self.word_embeddings = _rng_var((len(VOCAB), hidden), seed, "word_embeddings")
        self.type_embeddings = _rng_var((2, hidden), seed + 1, "type_embeddings")
        self.layer_weights = [_rng_var((hidden, hidden), seed + 2 + i, f"layer_{i}") for i in range(layers)]
        self.pooler = _rng_var((hidden, hidden), seed + 9, "pooler")

    @tf.function
    def __call__(self, inputs: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        ids, mask, types = inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"]
        x = tf.gather(self.word_embeddings, ids) + tf.gather(self.type_embeddings, types)
        maskf = tf.cast(mask, tf.float32)[..., None]
        outputs = []
        for w in self.layer_weights:
            context = tf.reduce_sum(x * maskf, axis=1, keepdims=True) / tf.maximum(
                tf.reduce_sum(maskf, axis=1, keepdims=True), 1.0)
            x = tf.nn.gelu(tf.einsum("bsh,hk->bsk", x + context, w))
            if training:
                x = tf.nn.dropout(x, 0.1)
            outputs.append(x)
        pooled = tf.tanh(tf.matmul(x[:, 0], self.pooler))
        return {"pooled_output": pooled, "sequence_output": x, "default": pooled, "encoder_outputs": outputs}


def _bert_encoder(hidden: int) -> object:
    encoder = BertEncoder(hidden)
    spec = {k: tf.TensorSpec([None, None], tf.int32) for k in ("input_word_ids", "input_mask", "input_type_ids")}
    for training in (False, True):
        encoder.__call__.get_concrete_function(spec, training)
    return reusable(encoder, encoder.__call__)


class SentenceEncoder(tf.Module):
    """Universal Sentence Encoder: strings -> 512-d (hashed words, averaged, normalised)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = _rng_var((997, 512), 3, "words")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, sentences: tf.Tensor) -> tf.Tensor:
        words = tf.strings.split(tf.strings.lower(sentences))
        vectors = tf.ragged.map_flat_values(tf.gather, self.table, tf.strings.to_hash_bucket_fast(words, 997))
        mean = tf.reduce_mean(vectors, axis=1)
        return tf.math.l2_normalize(tf.where(tf.math.is_nan(mean), tf.zeros_like(mean), mean), axis=-1)


class ImageFeatureVector(tf.Module):
    """A conv + global pooling + dense, on exactly [b, size, size, 3] in [0, 1]."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.kernel = _rng_var((3, 3, 3, 8), 5, "conv")
        self.dense = _rng_var((8, dim), 6, "dense")

    @tf.function
    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        with tf.control_dependencies([
                tf.debugging.assert_greater_equal(images, 0.0, message="image values must be in [0, 1]"),
                tf.debugging.assert_less_equal(images, 1.0, message="image values must be in [0, 1]")]):
            x = tf.nn.relu(tf.nn.conv2d(images, self.kernel, strides=4, padding="SAME"))
        return tf.nn.relu(tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.dense))


def _image_model(size: int, dim: int) -> object:
    model = ImageFeatureVector(size, dim)
    for training in (False, True):
        model.__call__.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.float32), training)
    return reusable(model, model.__call__)


def _log_mel(waveform: tf.Tensor, mel: tf.Tensor) -> tf.Tensor:
    """YAMNet's features: 25 ms windows every 10 ms, 64 mel bands, log."""
    stft = tf.signal.stft(waveform, frame_length=400, frame_step=160, fft_length=512)
    return tf.math.log(tf.matmul(tf.abs(stft), mel) + 0.001)


def _patches(log_mel: tf.Tensor) -> tf.Tensor:
    """0.96 s patches (96 frames) every 0.48 s (48 frames), at least one: [N, 96, 64]."""
    padded = tf.pad(log_mel, [[0, tf.maximum(96 - tf.shape(log_mel)[0], 0)], [0, 0]])
    return tf.signal.frame(padded, 96, 48, axis=0)


class YAMNet(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mel = tf.constant(tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125.0, 7500.0))
        self.embed = _rng_var((64, 1024), 7, "embed")
        self.classify = _rng_var((1024, 521), 8, "classify")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, waveform: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        tf.debugging.assert_less_equal(tf.reduce_max(tf.abs(waveform)), 1.0, message="waveform must be in [-1, 1]")
        log_mel = _log_mel(waveform, self.mel)
        embeddings = tf.nn.relu(tf.matmul(tf.reduce_mean(_patches(log_mel), axis=1), self.embed))
        scores = tf.sigmoid(tf.matmul(embeddings, self.classify))
        return scores, embeddings, log_mel


class VGGish(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mel = tf.constant(tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125.0, 7500.0))
        self.embed = _rng_var((64, 128), 9, "embed")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, waveform: tf.Tensor) -> tf.Tensor:
        return tf.matmul(tf.reduce_mean(_patches(_log_mel(waveform, self.mel)), axis=1), self.embed)


class TRILL(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mel = tf.constant(tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125.0, 7500.0))
        self.layer19 = _rng_var((64, 96), 10, "layer19")  # tiled to TRILL's 12288 columns
        self.embedding = _rng_var((96, 512), 11, "embedding")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)])
    def __call__(self, samples: tf.Tensor, sample_rate: tf.Tensor) -> dict[str, tf.Tensor]:
        tf.debugging.assert_equal(sample_rate, 16000, message="TRILL takes 16 kHz audio")
        frames = tf.reduce_mean(_patches(_log_mel(samples, self.mel)), axis=1)  # [T, 64]
        hidden = tf.nn.relu(tf.matmul(frames, self.layer19))
        return {"embedding": tf.matmul(hidden, self.embedding), "layer19": tf.tile(hidden, [1, 128])}


def write_tiny_hub_models(root: Path, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write every stand-in under ``root``; returns registry name -> SavedModel directory
    (``bert-preprocess`` is the preprocessing model shared by both BERTs; BERT-Base differs from
    the small one only in width, so only the small one is written)."""
    root.mkdir(parents=True, exist_ok=True)
    builders: dict[str, Callable[[], object]] = {
        "bert-preprocess": BertPreprocess, "small-bert": lambda: _bert_encoder(512), "use": SentenceEncoder,
        "inception-v3": lambda: _image_model(299, 2048), "mobilenet-v2": lambda: _image_model(224, 1280),
        "yamnet": YAMNet, "vggish": VGGish, "trill": TRILL}
    paths = {}
    for name, build in builders.items():
        if names is not None and name not in names:
            continue
        paths[name] = root / name
        tf.saved_model.save(build(), str(paths[name]))
    return paths
