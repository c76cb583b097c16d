"""The models' static inputs, by model index (0 = unknown, dataset row r = index r + 1): the item
table ``build_item_features`` assembles from a catalog, the layer that gathers it, the id-slot mask,
and the users table as codes and z-scored numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmmrec.data.loader import Dataset, load_dataset
from tfmmrec.data.manifest import Manifest
from tfmmrec.encoders.encode import ItemContent
from tfmmrec.models.features import (
    ItemFeatures,
    ItemFeatureTable,
    build_item_features,
    build_user_features,
    id_keep_mask,
)

# Item c has no brand; item d has no price (NaN); item c has no text embedding.
ITEMS = pd.DataFrame({"item_id": list("abcdef"), "brand": ["acme", "bolt", "", "acme", "zeta", "bolt"],
                      "price": [10.0, 20.0, 30.0, np.nan, 40.0, 50.0]})
TEXT_PRESENT = np.array([1, 1, 0, 1, 1, 1], bool)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Six items with a categorical brand and a numeric price (read-only)."""
    root = tmp_path_factory.mktemp("shop")
    ITEMS.to_csv(root / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "e", "b"]}).to_csv(root / "interactions.csv",
                                                                                      index=False)
    Manifest(items="items.csv", interactions="interactions.csv", name="shop", categorical=["brand"],
             numeric=["price"]).save(root)
    return load_dataset(root)


