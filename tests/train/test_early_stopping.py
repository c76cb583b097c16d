"""Model selection on the validation split: the best epoch is restored, recorded, and survives a resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tf_keras as keras

from tfmmrec.config import ConfigError, RankingConfig, RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions, SplitArrays
from tfmmrec.models.build import build_ranking, build_retrieval
from tfmmrec.models.features import ItemFeatures
from tfmmrec.train.early_stopping import ValidationEarlyStopping, catalog_monitor, describe_selection
from tfmmrec.train.eval_inputs import retrieval_eval_dataset
from tfmmrec.train.fit import train_ranking, train_retrieval

NUM_ITEMS, NUM_USERS = 40, 30
# One temperature (no candidates): most tests here are about the epoch.
CFG = RetrievalConfig(embedding_dim=8, fusion_hidden=[16], batch_size=64, learning_rate=0.05, epochs=12,
                      patience=2, validation_metric="recall@5", temperature_candidates=[])


def _features() -> ItemFeatures:
    rng = np.random.default_rng(0)
    cluster = np.arange(NUM_ITEMS) % 4
    text = np.vstack([np.zeros((1, 6)), rng.standard_normal((4, 6))[cluster] + 0.1 * rng.standard_normal((40, 6))])
    id_slot = np.r_[0, np.arange(1, NUM_ITEMS + 1)].astype(np.int32)
    return ItemFeatures({"text": text.astype(np.float32)}, {"text": np.r_[0.0, np.ones(NUM_ITEMS)].astype(np.float32)},
                        id_slot, np.zeros((NUM_ITEMS + 1, 0), np.int32), [], np.zeros((NUM_ITEMS + 1, 0), np.float32))


def _data(valid: bool = True) -> EncodedInteractions:
    """Each user trains on one cluster's items; validation asks for the *next* cluster's items,
    which training pushes away: validation peaks before training ends, so stopping must restore."""
    users, items, v_users, v_items = [], [], [], []
    for u in range(1, NUM_USERS + 1):
        liked = [i for i in range(1, NUM_ITEMS + 1) if (i - 1) % 4 == u % 4]
        users += [u] * len(liked)
        items += liked
        v_users += [u] * 3
        v_items += [i for i in range(1, NUM_ITEMS + 1) if (i - 1) % 4 == (u + 1) % 4][:3]
    users, items = np.array(users, np.int32), np.array(items, np.int32)
    prob = (np.bincount(items, minlength=NUM_ITEMS + 1) / len(items)).astype(np.float32)
    prob[prob == 0] = 1 / len(items)
    empty = SplitArrays(np.zeros(0, np.int32), np.zeros(0, np.int32), None)
    valid_split = SplitArrays(np.array(v_users, np.int32), np.array(v_items, np.int32), None) if valid else empty
    return EncodedInteractions(np.array([f"u{u}" for u in range(NUM_USERS)]), NUM_ITEMS,
                               SplitArrays(users, items, None), valid_split, empty, prob)


def test_retrieval_restores_the_best_validation_epoch() -> None:
    # Seeded here: initial weights drawn from whatever global state earlier tests left (op counters)
    # once gave a curve whose last epoch tied the best one.
    keras.utils.set_random_seed(0)
    data = _data()
    model = build_retrieval(_features(), NUM_USERS, CFG, data=data)
    history = train_retrieval(model, data, CFG, verbose=0)
    selection = history.selection
    curve = [c["objective"] for c in selection["val_curve"]]
    best = int(np.argmax(curve))
    assert selection["stopped_early"] and selection["epochs_run"] < CFG.epochs  # epochs is a maximum
    assert selection["epochs_run"] == best + 1 + CFG.patience
    assert selection["best_epoch"] == best + 1 and curve[best] > curve[-1]
    assert history.history["val_recall_at_5"] == pytest.approx(curve)  # Keras's History saw the same values
    restored = model.evaluate(retrieval_eval_dataset(data, "valid"), return_dict=True, verbose=0)
    assert restored["recall_at_5"] == pytest.approx(curve[best], abs=1e-6)


def test_no_validation_rows_warn_and_keep_the_last_epoch() -> None:
    data = _data(valid=False)
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 3})
    model = build_retrieval(_features(), NUM_USERS, cfg, data=data)
    with pytest.warns(UserWarning, match="no validation interactions.*training all 3 epochs and keeping the last"):
        history = train_retrieval(model, data, cfg, verbose=0)
    assert history.selection["epochs_run"] == 3 and history.selection["best_epoch"] is None
    ranker = build_ranking(_features(), NUM_USERS, RankingConfig(epochs=2, batch_size=64))
    with pytest.warns(UserWarning, match="ranking: the split has no validation"):
        assert len(train_ranking(ranker, data, RankingConfig(epochs=2, batch_size=64), mode="implicit",
                                 verbose=0).epoch) == 2


def test_objective_mean_of_warm_and_cold_skips_a_group_without_users() -> None:
    stop = ValidationEarlyStopping(catalog_monitor("recall@20"), "max", 1, objective="mean")
    logs = {"val_recall_at_20_warm": 0.4, "val_recall_at_20_cold": 0.1, "val_users_warm": 5, "val_users_cold": 3}
    assert stop.objective_value(logs) == pytest.approx(0.25)
    assert stop.objective_value({**logs, "val_users_cold": 0}) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="NAME@K"):
        catalog_monitor("recall")


class _Scripted(keras.callbacks.Callback):
    """Feeds a scripted validation value into the logs, as evaluate would."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        assert logs is not None
        logs["val_auc"] = self.values[epoch]


