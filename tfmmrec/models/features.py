"""Static per-item inputs of the models, as one table indexed by model item index.

Index convention used by every model and export: item index 0 means "unknown item", and
dataset row r is index r + 1 (likewise users: 0 unknown, 1..U known). A ``StringLookup`` with
one OOV bucket maps raw ids to exactly these indices, so exported SavedModels take raw ids.

The table holds frozen content embeddings (z-scored per dimension, so 4096-d CNN features and
64-d text features enter the MLP on one scale), presence masks, categorical codes, numeric
fields, and each item's id-embedding slot: items never seen in training get slot 0, whose
embedding is forced to zero, so an unseen item is represented by its content alone instead of by
an untrained random vector.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras as keras

from tfmmrec.data.loader import Dataset
from tfmmrec.data.standardize import zscore
from tfmmrec.encoders.encode import ItemContent
from tfmmrec.fusion import randomness


@dataclass
class ItemFeatures:
    content: dict[str, np.ndarray]   # [n + 1, dim], row 0 zeros
    masks: dict[str, np.ndarray]     # [n + 1] float32, row 0 zero
    id_slot: np.ndarray              # [n + 1] int32, 0 = no trained id embedding
    categorical: np.ndarray          # [n + 1, fields] int32, 0 = unknown value
    cardinalities: list[int]         # per categorical field, including the unknown code 0
    numeric: np.ndarray              # [n + 1, numeric fields] float32, z-scored

    def with_full_id_vocabulary(self) -> ItemFeatures:
        """Every catalog item gets its own id row, trained or not, as in an ID-only TFRS model
        whose vocabulary is the whole catalog: an untrained row is a random vector, so such a
        model ranks unseen items at random, rather than all at one arbitrary score."""
        return dataclasses.replace(self, id_slot=np.arange(len(self.id_slot), dtype=np.int32))

    @property
    def num_id_slots(self) -> int:
        return int(self.id_slot.max()) + 1

    @property
    def modality_dims(self) -> dict[str, int]:
        return {m: int(v.shape[1]) for m, v in self.content.items()}


def categorical_vocabulary(values: pd.Series) -> list[str]:
    """A categorical field's known values, sorted: value ``vocab[i]`` has code ``i + 1``; "" and
    values unseen here have code 0 (unknown). The export's raw-content path uses the same codes."""
    return sorted(set(values.astype(str)) - {""})


def build_item_features(dataset: Dataset, content: ItemContent | None, train_rows: np.ndarray) -> ItemFeatures:
    """Assemble the item table; ``train_rows`` are dataset rows with training interactions."""
    n = dataset.num_items
    pad = lambda a: np.concatenate([np.zeros((1, *a.shape[1:]), a.dtype), a])  # noqa: E731
    contents, masks = {}, {}
    for m, embeddings in (content.embeddings if content else {}).items():
        present = content.masks[m].astype(bool)  # type: ignore[union-attr]
        contents[m] = pad(zscore(embeddings.astype(np.float32), present))
        masks[m] = pad(present.astype(np.float32))
    id_slot = np.zeros(n + 1, np.int32)
    seen = np.unique(train_rows)
    id_slot[seen + 1] = np.arange(1, len(seen) + 1, dtype=np.int32)
    codes, cards = [], []
    for column in dataset.manifest.categorical:
        values = dataset.items[column].astype(str)
        vocab = pd.Index(categorical_vocabulary(values))
        codes.append(vocab.get_indexer(values) + 1)  # "" and unknown -> 0
        cards.append(len(vocab) + 1)
    categorical = pad(np.stack(codes, axis=1).astype(np.int32)) if codes else np.zeros((n + 1, 0), np.int32)
    if dataset.manifest.numeric:
        raw = dataset.items[dataset.manifest.numeric].to_numpy(np.float32)
        numeric = pad(zscore(raw, np.isfinite(raw).all(axis=1)))
    else:
        numeric = np.zeros((n + 1, 0), np.float32)
    return ItemFeatures(contents, masks, id_slot, categorical, cards, numeric)


def id_keep_mask(id_slot: tf.Tensor, id_dropout: float, training: bool | None) -> tf.Tensor:
    """Float ``[batch, 1]``: 1 where an item's id embedding is used, 0 where it is not.

    Slot 0 (no trained id) is always off. In training, ``id_dropout`` turns off a random share
    more, so that the content path learns to carry an item alone, as it must for cold items.
    """
    keep = tf.cast(id_slot > 0, tf.float32)[:, None]
    if training and id_dropout > 0:
        keep *= tf.cast(randomness.uniform(tf.shape(keep)) >= id_dropout, tf.float32)
    return keep


