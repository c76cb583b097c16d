"""Training the warm/cold model in stages, each selected on the validation split."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tf_keras as keras

from tfmmrec.config import RunConfig
from tfmmrec.models.coldstart import WarmColdItemTower
from tfmmrec.pipeline import prepare_data, retrieval_model
from tfmmrec.train.coldstart import KeepBestEpoch, train_any_retrieval, train_warm_cold, valid_recall
from tfmmrec.train.fit import embed_all

TINY = ["retrieval.embedding_dim=16", "retrieval.fusion_hidden=[32]", "retrieval.batch_size=256",
        "retrieval.learning_rate=0.01", "retrieval.epochs=4", "retrieval.selection_patience=2",
        "split.strategy=cold_start", "split.cold_item_frac=0.2"]


class _Scripted(keras.callbacks.Callback):
    """Sets the model's one weight to the epoch number, so the restored value names the epoch."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.model.trainable_variables[0].assign(np.full((1, 1), float(epoch + 1), np.float32))


def test_keep_best_epoch_stops_after_patience_and_restores_the_best_epoch() -> None:
    model = keras.Sequential([keras.layers.Dense(1, use_bias=False, input_shape=(1,))])
    model.compile("sgd", "mse")
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.5, 0.6])
    keep = KeepBestEpoch(lambda: next(scores), patience=2)
    history = model.fit(np.ones((4, 1)), np.ones((4, 1)), epochs=6, verbose=0, callbacks=[_Scripted(), keep])
    assert keep.curve == [0.1, 0.3, 0.2, 0.25] and keep.best_epoch == 2  # stopped: 2 epochs without a better one
    assert len(history.history["loss"]) == 4 and history.history["val_score"] == keep.curve
    assert float(model.trainable_variables[0].numpy()[0, 0]) == 2.0  # epoch 2's weights are back


@pytest.fixture(scope="module")
def prepared(demo_dir: Path):
    cfg = RunConfig().with_overrides(TINY)
    return prepare_data(demo_dir, cfg), cfg


def test_stages_are_selected_on_validation_and_cold_items_get_content(prepared) -> None:
    prep, cfg = prepared
    model = retrieval_model(prep, cfg, use_content=True)
    assert isinstance(model.item_tower, WarmColdItemTower)
    selected = train_warm_cold(model, prep.data, cfg.retrieval, verbose=0)
    assert 1 <= selected["warm_epochs"] <= 4 and 1 <= selected["content_epochs"] <= 4
    assert selected["blend_c"] in cfg.retrieval.warm_blend_c
    assert any(selected["cold_scale"] == pytest.approx(s) for s in cfg.retrieval.cold_scale)
    assert len(selected["valid_recall@20"]["blend"]) == len(cfg.retrieval.warm_blend_c) * len(cfg.retrieval.cold_scale)
    # Content learned something about cold items: ranked among all items by the content tower alone,
    # validation cold items come out far better than with an untrained content tower.
    untrained = retrieval_model(prep, cfg, use_content=True)

    def content_only_cold_recall(m) -> float:
        users = embed_all(model, prep.data)[0]  # one query tower for both: the content towers differ
        items = m.item_tower.content_tower(np.arange(1, prep.data.num_items + 1)).numpy()
        return valid_recall(users, items, prep.data, "cold")
    assert content_only_cold_recall(model) > 1.5 * content_only_cold_recall(untrained)


def test_without_validation_rows_every_stage_trains_all_epochs_with_a_warning(prepared) -> None:
    prep, cfg = prepared
    empty = dataclasses.replace(prep.data.valid, user=prep.data.valid.user[:0], item=prep.data.valid.item[:0])
    data = dataclasses.replace(prep.data, valid=empty)
    cfg2 = RunConfig().with_overrides([*TINY, "retrieval.epochs=2"])
    model = retrieval_model(dataclasses.replace(prep, data=data), cfg2, use_content=True)
    with pytest.warns(UserWarning, match="no validation interactions"):
        selected = train_any_retrieval(model, data, cfg2.retrieval, verbose=0)
    assert selected["blend_c"] == cfg2.retrieval.warm_blend_c[0] and "warm_epochs" not in selected