@pytest.fixture(scope="module")
def text() -> ItemContent:
    """4-d "text embeddings" on very different scales per dimension; item c's row is garbage (absent)."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal((6, 4)) * [1.0, 10.0, 100.0, 0.1] + [0.0, 5.0, -50.0, 1.0]
    values[2] = 1e6
    return ItemContent({"text": values.astype(np.float32)}, {"text": TEXT_PRESENT.copy()}, encoders={"text": "t"})


@pytest.fixture(scope="module")
def features(shop: Dataset, text: ItemContent) -> ItemFeatures:
    return build_item_features(shop, text, train_rows=np.array([4, 0, 4, 1]))  # items e, a, e, b were trained on


def test_row_0_is_the_unknown_item_and_dataset_row_r_is_index_r_plus_1(features: ItemFeatures) -> None:
    assert features.content["text"].shape == (7, 4) and features.content["text"].dtype == np.float32
    assert features.masks["text"].tolist() == [0, 1, 1, 0, 1, 1, 1]  # row 0, then the items' presence
    assert features.categorical.shape == (7, 1) and features.categorical.dtype == np.int32
    assert features.numeric.shape == (7, 1) and features.numeric.dtype == np.float32
    assert features.id_slot.dtype == np.int32 and features.modality_dims == {"text": 4}
    for table in (features.content["text"], features.categorical, features.numeric):
        assert not table[0].any()


def test_content_is_z_scored_per_dimension_over_the_items_that_have_it(text: ItemContent,
                                                                        features: ItemFeatures) -> None:
    raw = text.embeddings["text"][TEXT_PRESENT]
    expected = (raw - raw.mean(0)) / (raw.std(0) + 1e-6)
    got = features.content["text"][1:]
    np.testing.assert_allclose(got[TEXT_PRESENT], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[TEXT_PRESENT].mean(0), 0.0, atol=1e-5)  # one scale for every dimension
    np.testing.assert_allclose(got[TEXT_PRESENT].std(0), 1.0, rtol=1e-4)
    assert not got[~TEXT_PRESENT].any()  # the absent item's garbage is zeroed, and left out of the statistics


def test_only_items_seen_in_training_get_an_id_slot(features: ItemFeatures) -> None:
    # Trained rows 0, 1, 4 (items a, b, e) get slots 1..3 in row order; the others share slot 0 (no id).
    assert features.id_slot.tolist() == [0, 1, 2, 0, 0, 3, 0]
    assert features.num_id_slots == 4
    full = features.with_full_id_vocabulary()
    assert full.id_slot.tolist() == list(range(7)) and full.num_id_slots == 7
    assert features.id_slot.tolist() == [0, 1, 2, 0, 0, 3, 0]  # a copy: the original is unchanged


def test_categorical_codes_follow_a_sorted_vocabulary_with_0_for_no_value(features: ItemFeatures) -> None:
    # vocabulary acme, bolt, zeta -> 1, 2, 3; item c has no brand -> 0; row 0 (unknown item) -> 0
    assert features.categorical[:, 0].tolist() == [0, 1, 2, 0, 1, 3, 2]
    assert features.cardinalities == [4]  # three brands plus the unknown code


def test_numeric_fields_are_z_scored_and_a_missing_value_is_the_mean(features: ItemFeatures) -> None:
    prices = np.array([10.0, 20.0, 30.0, 40.0, 50.0])  # item d's NaN is left out of the statistics
    expected = (prices - prices.mean()) / (prices.std() + 1e-6)
    np.testing.assert_allclose(features.numeric[[1, 2, 3, 5, 6], 0], expected, rtol=1e-5)
    assert features.numeric[4, 0] == 0.0  # item d: z-score 0, the mean price


def test_a_catalog_without_content_or_fields_has_empty_tables(tmp_path: Path) -> None:
    ITEMS[["item_id"]].to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u1"], "item_id": ["a"]}).to_csv(tmp_path / "interactions.csv", index=False)
    Manifest(items="items.csv", interactions="interactions.csv").save(tmp_path)
    bare = build_item_features(load_dataset(tmp_path), None, train_rows=np.array([0]))
    assert bare.content == {} and bare.masks == {} and bare.cardinalities == []
    assert bare.categorical.shape == (7, 0) and bare.numeric.shape == (7, 0)
    assert bare.id_slot.tolist() == [0, 1, 0, 0, 0, 0, 0]


def test_the_feature_table_gathers_rows_by_model_index_and_carries_them_as_weights(features: ItemFeatures) -> None:
    table = ItemFeatureTable.from_features(features)
    got = table(tf.constant([0, 3, 5]))  # unknown item, item c, item e
    np.testing.assert_array_equal(got["content"]["text"].numpy(), features.content["text"][[0, 3, 5]])
    np.testing.assert_array_equal(got["masks"]["text"].numpy(), [0, 0, 1])
    assert got["id_slot"].dtype == tf.int32 and got["id_slot"].numpy().tolist() == [0, 0, 3]
    assert got["categorical"].numpy().tolist() == [[0], [0], [3]]
    np.testing.assert_array_equal(got["numeric"].numpy(), features.numeric[[0, 3, 5]])
    assert all(not w.trainable for w in table.weights)

    # The config holds only shapes: a layer from it is zeros until it is given the weights.
    clone = ItemFeatureTable.from_config(table.get_config())
    assert not clone(tf.constant([5]))["content"]["text"].numpy().any()
    clone.set_weights(table.get_weights())
    np.testing.assert_array_equal(clone(tf.constant([5]))["content"]["text"].numpy(), features.content["text"][[5]])


def test_id_keep_mask_never_uses_slot_0_and_drops_ids_only_in_training() -> None:
    slots = tf.constant([0, 1, 2, 0, 3] * 200)
    known = (slots.numpy() > 0)[:, None]
    np.testing.assert_array_equal(id_keep_mask(slots, 0.5, training=False).numpy(), known.astype(np.float32))
    tf.random.set_seed(0)
    kept = id_keep_mask(slots, 0.5, training=True).numpy()
    assert not kept[~known].any()
    assert 0.4 < kept[known].mean() < 0.6


def test_user_fields_shared_by_users_become_codes_and_numeric_columns_are_z_scored() -> None:
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(12)],
                          "plan": ["free", "pro"] * 6,                     # text: a category
                          "zip": [f"{10000 + i}" for i in range(12)],      # one value per user: nearly an id
                          "visits": list(range(100, 112)),                 # integer: a category (few values) ...
                          "age": [20.0 + 2 * i for i in range(12)]})       # ... unless listed as numeric
    ids = np.array(["u3", "u0", "nobody"])  # user indices 1, 2, 3; "nobody" has no row in the users table
    uf = build_user_features(users, ids, max_cardinality=5, numeric_columns=["age"])
    assert uf.names == ["plan"]  # zip is left out (nearly an id), visits too (12 values > max_cardinality 5)
    assert uf.codes[:, 0].tolist() == [0, 2, 1, 0] and uf.cardinalities == [3]  # free 1, pro 2; unknown 0
    assert uf.numeric_names == ["age"] and uf.numeric.shape == (4, 1)
    ages = np.array([26.0, 20.0])  # the statistics of the users asked for (u3, u0), not of the whole table
    np.testing.assert_allclose(uf.numeric[1:3, 0], (ages - ages.mean()) / (ages.std() + 1e-6), rtol=1e-5)
    assert uf.numeric[0, 0] == 0.0 and uf.numeric[3, 0] == 0.0  # unknown user and "nobody": the mean
