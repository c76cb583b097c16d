"""FLAC/Ogg/MP3 catalog files: decoded before the graph when a decoder is installed, otherwise
counted as an unsupported format (not as corrupt) in the decode report."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tfmmrec.data.loader import load_dataset
from tfmmrec.encoders.encode import encode_catalog
from tfmmrec.media import compressed
from tfmmrec.media.audio import decode_wav
from tfmmrec.media.compressed import decode_audio, float_wav, sniff_compressed, to_wav_bytes, unsupported_reason


def tone(rate: int, seconds: float = 0.5, channels: int = 2) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.4 * np.sin(2 * np.pi * 330 * t * (c + 1)) for c in range(channels)], axis=1).astype(np.float32)


def test_formats_are_recognised_from_their_first_bytes() -> None:
    assert [sniff_compressed(h) for h in (b"fLaC", b"OggS", b"ID3\x04", b"\xff\xfb\x90\x00", b"RIFF", b"\x89PNG")] \
        == ["FLAC", "Ogg", "MP3", "MP3", None, None]


def test_a_float_wav_written_for_the_graph_decodes_to_its_samples() -> None:
    x = tone(16000)
    np.testing.assert_allclose(decode_wav(tf.constant(float_wav(x, 16000)), 0.5).numpy(), x.mean(axis=1), atol=1e-7)


def test_flac_and_ogg_go_through_soundfile_then_the_graph_decoder() -> None:
    soundfile = pytest.importorskip("soundfile", reason="the audio extra (soundfile) is not installed")
    x = tone(44100)
    reference = decode_wav(tf.constant(float_wav(x, 44100)), 0.5).numpy()
    for fmt, subtype, atol in [("FLAC", "PCM_24", 1e-6), ("OGG", "VORBIS", 0.05)]:
        buf = io.BytesIO()
        soundfile.write(buf, x, 44100, format=fmt, subtype=subtype)
        got = decode_audio(tf.constant(buf.getvalue()), 0.5).numpy()  # eager, as in tf.data below
        assert np.abs(got - reference).max() < atol, fmt
        ds = tf.data.Dataset.from_tensors(buf.getvalue()).map(lambda b: decode_audio(b, 0.5))
        np.testing.assert_allclose(next(iter(ds)).numpy(), got, atol=1e-7)


def test_tensorflow_io_decodes_flac_where_its_ops_load() -> None:
    soundfile = pytest.importorskip("soundfile", reason="soundfile writes the FLAC file")
    if not compressed.tfio_loads():
        pytest.skip("tensorflow-io is not installed or its ops do not load with this TF (only 2.16/2.17)")
    buf = io.BytesIO()
    soundfile.write(buf, tone(22050), 22050, format="FLAC", subtype="PCM_16")
    via_tfio = decode_wav(tf.constant(to_wav_bytes(buf.getvalue(), "tensorflow-io")), 0.5).numpy()
    via_sndfile = decode_wav(tf.constant(to_wav_bytes(buf.getvalue(), "soundfile")), 0.5).numpy()
    np.testing.assert_allclose(via_tfio, via_sndfile, atol=1e-6)


@pytest.fixture
def no_decoder(monkeypatch: pytest.MonkeyPatch):
    """An environment without soundfile and tensorflow-io (their imports fail, as when not installed)."""
    monkeypatch.setitem(sys.modules, "soundfile", None)
    monkeypatch.setitem(sys.modules, "tensorflow_io", None)
    compressed.available_decoder.cache_clear()
    yield
    compressed.available_decoder.cache_clear()


def test_without_a_decoder_compressed_files_are_reported_unsupported_not_corrupt(tmp_path: Path, no_decoder) -> None:
    (tmp_path / "a.wav").write_bytes(float_wav(tone(22050), 22050))
    (tmp_path / "b.flac").write_bytes(b"fLaC\x00\x00\x00\x22" + bytes(64))  # never opened by a decoder here
    (tmp_path / "c.wav").write_bytes(b"RIFF\x00\x00")  # corrupt
    with pytest.raises(ValueError, match=r"unsupported format FLAC \(install tfmmrec\[audio\]\)"):
        to_wav_bytes((tmp_path / "b.flac").read_bytes())
    assert unsupported_reason(tmp_path / "b.flac") == "unsupported format FLAC (install tfmmrec[audio])"
    assert unsupported_reason(tmp_path / "a.wav") is None

    (tmp_path / "items.csv").write_text("item_id,audio_path\na,a.wav\nb,b.flac\nc,c.wav\nd,\n")
    (tmp_path / "interactions.csv").write_text("user_id,item_id\nu1,a\nu1,b\nu2,c\nu2,d\n")
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({
        "name": "clips", "items": "items.csv", "interactions": "interactions.csv",
        "modalities": {"audio": {"kind": "audio", "column": "audio_path"}}}))
    content = encode_catalog(load_dataset(tmp_path), progress=False)
    report = content.reports[0]
    assert (report.decoded, report.absent, report.failed) == (1, 1, ["c.wav"])
    assert report.unsupported == {"flac (install tfmmrec[audio])": ["b (b.flac)"]}
    assert "1 of an unsupported format (flac (install tfmmrec[audio]): 1)" in report.summary()
    assert content.masks["audio"].tolist() == [1, 0, 0, 0]
