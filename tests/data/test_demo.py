"""Tests for the synthetic demo catalog: layout, determinism, media validity, and that the
latent ground truth really shows up in the interactions and in the media."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmmrec.data.demo import CATEGORIES, write_demo_catalog
from tfmmrec.data.manifest import Manifest

SMALL = dict(n_items=200, n_users=80, n_interactions=2000, image_size=32, audio_seconds=1.0)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False)


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seed 0 written twice (into a not-yet-existing nested dir) and seed 1 once."""
    base = tmp_path_factory.mktemp("demo")
    return {name: write_demo_catalog(base / name / "nested", seed=seed, **SMALL)
            for name, seed in (("a", 0), ("b", 0), ("c", 1))}


@pytest.fixture(scope="module")
def demo(catalogs: dict[str, Path]) -> Path:
    return catalogs["a"]


@pytest.fixture(scope="module")
def latent(demo: Path) -> pd.DataFrame:
    return _read(demo / "latent" / "items.csv")


def test_manifest_layout(demo: Path) -> None:
    m = Manifest.load(demo)
    assert (m.name, m.items, m.interactions, m.users, m.timestamp) == (
        "demo", "items.csv", "interactions.csv", "users.csv", "timestamp")
    assert m.rating is None and m.label is None
    assert {n: s.kind for n, s in m.modalities.items()} == {k: k for k in ("text", "image", "audio")}
    assert m.modalities["text"].columns == ["title", "description"]
    assert (m.modalities["image"].column, m.modalities["audio"].column) == ("image_path", "audio_path")
    assert (m.categorical, m.numeric) == (["brand"], ["price"])
    items = _read(demo / "items.csv")
    assert list(items.columns) == [
        "item_id", "title", "description", "image_path", "audio_path", "brand", "price"]
    assert items["price"].dtype == float and (items["price"] > 0).all()
    assert list(_read(demo / "interactions.csv").columns) == ["user_id", "item_id", "timestamp"]
    assert list(_read(demo / "users.csv").columns) == ["user_id", "region"]
    for col in ("image_path", "audio_path"):
        paths = [p for p in items[col] if p]
        assert paths and all((demo / p).is_file() for p in paths)
        assert not any(Path(p).is_absolute() for p in paths)


def test_deterministic(catalogs: dict[str, Path]) -> None:
    a, b, c = catalogs["a"], catalogs["b"], catalogs["c"]
    items = _read(a / "items.csv")
    img = next(p for p in items["image_path"] if p)
    wav = next(p for p in items["audio_path"] if p)
    for rel in ("items.csv", "interactions.csv", "users.csv", "latent/users.csv", img, wav):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for rel in ("items.csv", "interactions.csv"):
        assert (a / rel).read_bytes() != (c / rel).read_bytes(), rel
    if (c / img).exists():
        assert (a / img).read_bytes() != (c / img).read_bytes()


