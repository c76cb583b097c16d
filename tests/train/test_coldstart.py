"""Training the warm/cold model in stages, each selected on the validation split."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tfmmrec.config import ConfigError, RunConfig
from tfmmrec.evaluate.protocol import cold_pool_metrics, embed_all, valid_recalls
from tfmmrec.models.coldstart import WarmColdItemTower
from tfmmrec.train.coldstart import choose_blend, train_any_retrieval, train_warm_cold
from tfmmrec.train.early_stopping import describe_selection
from tfmmrec.train.prepare import prepare_data, retrieval_model

TINY = ["retrieval.embedding_dim=16", "retrieval.fusion_hidden=[32]", "retrieval.batch_size=256",
        "retrieval.learning_rate=0.01", "retrieval.epochs=4", "retrieval.patience=2",
        "split.strategy=cold_start", "split.cold_item_frac=0.2"]


def _grid(**recalls: tuple[float, float, float]) -> dict[tuple[float, float], dict[str, float]]:
    """``c0_s1=(all, warm, cold)`` -> the blend grid's scores, in the order given."""
    out = {}
    for key, (a, w, c) in recalls.items():
        cc, ss = key.split("_")
        out[(float(cc[1:]), float(ss[1:].replace("p", ".")))] = {"all": a, "warm": w, "cold": c}
    return out


def test_random_split_blend_is_the_best_for_all_items() -> None:
    scores = _grid(c0_s1=(0.20, 0.20, np.nan), c0_s0p5=(0.22, 0.22, np.nan), c3_s1=(0.21, 0.21, np.nan))
    assert choose_blend(scores) == (0.0, 0.5)
    assert all(choose_blend(scores, objective) == (0.0, 0.5) for objective in ("warm_first", "balanced"))


def test_cold_start_blend_keeps_the_worse_group_closest_to_its_own_model() -> None:
    # References: warm items 0.30 in the warm model alone, cold items 0.020 in the content tower alone.
    scores = _grid(c0_s0p5=(0.16, 0.300, 0.000), c0_s1=(0.16, 0.285, 0.018), c0_s1p3=(0.15, 0.200, 0.022))
    # Ratios (warm, cold): (1.0, 0.0), (0.95, 0.9), (0.67, 1.1): the mean of the recalls would pick
    # s = 0.5 (cold items never shown), the best cold recall s = 1.3 (warm items lose a third).
    refs = {"warm": 0.30, "cold": 0.020}
    assert choose_blend(scores, "balanced", refs) == (0.0, 1.0)
    # A group without validation items (reference 0) does not take part.
    assert choose_blend(scores, "balanced", {"warm": 0.30, "cold": 0.0}) == (0.0, 0.5)
    # warm_first: the best overall recall among the pairs keeping warm items within 5% (s = 1.0
    # and s = 0.5 qualify; their overall recalls tie, the first listed wins); with a 50% tolerance,
    # s = 1.3 qualifies but its overall recall is lower.
    assert choose_blend(scores, "warm_first", refs, warm_tolerance=0.05) == (0.0, 0.5)
    assert choose_blend(scores, "warm_first", refs, warm_tolerance=0.0) == (0.0, 0.5)
    scores[(0.0, 1.3)]["all"] = 0.17
    assert choose_blend(scores, "warm_first", refs, warm_tolerance=0.05) == (0.0, 0.5)
    assert choose_blend(scores, "warm_first", refs, warm_tolerance=0.5) == (0.0, 1.3)
    assert choose_blend(scores, "all", refs) == (0.0, 1.3)
    # No blend keeps warm items within the tolerance: the one that costs them least.
    assert choose_blend(scores, "warm_first", {"warm": 0.40, "cold": 0.020}) == (0.0, 0.5)
    with pytest.raises(ValueError, match="blend_objective"):
        choose_blend(scores, "mean", refs)


@pytest.fixture(scope="module")
def prepared(demo_dir: Path):
    cfg = RunConfig().with_overrides(TINY)
    return prepare_data(demo_dir, cfg), cfg


