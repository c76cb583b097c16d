"""The biased matrix factorisation ranker (``ranking.model: mf``, the default on ratings)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmmrec.config import RankingConfig
from tfmmrec.data.interactions import EncodedInteractions, SplitArrays
from tfmmrec.models.build import build_ranking
from tfmmrec.models.dcn import DCN
from tfmmrec.models.features import ItemFeatures
from tfmmrec.models.mf import MatrixFactorization
from tfmmrec.train.early_stopping import describe_selection
from tfmmrec.train.fit import train_ranking
from tfmmrec.train.resume import ResumableBackup
from tfmmrec.train.tensorboard import tensorboard_callbacks

NUM_ITEMS, NUM_USERS = 40, 30  # sizes of the shared fixtures (conftest.py)


def test_the_ranker_follows_the_feedback_unless_set() -> None:
    assert RankingConfig().ranker(rating=True) == "mf" and RankingConfig().ranker(rating=False) == "dcn"
    assert RankingConfig(model="deepfm").ranker(rating=True) == "deepfm"


def test_the_score_is_global_bias_plus_user_and_item_biases_plus_their_factors(features: ItemFeatures) -> None:
    model = build_ranking(features, NUM_USERS, RankingConfig(mf_factors=8, mf_content=False), rating=True)
    assert isinstance(model, MatrixFactorization) and model.factors == 8
    users, items = np.array([1, 2, 3, 4]), np.array([1, 5, 30, 35])  # item 35: no id slot (cold)
    score = model({"user": users, "item": items}).numpy()
    p, bu = model.user_vec.embeddings.numpy()[users], model.user_bias.embeddings.numpy()[users, 0]
    slots = features.id_slot[items]
    q, bi = model.item_vec.embeddings.numpy()[slots], model.item_bias.embeddings.numpy()[slots, 0]
    known = (slots > 0).astype(np.float32)  # a cold item is scored mu + b_u: no id row, no content
    want = float(model.global_bias.numpy()) + bu + known * (bi + (p * q).sum(-1))
    np.testing.assert_allclose(score, want, rtol=1e-5, atol=1e-6)
    clone = MatrixFactorization.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert keras.utils.get_registered_object("tfmmrec>MatrixFactorization") is MatrixFactorization
    assert not model.use_content  # the export's explain has no modality to take away


def test_it_learns_ratings_with_a_per_rating_penalty(features: ItemFeatures,
                                                     interactions: EncodedInteractions) -> None:
    """Each training example pays ``l2 * (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)`` on its own rows: the
    training loss is the squared error plus that, and a larger ``l2`` keeps the factors smaller."""
    rating = (1.0 + (interactions.train.item + interactions.train.user) % 5).astype(np.float32)  # 1..5
    data = dataclasses.replace(interactions, train=dataclasses.replace(interactions.train, target=rating))
    norms = {}
    for l2 in (0.0, 0.5):
        keras.utils.set_random_seed(0)
        cfg = RankingConfig(mf_factors=8, mf_l2=l2, epochs=30, batch_size=32, learning_rate=0.02, mf_content=False)
        model = build_ranking(features, NUM_USERS, cfg, rating=True)
        history = train_ranking(model, data, cfg, mode="rating", verbose=0).history
        assert history["rmse"][-1] < (0.5 if l2 == 0 else 0.9) * history["rmse"][0]  # the penalty slows it
        batch = {"user": tf.constant(data.train.user[:64]), "item": tf.constant(data.train.item[:64])}
        model(batch, training=True)
        penalty = float(tf.add_n(model.losses)) if model.losses else 0.0
        vecs, firsts, _ = model.fields(batch, training=False)
        rows = tf.concat(vecs + firsts, -1).numpy()
        assert penalty == pytest.approx(l2 * float(np.mean(np.sum(rows ** 2, -1))), rel=1e-4, abs=1e-8)
        norms[l2] = float(np.linalg.norm(model.item_vec.embeddings.numpy()))
    assert norms[0.5] < 0.75 * norms[0.0]  # measured: about half


def test_content_models_stay_the_default_on_implicit_feedback(features: ItemFeatures) -> None:
    assert isinstance(build_ranking(features, NUM_USERS, RankingConfig(), rating=False), DCN)
    assert isinstance(build_ranking(features, NUM_USERS, RankingConfig(model="dcn"), rating=True), DCN)


def cluster_ratings(interactions: EncodedInteractions) -> EncodedInteractions:
    """Every user rates every item: 4.5 for the items of the cluster they like, 1.5 for the others
    (+ noise). Items 1..30 (with id slots) in training, but a tenth of their pairs in validation;
    items 31..40 (no id slot: cold, known only by their text and category) in validation alone."""
    rng = np.random.default_rng(2)
    users, items = np.meshgrid(np.arange(1, NUM_USERS + 1), np.arange(1, NUM_ITEMS + 1), indexing="ij")
    users, items = users.ravel().astype(np.int32), items.ravel().astype(np.int32)
    rating = np.where((items - 1) % 4 == users % 4, 4.5, 1.5) + 0.2 * rng.standard_normal(len(users))
    valid = (items > 30) | (rng.random(len(users)) < 0.1)

    def part(keep: np.ndarray) -> SplitArrays:
        return SplitArrays(users[keep], items[keep], rating[keep].astype(np.float32))
    return dataclasses.replace(interactions, train=part(~valid), valid=part(valid), test=part(items > 30))


def test_a_cold_item_is_scored_from_its_content_and_a_warm_one_from_its_ids_alone(features: ItemFeatures) -> None:
    model = build_ranking(features, NUM_USERS, RankingConfig(mf_factors=8), rating=True)
    assert isinstance(model, MatrixFactorization) and model.use_content and model.stage == "served"
    batch = {"user": tf.constant([1, 2, 3, 4]), "item": tf.constant([1, 5, 35, 38])}  # items 35, 38: cold
    model(batch)
    for layer in model.content_layers():  # start values are near zero: make content count
        for v in layer.trainable_variables:
            v.assign(tf.random.stateless_normal(v.shape, [0, len(v.name)], stddev=0.3))
    served = model(batch).numpy()
    model.set_stage("ids")
    ids = model(batch).numpy()
    model.set_stage("content")
    content = model(batch).numpy()
    model.set_stage("served")
    np.testing.assert_allclose(served[:2], ids[:2], rtol=1e-5)  # warm: the ids-only score
    np.testing.assert_allclose(served[2:], content[2:], rtol=1e-5)  # cold: the content score
    assert np.abs(content[:2] - ids[:2]).min() > 1e-3  # (content scores warm items otherwise)
    model.compile(optimizer="adam", loss="mse")
    with pytest.warns(UserWarning, match="trains the id rows only"):  # a plain fit would leave content untrained
        model.fit(batch, tf.constant([3.0, 4.0, 2.0, 5.0]), epochs=1, verbose=0)
    vecs, firsts, names = model.fields(batch)  # the export's explain sees every field
    assert names == ["user", "item", "categorical_0", "text"]
    clone = MatrixFactorization.from_config(model.get_config())
    assert clone.get_config() == model.get_config() and clone.use_content and clone.content_hidden == 256


def test_content_trained_second_scores_cold_items_without_moving_warm_ones(
        features: ItemFeatures, interactions: EncodedInteractions, tmp_path: Path) -> None:
    """The ids-only model and the content model, same seed, same data: warm items get the same
    predictions from both, and cold ones, on which an ids-only model knows only the user's mean,
    far better ones from the content model (the content stage is selected on them)."""
    data = cluster_ratings(interactions)
    cfg = RankingConfig(mf_factors=8, epochs=40, batch_size=64, learning_rate=0.02, patience=5)
    predictions, selections = {}, {}
    for content in (False, True):
        keras.utils.set_random_seed(0)
        model = build_ranking(features, NUM_USERS, dataclasses.replace(cfg, mf_content=content), rating=True)
        logs = tensorboard_callbacks(tmp_path / str(content), histograms=False) if content else None
        history = train_ranking(model, data, dataclasses.replace(cfg, mf_content=content), mode="rating", verbose=0,
                                callbacks=logs)
        assert model.stage == "served"
        predictions[content] = model.predict({"user": data.valid.user, "item": data.valid.item}, verbose=0)
        selections[content] = history.selection
    warm = data.valid.item <= 30
    np.testing.assert_allclose(predictions[True][warm], predictions[False][warm], rtol=1e-5, atol=1e-5)
    errors = {c: float(np.sqrt(np.mean((p[~warm] - data.valid.target[~warm]) ** 2))) for c, p in predictions.items()}
    assert errors[False] > 1.0  # mu + b_u: the clusters' ratings are 3 apart
    assert errors[True] < 0.5 * errors[False], errors
    assert "content" in selections[True] and "content" not in selections[False]
    assert selections[True]["valid_items"] == "warm" and selections[True]["content"]["valid_items"] == "cold"
    assert selections[True]["content"]["best_epoch"] >= 1
    said = describe_selection("ranking", selections[True])  # what `tfmmrec train` prints
    assert [line.split(":")[0] for line in said] == ["ranking (ids stage, warm items)",
                                                     "ranking (content stage, cold items)"], said
    for stage in ("ids", "content"):  # each stage's validation curve in its own TensorBoard run
        events = sorted((tmp_path / "True" / stage / "validation").glob("events.out.tfevents.*"))
        tags = {v.tag for path in events for event in tf.compat.v1.train.summary_iterator(str(path))
                for v in event.summary.value}
        assert "epoch_rmse" in tags, (stage, tags)


def test_the_history_joins_the_user_factor_as_in_svdpp(features: ItemFeatures,
                                                       interactions: EncodedInteractions) -> None:
    cfg = RankingConfig(mf_factors=8, history_length=4, mf_content=False)
    model = build_ranking(features, NUM_USERS, cfg, rating=True, data=interactions)
    batch = {"user": tf.constant([1, 2, 3]), "item": tf.constant([1, 2, 3])}
    model(batch)
    model.history_vec.embeddings.assign(tf.random.stateless_normal(model.history_vec.embeddings.shape, [1, 2]))
    vecs, firsts, names = model.fields(batch)
    assert names == ["user", "item", "history"]
    p, q, h = (v.numpy() for v in vecs)
    want = ((p + h) * q).sum(-1) + tf.add_n(firsts).numpy()[:, 0] + float(model.global_bias.numpy())
    np.testing.assert_allclose(model(batch).numpy(), want, rtol=1e-5)
    assert np.abs(h).sum() > 0  # the users' training items are in the table


def test_a_run_killed_in_the_content_stage_resumes_there_and_ends_as_an_uninterrupted_one(
        features: ItemFeatures, interactions: EncodedInteractions, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Each stage backs up to its own directory: a rerun restores the finished ids stage as
    trained and continues the content stage from its last backup, to the same weights."""
    data = cluster_ratings(interactions)
    cfg = RankingConfig(mf_factors=8, epochs=4, batch_size=64, learning_rate=0.02, patience=4)
    pairs = {"user": data.valid.user, "item": data.valid.item}

    def trained(backup: Path) -> np.ndarray:
        keras.utils.set_random_seed(0)
        model = build_ranking(features, NUM_USERS, cfg, rating=True)
        train_ranking(model, data, cfg, mode="rating", verbose=0, backup_dir=backup, backup_every_steps=3)
        return model.predict(pairs, verbose=0)
    clean = trained(tmp_path / "clean")
    original = ResumableBackup.on_train_batch_end

    def crash(self: ResumableBackup, batch: int, logs: dict | None = None) -> None:
        original(self, batch, logs)
        if Path(self.backup_dir).name == "content" and self._current_epoch == 1 and batch == 7:
            raise KeyboardInterrupt  # as a kill: no epoch end, no final backup
    monkeypatch.setattr(ResumableBackup, "on_train_batch_end", crash)
    with pytest.raises(KeyboardInterrupt):
        trained(tmp_path / "killed")
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == ["content", "ids"]
    capsys.readouterr()
    np.testing.assert_allclose(trained(tmp_path / "killed"), clean, rtol=1e-5, atol=1e-6)
    resumed = [line for line in capsys.readouterr().out.splitlines() if "resumed from backup" in line]
    assert len(resumed) == 2 and "ids: training had finished" in resumed[0], resumed
    assert "content: epoch 2, step 8 done" in resumed[1], resumed  # killed after its 8th step, just backed up