@keras.utils.register_keras_serializable(package="tfmmrec")
class ItemFeatureTable(keras.layers.Layer):
    """Gathers an item's static features by model item index (non-trainable weights).

    The config holds only shapes; the values travel as weights, so a saved model carries them.
    """

    def __init__(self, modality_dims: dict[str, int], num_rows: int, num_categorical: int = 0,
                 num_numeric: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.modality_dims = dict(modality_dims)
        self.num_rows, self.num_categorical, self.num_numeric = num_rows, num_categorical, num_numeric
        zeros = keras.initializers.Zeros()
        self.content = {m: self.add_weight(name=f"content_{m}", shape=(num_rows, d), initializer=zeros,
                                           trainable=False) for m, d in sorted(self.modality_dims.items())}
        self.masks = {m: self.add_weight(name=f"mask_{m}", shape=(num_rows,), initializer=zeros, trainable=False)
                      for m in sorted(self.modality_dims)}
        self.id_slot = self.add_weight(name="id_slot", shape=(num_rows,), dtype=tf.int32, initializer=zeros,
                                       trainable=False)
        self.categorical = self.add_weight(name="categorical", shape=(num_rows, num_categorical), dtype=tf.int32,
                                           initializer=zeros, trainable=False)
        self.numeric = self.add_weight(name="numeric", shape=(num_rows, num_numeric), initializer=zeros,
                                       trainable=False)

    @classmethod
    def from_features(cls, features: ItemFeatures, **kwargs: Any) -> ItemFeatureTable:
        table = cls(features.modality_dims, len(features.id_slot), features.categorical.shape[1],
                    features.numeric.shape[1], **kwargs)
        for m in table.content:
            table.content[m].assign(features.content[m])
            table.masks[m].assign(features.masks[m])
        table.id_slot.assign(features.id_slot)
        table.categorical.assign(features.categorical)
        table.numeric.assign(features.numeric)
        return table

    def call(self, item: tf.Tensor) -> dict[str, Any]:
        item = tf.cast(item, tf.int32)
        return {
            "content": {m: tf.gather(v, item) for m, v in self.content.items()},
            "masks": {m: tf.gather(v, item) for m, v in self.masks.items()},
            "id_slot": tf.gather(self.id_slot, item),
            "categorical": tf.gather(self.categorical, item),
            "numeric": tf.gather(self.numeric, item),
        }

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "modality_dims": self.modality_dims, "num_rows": self.num_rows,
                "num_categorical": self.num_categorical, "num_numeric": self.num_numeric}


@dataclass
class UserFeatures:
    """The users table as model inputs per user index (row 0: unknown user): categorical columns
    as codes, numeric columns (``Manifest.user_numeric``) z-scored."""

    codes: np.ndarray              # [num_users + 1, fields] int32, 0 = unknown value
    cardinalities: list[int]       # per field, including the unknown code 0
    names: list[str]
    numeric: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((1, 0), np.float32))
    numeric_names: list[str] = dataclasses.field(default_factory=list)  # [num_users + 1, n] z-scored, 0 = unknown


def build_user_features(users: pd.DataFrame | None, user_ids: np.ndarray,
                        max_cardinality: int = 10_000, numeric_columns: tuple[str, ...] | list[str] = ()
                        ) -> UserFeatures:
    """Codes for every column of ``users`` except ``user_id`` that is categorical: text, bool, or
    integer with at most ``max_cardinality`` values (an integer column with more is an identifier
    or a quantity, and is left out), and z-scored values of ``numeric_columns``. A text column with
    more distinct values than half the users (and over 10), e.g. a full zip code, is nearly a user
    id, not a feature users share, and is left out too. ``user_ids[i]`` is user index i + 1."""
    n = len(user_ids) + 1
    if users is None:
        return UserFeatures(np.zeros((n, 0), np.int32), [], [], np.zeros((n, 0), np.float32), [])
    table = users.drop_duplicates("user_id").set_index("user_id")
    position = table.index.get_indexer(pd.Index(user_ids))  # -1: user not in the users table
    codes, cards, names = [], [], []
    for column in table.columns:
        if column in numeric_columns:
            continue
        values = table[column]
        numeric = pd.api.types.is_float_dtype(values) or (
            pd.api.types.is_integer_dtype(values) and values.nunique() > max_cardinality)
        if numeric or values.nunique() > max(10, len(table) // 2):
            continue
        text = values.astype("string").fillna("").to_numpy(dtype=object)
        vocab = pd.Index(sorted(set(text) - {""}))
        per_row = vocab.get_indexer(text) + 1  # "" and missing -> 0
        codes.append(np.concatenate([[0], np.where(position >= 0, per_row[position], 0)]))
        cards.append(len(vocab) + 1)
        names.append(str(column))
    numeric_values = np.zeros((n, len(numeric_columns)), np.float32)
    if len(numeric_columns):
        raw = table[list(numeric_columns)].to_numpy(np.float64)[np.maximum(position, 0)]
        raw[position < 0] = np.nan
        numeric_values[1:] = zscore(raw.astype(np.float32), np.isfinite(raw).all(axis=1))
    code_array = np.stack(codes, axis=1).astype(np.int32) if codes else np.zeros((n, 0), np.int32)
    return UserFeatures(code_array, cards, names, numeric_values, list(numeric_columns))
