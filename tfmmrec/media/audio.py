"""Audio decoding inside tf.data with tensorflow-io: WAV bytes -> 16 kHz mono float waveform.

16 kHz mono float in [-1, 1] is what YAMNet, VGGish and TRILL take, so every clip is brought
to that once, here. Clips are cut or zero-padded to a fixed length so they batch.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_io as tfio

TARGET_RATE = 16000


def _wav_sample_rate(contents: tf.Tensor) -> tf.Tensor:
    """The sample rate field of a RIFF/WAVE header (bytes 24..27, little-endian)."""
    raw = tf.io.decode_raw(tf.strings.substr(contents, 24, 4), tf.int32, little_endian=True)
    return tf.cast(raw[0], tf.int64)


def decode_wav(contents: tf.Tensor, max_seconds: float) -> tf.Tensor:
    """Decode 16-bit PCM WAV bytes at any rate and channel count to ``[max_seconds * 16000]``.

    A file whose header promises more data than it holds fails to decode (tensorflow-io raises);
    the caller (``media.stream``) turns that into a masked modality, not a crash.
    """
    tf.debugging.assert_equal(tf.strings.substr(contents, 0, 4), "RIFF", message="not a RIFF/WAVE file")
    rate = _wav_sample_rate(contents)
    pcm = tfio.audio.decode_wav(contents, dtype=tf.int16)  # [samples, channels]
    wave = tf.reduce_mean(tf.cast(pcm, tf.float32) / 32768.0, axis=1, keepdims=True)
    wave = tf.cond(
        tf.equal(rate, TARGET_RATE),
        lambda: wave,
        lambda: tfio.audio.resample(wave, rate_in=rate, rate_out=TARGET_RATE),
    )
    wave = wave[:, 0]
    length = int(max_seconds * TARGET_RATE)
    wave = wave[:length]
    return tf.pad(wave, [[0, length - tf.shape(wave)[0]]])