def _fit(model: keras.Model, values: list[float], stop: ValidationEarlyStopping, initial_epoch: int, epochs: int
         ) -> None:
    x = np.arange(8, dtype=np.float32)[:, None]
    model.fit(x, x, epochs=epochs, initial_epoch=initial_epoch, verbose=0, callbacks=[_Scripted(values), stop])


def test_a_resumed_run_keeps_the_best_so_far_and_the_patience_counter(tmp_path: Path) -> None:
    """Epochs 1-3 run, then the process 'dies'; a new callback on the same state_dir resumes at
    epoch 4 with best = epoch 2 and one epoch of patience used, stops at epoch 4 and restores
    epoch 2's weights, which were saved before the kill."""
    values = [0.6, 0.8, 0.7, 0.75, 0.9]
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(1,))])
    model.compile("sgd", "mse")
    first = ValidationEarlyStopping("val_auc", "max", patience=2, state_dir=tmp_path)
    _fit(model, values, first, 0, 3)
    epoch2 = first.best_weights
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["best_epoch"] == 1 and state["records"][-1]["wait"] == 1
    model.set_weights([w * 0 + 5 for w in model.get_weights()])  # what training after the kill would change
    second = ValidationEarlyStopping("val_auc", "max", patience=2, state_dir=tmp_path)
    _fit(model, values, second, 3, 5)
    summary = second.summary()
    assert summary["stopped_early"] and summary["epochs_run"] == 4 and summary["best_epoch"] == 2
    assert [c["objective"] for c in summary["val_curve"]] == values[:4]
    for got, want in zip(model.get_weights(), epoch2):
        np.testing.assert_allclose(got, want)


def test_the_multitask_model_is_selected_on_validation_too() -> None:
    from tfmmrec.config import MultitaskConfig
    from tfmmrec.models.build import build_multitask

    data = _data()
    model = build_multitask(_features(), NUM_USERS, CFG, MultitaskConfig(enabled=True, category_weight=0.0),
                            data=data)
    selection = train_retrieval(model, data, CFG, verbose=0).selection
    assert selection["monitor"] == "val_recall_at_5" and selection["stopped_early"]
    best = max(c["objective"] for c in selection["val_curve"])
    restored = model.evaluate(retrieval_eval_dataset(data, "valid"), return_dict=True, verbose=0)
    assert restored["recall_at_5"] == pytest.approx(best, abs=1e-6)