def test_media_decode_and_corruption(demo: Path, latent: pd.DataFrame) -> None:
    import tensorflow as tf

    items = _read(demo / "items.csv")
    bad = dict(zip(latent["corrupt"], latent["item_id"]))
    assert sorted(k for k in bad if k) == ["audio", "image"]
    assert (latent["corrupt"] != "").sum() == 2
    for iid, path in zip(items["item_id"], items["image_path"]):
        if not path:
            continue
        data = tf.io.read_file(str(demo / path))
        if iid == bad["image"]:
            assert (demo / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            with pytest.raises(tf.errors.InvalidArgumentError):
                tf.io.decode_png(data, channels=3)
        else:
            assert tuple(tf.io.decode_png(data).shape) == (32, 32, 3)
    formats: set[tuple[int, int]] = set()
    for iid, path in zip(items["item_id"], items["audio_path"]):
        if not path:
            continue
        with wave.open(str(demo / path)) as w:
            rate, ch, n = w.getframerate(), w.getnchannels(), w.getnframes()
            got = len(w.readframes(n)) // (2 * ch)
            assert w.getsampwidth() == 2
        formats.add((rate, ch))
        assert n == round(rate * SMALL["audio_seconds"])
        assert (got < n) == (iid == bad["audio"]), iid
    assert formats == {(16000, 1), (22050, 2), (8000, 1)}


def test_missing_modalities_and_text(demo: Path, latent: pd.DataFrame) -> None:
    items = _read(demo / "items.csv")
    no_img, no_aud = (items["image_path"] == "").mean(), (items["audio_path"] == "").mean()
    no_text = ((items["title"] == "") & (items["description"] == "")).mean()
    assert 0.02 <= no_img <= 0.16 and 0.02 <= no_aud <= 0.16 and 0.0 < no_text <= 0.08
    assert ((items["title"] == "") == (items["description"] == "")).all()  # text is all-or-nothing
    assert (latent["has_image"] == (items["image_path"] != "")).all()
    # text names the category for most items, but not all (noise)
    text = (items["title"] + " " + items["description"]).str.lower()
    named = [any(w in t for w in CATEGORIES[c]) for t, c in zip(text, latent["category"])]
    frac = np.mean(np.array(named)[items["title"] != ""])
    assert 0.7 <= frac <= 0.97


def test_interactions(demo: Path) -> None:
    x = _read(demo / "interactions.csv")
    assert set(x["item_id"]) <= set(_read(demo / "items.csv")["item_id"])
    assert set(x["user_id"]) == set(_read(demo / "users.csv")["user_id"])
    assert not x.duplicated(["user_id", "item_id"]).any()
    assert x.groupby("user_id", sort=False)["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    assert x["timestamp"].dtype == np.int64 and x["timestamp"].min() >= 1672531200
    assert abs(len(x) - SMALL["n_interactions"]) <= 0.1 * SMALL["n_interactions"]
    assert x.groupby("user_id").size().min() >= 5


def test_taste_signal(demo: Path, latent: pd.DataFrame) -> None:
    x = _read(demo / "interactions.csv")
    users = _read(demo / "latent" / "users.csv").set_index("user_id")
    fav = users[[f"cat_{k}" for k in range(8)]].to_numpy().argmax(1)
    fav_of = dict(zip(users.index, fav))
    cat_of = dict(zip(latent["item_id"], latent["category"]))
    hit = np.array([cat_of[i] == fav_of[u] for u, i in zip(x["user_id"], x["item_id"])])
    assert 0.2 < hit.mean() < 0.7  # chance is 1/8 (~0.3 here, ~0.375 at default size)


def test_image_colour_signal(demo: Path, latent: pd.DataFrame) -> None:
    import tensorflow as tf

    ok = latent[latent["has_image"] & (latent["corrupt"] != "image")]
    rgb = np.stack([tf.io.decode_png(tf.io.read_file(str(demo / "images" / f"{i}.png"))).numpy()
                    .reshape(-1, 3).mean(0) for i in ok["item_id"]])
    chroma = rgb - rgb.mean(1, keepdims=True)  # drop brightness; the background is grey
    colour = ok["colour"].to_numpy()
    train = np.arange(len(ok)) % 2 == 0
    cents = np.stack([chroma[train & (colour == k)].mean(0) for k in range(8)])
    pred = np.argmin(((chroma[~train, None, :] - cents[None]) ** 2).sum(-1), 1)
    assert (pred == colour[~train]).mean() > 0.5  # chance is 1/8


def test_audio_tempo_signal(demo: Path, latent: pd.DataFrame) -> None:
    """The pulse rate (peak of the amplitude envelope's spectrum) tracks the latent bpm."""
    ok = latent[latent["has_audio"] & (latent["corrupt"] != "audio")]
    est = []
    for iid in ok["item_id"]:
        with wave.open(str(demo / "audio" / f"{iid}.wav")) as w:
            rate, ch = w.getframerate(), w.getnchannels()
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, ch)[:, 0] / 32768.0
        hop = rate // 100
        env = np.abs(x[: 100 * hop]).reshape(100, hop).mean(1)  # 100 Hz envelope over 1 s
        spec = np.abs(np.fft.rfft(env - env.mean(), n=1000))
        freqs = np.fft.rfftfreq(1000, d=0.01)
        band = (freqs >= 1.5) & (freqs <= 7.0)
        est.append(freqs[band][spec[band].argmax()])
    assert np.corrcoef(est, 2 * ok["bpm"] / 60)[0, 1] > 0.8
