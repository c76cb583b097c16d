"""WAV bytes -> 16 kHz mono float waveform, with core TensorFlow ops only.

16 kHz mono float is what YAMNet, VGGish and TRILL take, so every clip is brought to that once,
here. The same function runs in the tf.data pipeline (training, encoding) and inside the exported
``embed_item_content`` signature, which TF Serving must load without custom ops: training and
serving then embed a clip identically. Hence no tensorflow-io (its ops load only on TF 2.16/2.17)
and no ``tf.audio.decode_wav`` (16-bit PCM only).

- The RIFF header is parsed here: chunks are walked to find ``fmt `` and ``data`` (extra chunks
  such as ``LIST`` or ``fact`` are skipped; nothing assumes a 44-byte header). PCM (8/16/24/32
  bit), IEEE float (32/64 bit) and WAVE_FORMAT_EXTENSIBLE holding either are decoded.
- Channels are averaged to mono, then resampled to 16 kHz by a band-limited windowed-sinc
  interpolator: each output sample is the input convolved with a Kaiser-windowed sinc evaluated
  at that output's exact position (integer arithmetic, so no drift over long clips). The filter
  is the one ``scipy.signal.resample_poly`` designs (cutoff at the lower Nyquist, 10 zero
  crossings a side, Kaiser beta 5), evaluated continuously, so it needs no up/down factors and
  is correct for any input rate; the measured difference to ``resample_poly`` is in
  ``docs/encoders.md`` and ``tests/media/test_audio.py``.
- Clips are cut or zero-padded to ``max_seconds`` so they batch. Only the input needed for that
  is decoded, so a long clip costs no more than a short one.

A bad clip raises ``tf.errors.InvalidArgumentError`` naming the problem (not a RIFF/WAVE file, no
``fmt ``/``data`` chunk, rate or channels 0, an unknown format, a data chunk shorter than its
header says, longer than ``max_input_seconds``, or no samples at all); ``media.stream`` turns that
into a masked modality, the serving signature into a failed request.
"""
from __future__ import annotations

import math

import tensorflow as tf