@pytest.mark.parametrize("cold_ratings, content_selected_on", [(300, "cold"), (60, "all")])
def test_on_a_random_split_the_content_stage_is_selected_on_cold_items_when_there_are_enough(
        features: ItemFeatures, interactions: EncodedInteractions, cold_ratings: int, content_selected_on: str) -> None:
    """Under 10% of the validation ratings on cold items (not a cold-start split): the ids stage is
    selected on all of them, the content stage, which serves the cold items alone, on theirs when
    there are at least 100 (``MIN_COLD_VALID_RATINGS``), else on all."""
    data = cluster_ratings(interactions)
    cold = data.valid.item > 30
    keep = np.flatnonzero(cold)[:cold_ratings]
    warm = np.tile(np.flatnonzero(~cold), 40)  # the warm pairs, repeated: their share > 90%
    valid = data.valid.rows(np.isin(np.arange(len(data.valid)), keep))
    valid = SplitArrays(*(np.concatenate([getattr(valid, k), getattr(data.valid, k)[warm]])
                          for k in ("user", "item", "target")))
    data = dataclasses.replace(data, valid=valid)
    assert data.cold_valid_share() < 0.1
    cfg = RankingConfig(mf_factors=8, epochs=2, batch_size=256, learning_rate=0.02)
    model = build_ranking(features, NUM_USERS, cfg, rating=True)
    selection = train_ranking(model, data, cfg, mode="rating", verbose=0).selection
    assert selection["valid_items"] == "all" and selection["content"]["valid_items"] == content_selected_on


def test_a_catalog_without_content_trains_the_ids_alone(interactions: EncodedInteractions) -> None:
    """``mf_content`` is the default, but a catalog of ids alone has nothing to score cold items
    from: the content stage is skipped, not run on an empty set of fields."""
    n = NUM_ITEMS
    slots = np.concatenate([[0], np.arange(1, 31), np.zeros(10)]).astype(np.int32)
    ids_only = ItemFeatures({}, {}, slots, np.zeros((n + 1, 0), np.int32), [], np.zeros((n + 1, 0), np.float32))
    data = cluster_ratings(interactions)
    cfg = RankingConfig(mf_factors=8, epochs=2, batch_size=256)
    model = build_ranking(ids_only, NUM_USERS, cfg, rating=True)
    assert model.use_content and not model.content_layers()
    history = train_ranking(model, data, cfg, mode="rating", verbose=0)
    assert "content" not in history.selection and model.stage == "served"
    cold = model.predict({"user": np.array([1, 2]), "item": np.array([35, 36])}, verbose=0)
    assert np.all(np.isfinite(cold))