@pytest.fixture(scope="module")
def trained(prepared):
    """A warm/cold model trained with the default stages, and what its validation selected. Read-only."""
    prep, cfg = prepared
    model = retrieval_model(prep, cfg, use_content=True)
    return model, train_warm_cold(model, prep.data, cfg.retrieval, verbose=0).selection


def test_stages_are_selected_on_validation_and_cold_items_get_content(prepared, trained) -> None:
    prep, cfg = prepared
    assert prep.data.cold_valid_share() > 0.1  # a cold-start split: warm and cold selected apart
    model, selection = trained
    assert isinstance(model.item_tower, WarmColdItemTower)
    content = selection["content"]
    assert selection["objective"] == "warm" and content["objective"] == "cold_pool"
    for stage in (selection, content):
        assert 1 <= stage["best_epoch"] <= stage["epochs_run"] <= 4
        assert stage["best"] == max(point["objective"] for point in stage["val_curve"])
    blend = selection["blend"]
    assert blend["blend_c"] in cfg.retrieval.warm_blend_c
    assert any(blend["cold_scale"] == pytest.approx(s) for s in cfg.retrieval.cold_scale)
    grid = blend["valid_recall@20"]
    assert len(grid) == len(cfg.retrieval.warm_blend_c) * len(cfg.retrieval.cold_scale)
    chosen = grid[f"c={blend['blend_c']:g} s={blend['cold_scale']:g}"]
    # Default blend_objective "warm_first": the best validation recall of all items among the pairs
    # keeping warm items within blend_warm_tolerance of the warm model alone (the reference).
    refs = blend["references"]
    assert set(refs) == {"warm", "cold"} and refs["cold"] > 0 and blend["objective"] == "warm_first"
    floor = (1 - cfg.retrieval.blend_warm_tolerance) * refs["warm"]
    allowed = [s for s in grid.values() if s["warm"] >= floor]
    if allowed:
        assert chosen["warm"] >= floor and chosen["all"] == max(s["all"] for s in allowed)
    else:  # on this tiny catalog cold items may outscore warm ones at every s: the least costly blend
        assert chosen["warm"] == max(s["warm"] for s in grid.values())
    # The served model is the chosen blend: its validation recalls are the grid's.
    served = valid_recalls(*embed_all(model, prep.data), prep.data)
    assert served["cold"] == pytest.approx(chosen["cold"], abs=1e-6)
    # Content learned something about cold items: ranked among all items by the content tower alone,
    # validation cold items come out far better than with an untrained content tower.
    untrained = retrieval_model(prep, cfg, use_content=True)

    def content_only_cold_recall(m) -> float:
        users = embed_all(model, prep.data)[0]  # one query tower for both: the content towers differ
        items = m.item_tower.content_tower(np.arange(1, prep.data.num_items + 1)).numpy()
        return valid_recalls(users, items, prep.data)["cold"]
    assert content_only_cold_recall(model) > 1.5 * content_only_cold_recall(untrained)


def test_the_warm_tower_is_chosen_on_the_served_models_validation_recall(prepared, trained) -> None:
    # retrieval.warm_tower: select (the default) trains the whole model twice from the same initial
    # weights, the warm tower's content switched on, then off, and keeps the better served model.
    prep, _ = prepared
    model, selection = trained
    choice = selection["warm_tower"]
    scores = choice["valid_recall@20"]
    assert list(scores) == ["id_content", "id"] and choice["chosen"] == max(scores, key=scores.get)
    served = valid_recalls(*embed_all(model, prep.data), prep.data)
    assert served["all"] == pytest.approx(scores[choice["chosen"]], abs=1e-6)
    assert float(model.item_tower.warm_tower.content_on.numpy()) == float(choice["chosen"] == "id_content")
    assert f"multimodal: warm tower {choice['chosen']} chosen on validation (recall@20 of all items: " \
        f"id_content {scores['id_content']:.4f}, id {scores['id']:.4f})" in describe_selection("multimodal", selection)