TARGET_RATE = 16000
ZERO_CROSSINGS = 10  # filter half-length, in zero crossings of the lower rate's Nyquist (resample_poly: 10)
KAISER_BETA = 5.0  # resample_poly's default window ("kaiser", 5.0)
_MAX_CHUNKS = 4096  # a header with more chunks than this before "data" is not a WAV file we decode

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def decode_wav(contents: tf.Tensor, max_seconds: float, max_input_seconds: float | None = None,
               name: str = "audio") -> tf.Tensor:
    """WAV file bytes (any common format, rate and channel count) -> float32 ``[max_seconds * 16000]``.

    Args:
      contents: scalar string tensor, the whole file.
      max_seconds: output length in seconds (cut or zero-padded).
      max_input_seconds: refuse clips whose header says they are longer than this (``None``: no
        bound). The check reads only the header, so an hour-long upload costs nothing to refuse.
      name: the input named in error messages (a serving signature passes its input's name).
    Raises:
      tf.errors.InvalidArgumentError: the bytes are not a WAV file this decoder reads, the clip is
        empty, or it is longer than ``max_input_seconds``.
    """
    length = int(max_seconds * TARGET_RATE)
    header = _parse_header(contents, max_input_seconds, name)
    with tf.control_dependencies(header["checks"]):
        rate = tf.identity(header["rate"])
        # Frames needed for `length` outputs, plus the filter's reach past the last one.
        reach = tf.cast(tf.math.ceil(ZERO_CROSSINGS / _cutoff(rate)), tf.int64) + 2
        needed = tf.minimum(header["frames"], (length * rate + TARGET_RATE - 1) // TARGET_RATE + reach)
        raw = tf.strings.substr(contents, header["data_pos"], needed * header["frame_bytes"])
        samples = _decode_samples(raw, header["kind"])
        mono = tf.reduce_mean(tf.reshape(samples, [-1, header["channels"]]), axis=1)
        n_out = tf.minimum((header["frames"] * TARGET_RATE + rate - 1) // rate, length)
        wave = tf.cond(tf.equal(rate, TARGET_RATE), lambda: mono[:n_out],
                       lambda: resample(mono, rate, n_out))
    wave = wave[:length]
    wave = tf.pad(wave, [[0, length - tf.shape(wave)[0]]])
    return tf.ensure_shape(wave, [length])


def resample(wave: tf.Tensor, rate_in: tf.Tensor, n_out: tf.Tensor) -> tf.Tensor:
    """The first ``n_out`` samples of float32 ``wave`` (at ``rate_in`` Hz) resampled to 16 kHz.

    Output sample ``m`` lies at input position ``m * rate_in / 16000``; it is the sum of the input
    samples around it weighted by a Kaiser-windowed sinc whose cutoff is the lower of the two
    Nyquist frequencies (so downsampling does not alias). Samples beyond the clip count as zero,
    as in ``scipy.signal.resample_poly``.
    """
    rate_in = tf.cast(rate_in, tf.int64)
    n_out = tf.cast(n_out, tf.int64)
    cutoff = _cutoff(rate_in)  # relative to the input's Nyquist
    half = tf.cast(tf.math.ceil(ZERO_CROSSINGS / cutoff), tf.int64)
    position = tf.range(n_out, dtype=tf.int64) * rate_in
    base = position // TARGET_RATE
    frac = tf.cast(position % TARGET_RATE, tf.float64) / TARGET_RATE
    offsets = tf.range(-half, half + 1, dtype=tf.int64)
    index = base[:, None] + offsets[None, :]  # [n_out, taps]
    tau = frac[:, None] - tf.cast(offsets[None, :], tf.float64)  # output time - input time, in input samples
    weights = _kernel(tau, cutoff)
    # Unit gain at DC for every output position (resample_poly normalises the whole filter once;
    # the two agree to ~1e-5 of full scale, see the tests).
    weights = tf.cast(weights / tf.reduce_sum(weights, axis=1, keepdims=True), tf.float32)
    n_in = tf.shape(wave, out_type=tf.int64)[0]
    inside = (index >= 0) & (index < n_in)
    values = tf.gather(wave, tf.clip_by_value(index, 0, tf.maximum(n_in - 1, 0)))
    return tf.reduce_sum(tf.where(inside, values * weights, 0.0), axis=1)


def _cutoff(rate_in: tf.Tensor) -> tf.Tensor:
    """The low-pass cutoff relative to the input's Nyquist frequency: 1 when upsampling."""
    return tf.minimum(tf.constant(1.0, tf.float64), TARGET_RATE / tf.cast(rate_in, tf.float64))


def _kernel(tau: tf.Tensor, cutoff: tf.Tensor) -> tf.Tensor:
    """Kaiser-windowed sinc low-pass at ``cutoff``, ``ZERO_CROSSINGS`` zero crossings a side."""
    x = cutoff * tau
    sinc = tf.where(tf.abs(x) < 1e-12, tf.ones_like(x), tf.sin(math.pi * x) / (math.pi * tf.where(
        tf.abs(x) < 1e-12, tf.ones_like(x), x)))
    r = x / ZERO_CROSSINGS
    window = (tf.math.bessel_i0(KAISER_BETA * tf.sqrt(tf.maximum(1.0 - r * r, tf.zeros_like(r))))
              / tf.math.bessel_i0(tf.constant(KAISER_BETA, tf.float64)))
    return tf.where(tf.abs(r) <= 1.0, cutoff * sinc * window, tf.zeros_like(x))


# ---- the RIFF header ------------------------------------------------------------------------

def _le(contents: tf.Tensor, pos: tf.Tensor, size: int) -> tf.Tensor:
    """Unsigned little-endian integer of ``size`` bytes at ``pos`` (0 where the bytes run out)."""
    n = tf.cast(tf.strings.length(contents), tf.int64)
    field = tf.strings.substr(contents, tf.clip_by_value(tf.cast(pos, tf.int64), 0, n), size)
    field = tf.strings.join([field, tf.constant(b"\x00" * size)])  # short read -> zero-padded
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(field, 0, size), tf.uint8), tf.int64)
    return tf.reduce_sum(raw * tf.constant([256 ** i for i in range(size)], tf.int64))


def _find_chunks(contents: tf.Tensor, n: tf.Tensor) -> dict[str, tf.Tensor]:
    """Walk the chunks after ``RIFF....WAVE``: positions and sizes of ``fmt `` and ``data`` (-1: absent)."""
    def keep_going(pos, fmt_pos, fmt_size, data_pos, data_size, count):
        return (pos + 8 <= n) & ((fmt_pos < 0) | (data_pos < 0)) & (count < _MAX_CHUNKS)

    def step(pos, fmt_pos, fmt_size, data_pos, data_size, count):
        chunk_id = tf.strings.substr(contents, pos, 4)
        size = _le(contents, pos + 4, 4)
        is_fmt = tf.equal(chunk_id, "fmt ") & (fmt_pos < 0)
        is_data = tf.equal(chunk_id, "data") & (data_pos < 0)
        fmt_pos, fmt_size = tf.where(is_fmt, pos + 8, fmt_pos), tf.where(is_fmt, size, fmt_size)
        data_pos, data_size = tf.where(is_data, pos + 8, data_pos), tf.where(is_data, size, data_size)
        return pos + 8 + size + size % 2, fmt_pos, fmt_size, data_pos, data_size, count + 1  # chunks pad to even

    minus_one = tf.constant(-1, tf.int64)
    _, fmt_pos, fmt_size, data_pos, data_size, _ = tf.while_loop(
        keep_going, step, [tf.constant(12, tf.int64), minus_one, minus_one, minus_one, minus_one,
                           tf.constant(0, tf.int32)])
    return {"fmt_pos": fmt_pos, "fmt_size": fmt_size, "data_pos": data_pos, "data_size": data_size}


