"""Built-in compact encoders, written as TF-Hub-format SavedModels.

They exist so that tfmmrec runs offline and in seconds, and so that the offline default goes
through exactly the loading path of real TF-Hub models (``hub.KerasLayer`` on a SavedModel
directory): swapping in BERT, Inception v3 or YAMNet later changes a handle, not the code.

They are fixed feature extractors, not trained networks, with the input contracts of the
hub models they stand in for:

- text: strings ``[batch]`` -> ``[batch, 64]``: hashed word unigrams and bigrams, each mapped to
  a fixed random vector (a random projection of the bag of words), mean-pooled, L2-normalised.
- image: float ``[batch, H, W, 3]`` in [0, 1] -> ``[batch, 128]``: a hue histogram weighted by
  saturation, mean colour, a 4x4 grid of mean colour, and edge-orientation histograms per quadrant.
- audio: 16 kHz mono float ``[batch, samples]`` -> ``[batch, 96]``: mean and spread of a 32-band
  log-mel spectrogram over voiced frames, and the modulation spectrum of the frame energy
  (which is where rhythm and tempo live).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

BUILTIN_VERSION = 1
TEXT_DIM, IMAGE_DIM, AUDIO_DIM = 64, 128, 96
_TEXT_BUCKETS = 1 << 14


def _l2(x: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(x, axis=-1)


class TextEncoder(tf.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.table = tf.Variable(rng.standard_normal((_TEXT_BUCKETS, TEXT_DIM)).astype(np.float32) / 8.0,
                                 trainable=False, name="token_table")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        clean = tf.strings.regex_replace(tf.strings.lower(texts), r"[^a-z0-9 ]+", " ")
        words = tf.strings.split(clean)  # ragged [batch, words]
        bigrams = tf.strings.reduce_join(
            tf.stack([words[:, :-1], words[:, 1:]], axis=-1), axis=-1, separator="_")
        tokens = tf.concat([words, bigrams], axis=1)
        ids = tf.strings.to_hash_bucket_fast(tokens, _TEXT_BUCKETS)
        vectors = tf.ragged.map_flat_values(tf.gather, self.table, ids)
        pooled = tf.reduce_mean(vectors, axis=1)
        return _l2(tf.where(tf.math.is_nan(pooled), tf.zeros_like(pooled), pooled))


class ImageEncoder(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        images = tf.image.resize(images, [64, 64])
        hsv = tf.image.rgb_to_hsv(images)
        hue, sat = hsv[..., 0], hsv[..., 1]
        centers = tf.range(16, dtype=tf.float32) / 16.0
        dist = tf.abs(hue[..., None] - centers)
        dist = tf.minimum(dist, 1.0 - dist)  # hue is circular
        soft = tf.exp(-tf.square(dist * 16.0)) * sat[..., None]
        hue_hist = _l2(tf.reduce_sum(soft, axis=[1, 2]))  # 16
        mean_rgb = tf.reduce_mean(images, axis=[1, 2])  # 3
        grid = tf.reshape(tf.nn.avg_pool2d(images, 16, 16, "VALID"), [-1, 48])  # 4x4x3
        gray = tf.image.rgb_to_grayscale(images)
        edges = tf.image.sobel_edges(gray)[..., 0, :]  # [b, h, w, (dy, dx)]
        magnitude = tf.norm(edges, axis=-1)
        angle = tf.math.atan2(edges[..., 0], edges[..., 1])
        bins = tf.one_hot(tf.cast(tf.math.floormod(angle, math.pi) / math.pi * 8, tf.int32) % 8, 8)
        weighted = bins * magnitude[..., None]  # [b, 64, 64, 8]
        quadrants = tf.reshape(tf.nn.avg_pool2d(weighted, 32, 32, "VALID"), [-1, 32])
        orientation = _l2(quadrants)
        features = tf.concat([hue_hist, mean_rgb, _l2(grid), orientation], axis=-1)  # 99
        return tf.pad(features, [[0, 0], [0, IMAGE_DIM - 99]])


class AudioEncoder(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mel = tf.constant(tf.signal.linear_to_mel_weight_matrix(
            num_mel_bins=32, num_spectrogram_bins=257, sample_rate=16000,
            lower_edge_hertz=60.0, upper_edge_hertz=7600.0))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def __call__(self, waveforms: tf.Tensor) -> tf.Tensor:
        stft = tf.signal.stft(waveforms, frame_length=400, frame_step=160, fft_length=512)
        power = tf.square(tf.abs(stft))
        log_mel = tf.math.log(tf.matmul(power, self.mel) + 1e-6)  # [b, frames, 32]
        energy = tf.reduce_sum(power, axis=-1)  # [b, frames]
        voiced = tf.cast(energy > 1e-4, tf.float32)[..., None]
        count = tf.maximum(tf.reduce_sum(voiced, axis=1), 1.0)
        mean = tf.reduce_sum(log_mel * voiced, axis=1) / count
        std = tf.sqrt(tf.reduce_sum(tf.square(log_mel - mean[:, None]) * voiced, axis=1) / count + 1e-6)
        # Energy envelope at 100 frames/s; its spectrum between ~0.8 and 12 Hz carries the beat.
        envelope = tf.math.log(energy + 1e-6)
        envelope -= tf.reduce_mean(envelope, axis=1, keepdims=True)
        frames = tf.shape(envelope)[1]
        padded = tf.pad(envelope, [[0, 0], [0, tf.maximum(256 - frames, 0)]])
        modulation = tf.abs(tf.signal.rfft(padded[:, :256]))[:, 2:34]  # 32 bins of 100/256 Hz
        return tf.concat([mean / 10.0, std / 5.0, _l2(modulation)], axis=-1)  # 96


BUILTIN_ENCODERS: dict[str, type[tf.Module]] = {
    "text": TextEncoder, "image": ImageEncoder, "audio": AudioEncoder}


def builtin_encoder_path(kind: str, home: Path) -> Path:
    """Write the built-in encoder for ``kind`` as a SavedModel under ``home`` (once) and return it.

    Written to a temporary directory and renamed, so a crash never leaves a half-written model
    that a later run would try to load.
    """
    if kind not in BUILTIN_ENCODERS:
        raise KeyError(f"no built-in encoder for {kind!r}; there are {sorted(BUILTIN_ENCODERS)}")
    path = home / f"builtin-{kind}-v{BUILTIN_VERSION}"
    if (path / "saved_model.pb").is_file():
        return path
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".tmp-{path.name}-{np.random.default_rng().integers(1 << 30)}"
    tf.saved_model.save(BUILTIN_ENCODERS[kind](), str(tmp))
    try:
        tmp.rename(path)
    except OSError:  # another process won the race; its copy is identical
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return path
