"""Decoding real image and audio files in tf.data, with broken files masked and reported."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.media.audio import TARGET_RATE, decode_wav
from tfmmrec.media.image import decode_image
from tfmmrec.media.stream import stream_decoded


def write_png(path: Path, rgb: tuple[int, int, int], size: int = 20) -> None:
    image = np.zeros((size, size, 3), np.uint8) + np.array(rgb, np.uint8)
    path.write_bytes(tf.io.encode_png(image).numpy())


def write_wav(path: Path, rate: int, channels: int, seconds: float, freq: float = 440.0) -> None:
    t = np.arange(int(rate * seconds)) / rate
    mono = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.repeat(mono[:, None], channels, axis=1).tobytes())


def truncate(path: Path, keep: float = 0.3) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def drain(iterator) -> tuple[np.ndarray, np.ndarray]:
    rows, values = [], []
    for r, batch in iterator:
        rows.append(r)
        values.append(batch.numpy())
    return np.concatenate(rows), np.concatenate(values)


def test_decode_image_gives_unit_range_rgb_of_requested_size(tmp_path: Path) -> None:
    write_png(tmp_path / "red.png", (255, 0, 0))
    image = decode_image(tf.io.read_file(str(tmp_path / "red.png")), 8).numpy()
    assert image.shape == (8, 8, 3)
    np.testing.assert_allclose(image[..., 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(image[..., 1:], 0.0, atol=1e-5)


@pytest.mark.parametrize("rate,channels", [(16000, 1), (22050, 2), (8000, 1)])
def test_decode_wav_resamples_to_16k_mono_and_pads(tmp_path: Path, rate: int, channels: int) -> None:
    write_wav(tmp_path / "a.wav", rate, channels, seconds=0.5, freq=500.0)
    waveform = decode_wav(tf.io.read_file(str(tmp_path / "a.wav")), max_seconds=1.0).numpy()
    assert waveform.shape == (TARGET_RATE,)
    voiced = waveform[: TARGET_RATE // 2 - 200]
    assert np.abs(voiced).max() == pytest.approx(0.5, abs=0.05)
    assert np.abs(waveform[TARGET_RATE // 2 + 200:]).max() < 1e-3  # zero padding after the clip
    # The pitch survives resampling: the spectrum peaks at 500 Hz.
    spectrum = np.abs(np.fft.rfft(voiced))
    peak_hz = np.argmax(spectrum) * TARGET_RATE / len(voiced)
    assert peak_hz == pytest.approx(500.0, abs=5.0)


def test_stream_masks_absent_missing_and_corrupt_files_and_reports_them(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    paths = []
    for i, c in enumerate(colours):
        write_png(tmp_path / f"{i}.png", c)
        paths.append(f"{i}.png")
    (tmp_path / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    paths[3] = "does_not_exist.png"
    paths.append("")  # an item without an image
    iterator, report = stream_decoded(tmp_path, paths, lambda b: decode_image(b, 4), modality="image",
                                      batch_size=2)
    rows, images = drain(iterator)
    assert rows.tolist() == [0, 2, 4]
    np.testing.assert_allclose(images[1, 0, 0], [0, 0, 1], atol=1e-5)  # row 2 is the blue one
    assert (report.total, report.decoded, report.absent) == (6, 3, 1)
    assert report.missing == ["does_not_exist.png"]
    assert report.failed == ["1.png"]
    assert "1 failed to decode" in report.summary()


@pytest.mark.parametrize("bad_rows", [[0], [2], [5], [1, 2, 5], [0, 1, 2, 3, 4, 5]])
def test_truncated_wavs_anywhere_lose_no_other_row(tmp_path: Path, bad_rows: list[int]) -> None:
    # A truncated WAV makes tensorflow-io raise OutOfRange, which ends a tf.data iteration as
    # if the data were exhausted; every other row must still come out.
    paths = []
    for i in range(6):
        write_wav(tmp_path / f"{i}.wav", 16000, 1, seconds=0.2)
        paths.append(f"{i}.wav")
    for i in bad_rows:
        truncate(tmp_path / f"{i}.wav")
    iterator, report = stream_decoded(tmp_path, paths, lambda b: decode_wav(b, 0.25), modality="audio",
                                      batch_size=4)
    good = [i for i in range(6) if i not in bad_rows]
    rows = drain(iterator)[0].tolist() if good else [r for r, _ in iterator]
    assert rows == good
    assert sorted(report.failed) == sorted(f"{i}.wav" for i in bad_rows)
    assert report.decoded == len(good)


def test_refused_unsupported_and_empty_files_are_counted_apart(tmp_path: Path) -> None:
    """Never opened: outside the root, a fifo; not decoded: WebP (unsupported), a clip with no samples."""
    import os

    from tfmmrec.media.stream import audio_precheck, image_precheck

    write_png(tmp_path / "ok.png", (0, 255, 0))
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "w.webp").write_bytes(b"RIFF\x20\x00\x00\x00WEBPVP8 " + bytes(40))
    (tmp_path.parent / "secret.png").write_bytes((tmp_path / "ok.png").read_bytes())
    paths = ["ok.png", "pipe.png", "w.webp", "../secret.png", ""]
    iterator, report = stream_decoded(tmp_path, paths, lambda b: decode_image(b, 4), modality="image",
                                      precheck=image_precheck(10_000), items=["a", "b", "c", "d", "e"])
    rows, _ = drain(iterator)
    assert rows.tolist() == [0]
    assert report.skipped == {"not a regular file": ["b (pipe.png)"], "outside the dataset root": ["d (../secret.png)"]}
    assert report.unsupported == {"webp": ["c (w.webp)"]}
    assert (report.decoded, report.absent, report.failed, report.missing) == (1, 1, [], [])
    assert "1 of an unsupported format (webp: 1)" in report.summary()

    write_wav(tmp_path / "empty.wav", TARGET_RATE, 1, 0.0)
    write_wav(tmp_path / "long.wav", 8000, 1, 2.0)
    write_wav(tmp_path / "ok.wav", TARGET_RATE, 1, 0.25)
    iterator, report = stream_decoded(tmp_path, ["empty.wav", "long.wav", "ok.wav"], lambda b: decode_wav(b, 0.25),
                                      modality="audio", precheck=audio_precheck(1.0))
    assert drain(iterator)[0].tolist() == [2]
    assert report.missing == ["empty.wav"] and report.skipped == {"over limits.max_audio_seconds": ["long.wav"]}