def _parse_header(contents: tf.Tensor, max_input_seconds: float | None, name: str = "audio") -> dict:
    """The fields the decoder needs, and the checks (assert ops) that must pass before decoding."""
    n = tf.cast(tf.strings.length(contents), tf.int64)
    is_wave = tf.equal(tf.strings.substr(contents, 0, 4), "RIFF") & tf.equal(
        tf.strings.substr(tf.strings.join([contents, tf.constant(b"\x00" * 12)]), 8, 4), "WAVE")
    chunks = _find_chunks(contents, tf.where(is_wave, n, 0))
    fmt = chunks["fmt_pos"]
    tag = _le(contents, fmt, 2)
    extensible = tf.equal(tag, WAVE_FORMAT_EXTENSIBLE) & (chunks["fmt_size"] >= 40)
    tag = tf.where(extensible, _le(contents, fmt + 24, 2), tag)  # the SubFormat GUID starts with the tag
    channels, rate = _le(contents, fmt + 2, 2), _le(contents, fmt + 4, 4)
    bits = _le(contents, fmt + 14, 2)
    kinds = [(WAVE_FORMAT_PCM, 8), (WAVE_FORMAT_PCM, 16), (WAVE_FORMAT_PCM, 24), (WAVE_FORMAT_PCM, 32),
             (WAVE_FORMAT_IEEE_FLOAT, 32), (WAVE_FORMAT_IEEE_FLOAT, 64)]
    matches = tf.stack([tf.equal(tag, t) & tf.equal(bits, b) for t, b in kinds])
    kind = tf.cast(tf.argmax(tf.cast(matches, tf.int32)), tf.int32)
    frame_bytes = tf.maximum(channels * (bits // 8), 1)
    frames = chunks["data_size"] // frame_bytes
    seconds = tf.cast(frames, tf.float64) / tf.cast(tf.maximum(rate, 1), tf.float64)

    def check(ok: tf.Tensor, *message: object) -> tf.Operation:
        # The input's name and the first words in one string: "sound: the WAV header says ...".
        return tf.debugging.Assert(ok, [f"{name}: {message[0]}", *message[1:]], summarize=8)

    checks = [check(is_wave, "not a RIFF/WAVE file")]
    with tf.control_dependencies(checks):
        checks.append(check(chunks["fmt_pos"] >= 0, "no fmt chunk in the WAV header"))
        checks.append(check(chunks["data_pos"] >= 0, "no data chunk in the WAV file"))
    with tf.control_dependencies(checks):
        checks.append(check(chunks["fmt_size"] >= 16, "the WAV fmt chunk is too short:", chunks["fmt_size"]))
        checks.append(check(channels > 0, "the WAV header says 0 channels"))
        checks.append(check(rate > 0, "the WAV header says sample rate 0"))
        checks.append(check(tf.reduce_any(matches), "unsupported WAV format (tag, bits per sample):", tag, bits,
                            "- PCM 8/16/24/32-bit and float 32/64-bit are read"))
    with tf.control_dependencies(checks):
        checks.append(check(chunks["data_pos"] + chunks["data_size"] <= n,
                            "the WAV data chunk is shorter than its header says (truncated file?): header",
                            chunks["data_size"], "bytes, file has", n - chunks["data_pos"]))
        checks.append(check(frames > 0, "empty audio clip (0 samples)"))
        if max_input_seconds is not None:
            checks.append(check(seconds <= max_input_seconds, "clip of", seconds,
                                "seconds is over the limit of", float(max_input_seconds), "seconds"))
    return {"checks": checks, "rate": rate, "channels": channels, "frames": frames, "kind": kind,
            "frame_bytes": frame_bytes, "data_pos": chunks["data_pos"]}


def _decode_samples(raw: tf.Tensor, kind: tf.Tensor) -> tf.Tensor:
    """Interleaved little-endian samples -> float32 in [-1, 1) (float WAVs as stored)."""
    def pcm8() -> tf.Tensor:
        return (tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.float32) - 128.0) / 128.0

    def pcm16() -> tf.Tensor:
        return tf.cast(tf.io.decode_raw(raw, tf.int16), tf.float32) / 32768.0

    def pcm24() -> tf.Tensor:
        b = tf.reshape(tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.int32), [-1, 3])
        value = b[:, 0] + b[:, 1] * 256 + b[:, 2] * 65536
        value = tf.where(value >= 2 ** 23, value - 2 ** 24, value)
        return tf.cast(value, tf.float32) / float(2 ** 23)

    def pcm32() -> tf.Tensor:
        return tf.cast(tf.cast(tf.io.decode_raw(raw, tf.int32), tf.float64) / float(2 ** 31), tf.float32)

    def float32() -> tf.Tensor:
        return tf.io.decode_raw(raw, tf.float32)

    def float64() -> tf.Tensor:
        return tf.cast(tf.io.decode_raw(raw, tf.float64), tf.float32)

    return tf.switch_case(kind, [pcm8, pcm16, pcm24, pcm32, float32, float64])
