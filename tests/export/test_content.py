"""The content path of an export (``export.content``), in process and unsaved: raw text, image and
audio bytes, brand and price of an item become the same embedding the trained item tower gives
that item, with the statistics and vocabularies the training table was built with.

(The same path through a saved export, answered by a TF-only process: tests/export/test_contract.py;
refusals of the saved signature: tests/export/test_content_limits.py, tests/reliability/test_requests.py.)
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmmrec.config import LimitsConfig
from tfmmrec.export.build import raw_content_inputs
from tfmmrec.export.content import ContentEncoder, ContentSpec


@pytest.fixture(scope="module")
def spec(trained_run) -> ContentSpec:
    return ContentSpec.from_catalog(trained_run.dataset, trained_run.content)


@pytest.fixture(scope="module")
def served(trained_run, spec: ContentSpec) -> ContentEncoder:
    """The multimodal model's content path, as its export builds it: the warm/cold tower's content
    tower, whose outputs (new items, like cold ones) are scaled by the tower's cold-score factor."""
    tower = trained_run.models["multimodal"].item_tower
    return ContentEncoder(tower.content_tower, spec, output_scale=float(tower.cold_scale.numpy()))


@pytest.fixture(scope="module")
def cold_rows(trained_run) -> np.ndarray:
    """Items never seen in training whose files all decode (some lack a modality)."""
    ds = trained_run.dataset
    corrupt = pd.read_csv(ds.root / "latent" / "items.csv", keep_default_na=False)["corrupt"].ne("").to_numpy()
    cold = np.setdiff1d(np.arange(ds.num_items), trained_run.data.train_item_rows)
    return cold[~corrupt[cold]][:24]


def embed(encoder: ContentEncoder, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return encoder.embed(*[tf.constant(inputs[n]) for n in encoder.input_names])["embedding"].numpy()


def test_the_statistics_are_the_ones_the_training_table_was_built_with(trained_run, spec: ContentSpec) -> None:
    ds, content = trained_run.dataset, trained_run.content
    table = trained_run.models["multimodal"].item_tower.content_tower.table  # row r + 1 = item row r
    assert spec.raw == {m: (ds.manifest.modalities[m].kind, content.encoders[m]) for m in ("text", "image", "audio")}
    for m, (mean, std) in spec.zstats.items():
        present = content.masks[m].astype(bool)
        np.testing.assert_allclose(table.content[m].numpy()[1:][present], (content.embeddings[m][present] - mean) / std,
                                   rtol=1e-4, atol=1e-4)
    brands = ds.items["brand"].tolist()
    vocab = spec.categorical["brand"]
    assert vocab == sorted(vocab) and len(vocab) > 1
    assert table.categorical.numpy()[1:, 0].tolist() == [vocab.index(b) + 1 if b else 0 for b in brands]
    prices = ds.items["price"].to_numpy(np.float32)
    known = np.isfinite(prices)
    np.testing.assert_allclose(table.numeric.numpy()[1:, 0][known],
                               (prices[known] - spec.numeric_mean[0]) / spec.numeric_std[0], rtol=1e-4, atol=1e-4)


def test_raw_content_of_a_new_item_gives_the_item_towers_embedding(trained_run, served: ContentEncoder,
                                                                   cold_rows: np.ndarray) -> None:
    ds = trained_run.dataset
    inputs = raw_content_inputs(ds, cold_rows, served.input_names)
    assert served.input_names == ["audio", "image", "text", "brand", "price"]
    missing = {m: int(sum(len(v) == 0 for v in inputs[m])) for m in ("audio", "image", "text")}
    assert sum(missing.values()) > 0, missing  # the comparison covers masked modalities too
    got = embed(served, inputs)
    want = trained_run.models["multimodal"].item_tower(cold_rows + 1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)  # float32 batch arithmetic on unit-norm vectors
    assert not np.allclose(got[0], got[1], atol=1e-2)  # different items, different vectors


def test_an_unknown_brand_is_no_brand_and_a_missing_price_is_the_mean_price(trained_run, served: ContentEncoder,
                                                                           spec: ContentSpec,
                                                                           cold_rows: np.ndarray) -> None:
    item = raw_content_inputs(trained_run.dataset, cold_rows[:1], served.input_names)
    with_fields = lambda **fields: embed(served, {**item, **fields})[0]  # noqa: E731
    no_brand = with_fields(brand=np.array([b""], object))
    np.testing.assert_allclose(with_fields(brand=np.array([b"a brand never seen"], object)), no_brand, atol=1e-6)
    assert not np.allclose(with_fields(brand=np.array([spec.categorical["brand"][0].encode()], object)), no_brand,
                           atol=1e-4)
    mean_price = with_fields(price=spec.numeric_mean.astype(np.float32))
    np.testing.assert_allclose(with_fields(price=np.array([np.nan], np.float32)), mean_price, atol=1e-6)
    far = spec.numeric_mean + 3 * spec.numeric_std
    assert not np.allclose(with_fields(price=far.astype(np.float32)), mean_price, atol=1e-4)


def test_the_limits_are_the_encoders_own_and_text_is_counted_in_characters(trained_run, spec: ContentSpec,
                                                                          cold_rows: np.ndarray) -> None:
    tower = trained_run.models["multimodal"].item_tower.content_tower
    strict = ContentEncoder(tower, spec, limits=LimitsConfig(max_text_chars=12))
    item = raw_content_inputs(trained_run.dataset, cold_rows[:1], strict.input_names)
    twelve = np.array(["é" * 12], object)  # 12 characters, 24 bytes
    assert np.isfinite(embed(strict, {**item, "text": twelve})).all()
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"text: text over limits\.max_text_chars \(12 characters\); longest:\] \[13\]"):
        embed(strict, {**item, "text": np.array(["é" * 12, "x" * 13], object),
                       **{n: np.repeat(item[n], 2) for n in strict.input_names if n != "text"}})


def test_a_model_without_raw_modalities_has_no_content_path(trained_run, spec: ContentSpec) -> None:
    tower = trained_run.models["multimodal"].item_tower.content_tower
    with pytest.raises(ValueError, match="no text/image/audio modality"):
        ContentEncoder(tower, dataclasses.replace(spec, raw={}))