def test_weight_decay_shrinks_weights_the_loss_never_moves() -> None:
    """``retrieval.weight_decay`` trains with AdamW: the unknown item's id row (index 0, never in a
    batch, so Adam leaves it exactly as initialised) shrinks by ``1 - lr * weight_decay`` per step.
    (No validation rows: every epoch is trained and the last kept, so the row is the last step's.)"""
    data = _data(valid=False)
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 2, "weight_decay": 0.5, "learning_rate": 0.01})
    model = build_retrieval(_features(), NUM_USERS, cfg, use_content=False)
    model.item_tower(np.array([0]))
    before = model.item_tower.id_embedding.embeddings.numpy()[0]
    with pytest.warns(UserWarning, match="no validation interactions"):
        train_retrieval(model, data, cfg, verbose=0)
    steps = int(model.optimizer.iterations.numpy())
    assert type(model.optimizer).__name__ == "AdamW" and steps > 0
    np.testing.assert_allclose(model.item_tower.id_embedding.embeddings.numpy()[0],
                               before * (1 - 0.01 * 0.5) ** steps, rtol=1e-4)


def test_temperature_candidates_keep_the_run_with_the_best_validation(tmp_path: Path) -> None:
    """``temperature_candidates``: one training per temperature from the same initial weights; the
    model keeps the best one's weights and temperature, which are those of that run alone; a rerun
    on the same backups restores every candidate and chooses the same without training again."""
    keras.utils.set_random_seed(0)
    data = _data()
    cfg = RetrievalConfig(**{**CFG.__dict__, "temperature": 1.0, "temperature_candidates": [0.1, 1.0, 0.02]})
    model = build_retrieval(_features(), NUM_USERS, cfg, data=data)
    model.query_tower(np.array([0]))
    model.item_tower(np.array([0]))
    initial = model.get_weights()
    history = train_retrieval(model, data, cfg, verbose=0, backup_dir=tmp_path)
    chosen = history.selection["temperature"]
    assert list(chosen["valid_best"]) == ["1", "0.1", "0.02"]  # cfg.temperature first, no value twice
    assert chosen["valid_best"][f"{chosen['chosen']:g}"] == max(chosen["valid_best"].values()) == \
        history.selection["best"]
    assert len(set(chosen["valid_best"].values())) > 1 and model.task.temperature == chosen["chosen"]
    said = describe_selection("m", history.selection)[-1]
    assert f"temperature {chosen['chosen']:g} chosen on validation (1: " in said

    alone = build_retrieval(_features(), NUM_USERS, cfg, data=data)
    alone.query_tower(np.array([0]))
    alone.item_tower(np.array([0]))
    alone.set_weights(initial)
    alone.task.temperature = chosen["chosen"]
    train_retrieval(alone, data, RetrievalConfig(**{**cfg.__dict__, "temperature": chosen["chosen"],
                                                    "temperature_candidates": []}), verbose=0)
    for got, want in zip(model.get_weights(), alone.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    rerun = build_retrieval(_features(), NUM_USERS, cfg, data=data)
    again = train_retrieval(rerun, data, cfg, verbose=0, backup_dir=tmp_path)
    assert again.selection["temperature"] == chosen and len(again.epoch) == 0  # restored, not retrained
    for got, want in zip(rerun.get_weights(), model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ConfigError, match=r"retrieval\.temperature_candidates"):
        train_retrieval(rerun, data, RetrievalConfig(**{**cfg.__dict__, "temperature_candidates": [0.0]}))


def test_the_multitask_model_selects_its_temperature_too() -> None:
    """Its heads (here the ranking head) are built before the initial weights are snapshot, so every
    candidate starts from them and the kept one, heads included, is the best on validation."""
    from tfmmrec.config import MultitaskConfig
    from tfmmrec.models.build import build_multitask

    keras.utils.set_random_seed(0)
    data = _data()
    cfg = RetrievalConfig(**{**CFG.__dict__, "temperature": 1.0, "temperature_candidates": [0.1]})
    model = build_multitask(_features(), NUM_USERS, cfg, MultitaskConfig(enabled=True, category_weight=0.0),
                            data=data)
    chosen = train_retrieval(model, data, cfg, verbose=0).selection["temperature"]
    assert list(chosen["valid_best"]) == ["1", "0.1"] and model.task.temperature == chosen["chosen"]
    restored = model.evaluate(retrieval_eval_dataset(data, "valid"), return_dict=True, verbose=0)
    assert restored["recall_at_5"] == pytest.approx(max(chosen["valid_best"].values()), abs=1e-6)
    assert len(model.ranking_head.weights) == 4  # Dense(64) + Dense(1), kernels and biases