def test_the_content_tower_is_selected_on_the_cold_pool_or_the_full_catalog(prepared, trained) -> None:
    prep, cfg = prepared
    model, pooled = trained[0], trained[1]["content"]
    full_cfg = dataclasses.replace(cfg.retrieval, content_selection="cold", warm_tower="id_content")
    other = retrieval_model(prep, cfg, use_content=True)
    full = train_warm_cold(other, prep.data, full_cfg, verbose=0).selection["content"]
    assert (pooled["objective"], full["objective"]) == ("cold_pool", "cold")
    # Each kept epoch's value is the content tower's recall of the validation cold items, ranked
    # among the cold items only (the default) or in the full catalog, and the best of its curve.
    for trained, stage, pool in ((model, pooled, True), (other, full, False)):
        users = embed_all(trained, prep.data)[0]
        items = trained.item_tower.content_tower(np.arange(1, prep.data.num_items + 1)).numpy()
        value = cold_pool_metrics(users, items, prep.data, "valid")["recall@20"] if pool else \
            valid_recalls(users, items, prep.data)["cold"]
        assert stage["best"] == pytest.approx(value, abs=1e-5)
        assert stage["best"] == max(point["objective"] for point in stage["val_curve"])
    assert full["best"] < pooled["best"]  # among cold items only, more of them are hits


def test_without_validation_rows_every_stage_trains_all_epochs_with_a_warning(prepared) -> None:
    prep, cfg = prepared
    empty = dataclasses.replace(prep.data.valid, user=prep.data.valid.user[:0], item=prep.data.valid.item[:0])
    data = dataclasses.replace(prep.data, valid=empty)
    cfg2 = RunConfig().with_overrides([*TINY, "retrieval.epochs=2"])
    model = retrieval_model(dataclasses.replace(prep, data=data), cfg2, use_content=True)
    with pytest.warns(UserWarning, match="no validation interactions"):
        selection = train_any_retrieval(model, data, cfg2.retrieval, verbose=0).selection
    assert selection["best_epoch"] is None and selection["epochs_run"] == 2
    assert selection["content"]["epochs_run"] == 2
    # warm_tower: select has nothing to choose on: the warm tower keeps its content, trained once.
    assert "warm_tower" not in selection and float(model.item_tower.warm_tower.content_on.numpy()) == 1.0
    assert selection["blend"]["blend_c"] == cfg2.retrieval.warm_blend_c[0]
    assert selection["blend"]["cold_scale"] == pytest.approx(cfg2.retrieval.cold_scale[0])


def test_an_unknown_blend_objective_is_refused_before_any_training(prepared) -> None:
    prep, cfg = prepared
    model = retrieval_model(prep, cfg, use_content=True)
    embed_all(model, prep.data)  # creates the variables
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ConfigError, match="retrieval.blend_objective"):
        train_warm_cold(model, prep.data, dataclasses.replace(cfg.retrieval, blend_objective="mean"), verbose=0)
    with pytest.raises(ConfigError, match="retrieval.content_selection"):
        train_warm_cold(model, prep.data, dataclasses.replace(cfg.retrieval, content_selection="pool"), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # nothing was trained


def test_the_warm_stage_selects_the_temperature_and_the_rest_keeps_it(prepared) -> None:
    prep, _ = prepared
    cfg = RunConfig().with_overrides([*TINY, "retrieval.epochs=2", "retrieval.temperature_candidates=[1.0]",
                                      "retrieval.warm_tower=id_content"])
    model = retrieval_model(prep, cfg, use_content=True)
    selection = train_warm_cold(model, prep.data, cfg.retrieval, verbose=0).selection
    scores = selection["temperature"]["valid_best"]
    assert list(scores) == ["0.2", "1"] and scores[f"{selection['temperature']['chosen']:g}"] == max(scores.values())
    assert model.task.temperature == selection["temperature"]["chosen"]  # the served model's, the content stage's
    assert selection["content"]["best_epoch"] is not None  # the content stage still selects its epoch
