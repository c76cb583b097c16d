"""From trained models to SavedModels (``export.build``): the content inputs read from a catalog
through training's file gate, the serving module and its content path, warm-up requests made of
real ids, and versions written whole into ``BASE/NAME/<version>`` that load back in process and
answer as the unsaved module does.

(A fresh TF-only process answering TF Serving's REST formats: tests/export/test_contract.py;
killed and concurrent exports: tests/export/test_versioning.py.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.config import LimitsConfig
from tfmmrec.encoders.encode import item_texts
from tfmmrec.data.interactions import user_histories
from tfmmrec.export.build import (
    export_ranking_model,
    export_retrieval_model,
    raw_content_inputs,
    retrieval_serving,
    retrieval_warmup,
)
from tfmmrec.export.content import ContentEncoder
from tfmmrec.export.retrieval import RetrievalServing
from tfmmrec.export.tf_serving import WARMUP_FILE, read_warmup_records
from tfmmrec.models.mf import MatrixFactorization

SIGNATURES = {"serving_default", "recommend_new_items", "embed_query", "embed_item_content"}


def request(users: list[str], k: int) -> dict[str, tf.Tensor]:
    """Every input of ``serving_default`` (a Python call passes them all; TF Serving fills in the defaults)."""
    return {"user_id": tf.constant(users), "recent_item_ids": tf.constant([[""]]),
            "exclude_item_ids": tf.constant([[""]]), "k": tf.constant([k])}


@pytest.fixture(scope="module")
def serving(trained_run) -> RetrievalServing:
    """The run's multimodal retrieval module, built as the pipeline's export built it, unsaved."""
    model, data = trained_run.models["multimodal"], trained_run.data
    item_emb = model.item_tower(np.arange(1, len(trained_run.item_ids) + 1)).numpy()
    return retrieval_serving(model, data.user_ids, trained_run.item_ids, item_emb, 10, dataset=trained_run.dataset,
                             content=trained_run.content, new_items=new_items(trained_run))


def new_items(trained_run) -> np.ndarray:
    """The run's items without training interactions, as the pipeline's export flags them."""
    return np.bincount(trained_run.data.train.item, minlength=len(trained_run.item_ids) + 1)[1:] == 0


def test_content_inputs_are_the_items_texts_file_bytes_and_fields(trained_run) -> None:
    ds = trained_run.dataset
    no_image = int(np.flatnonzero(ds.items["image_path"].eq("").to_numpy())[0])
    rows = np.array([0, 1, no_image])
    got = raw_content_inputs(ds, rows, ["text", "image", "brand", "price"])
    texts = item_texts(ds, ds.manifest.modalities["text"].columns)
    assert got["text"].tolist() == [texts[r].encode() for r in rows]
    assert got["image"].tolist()[:2] == [(ds.root / ds.items["image_path"][r]).read_bytes() for r in rows[:2]]
    assert got["image"][2] == b""  # no file: the modality is masked
    assert got["brand"].tolist() == [ds.items["brand"][r].encode() for r in rows]
    assert got["price"].dtype == np.float32
    np.testing.assert_array_equal(got["price"], ds.items["price"].to_numpy(np.float32)[rows])
    with pytest.raises(KeyError, match="'colour'.*modalities \\['audio', 'image', 'text'\\]"):
        raw_content_inputs(ds, rows, ["text", "colour"])


def test_content_over_the_limits_is_masked_and_named(trained_run) -> None:
    ds = trained_run.dataset
    rows = np.array([0, 1])
    sizes = [(ds.root / ds.items["image_path"][r]).stat().st_size for r in rows]
    chars = [len(t) for t in np.array(item_texts(ds, ds.manifest.modalities["text"].columns))[rows]]
    assert sizes[0] != sizes[1] and chars[0] != chars[1]
    limits = LimitsConfig(max_file_bytes=min(sizes), max_text_chars=min(chars))  # the bigger of the two is over
    masked: dict[str, list[str]] = {}
    got = raw_content_inputs(ds, rows, ["text", "image"], limits=limits, masked=masked)
    big_text, big_image = int(np.argmax(chars)), int(np.argmax(sizes))
    assert [len(v) == 0 for v in got["text"]] == [r == big_text for r in range(2)]
    assert [len(v) == 0 for v in got["image"]] == [r == big_image for r in range(2)]
    ids = ds.items["item_id"]
    expected: dict[str, list[str]] = {}
    expected.setdefault(ids[big_text], []).append("text (over limits.max_text_chars)")
    expected.setdefault(ids[big_image], []).append("image (over limits.max_file_bytes)")
    assert masked == expected


def test_the_serving_module_has_a_content_path_only_for_a_content_model_with_its_catalog(
        trained_run, serving: RetrievalServing) -> None:
    tower = trained_run.models["multimodal"].item_tower
    assert isinstance(serving.content, ContentEncoder)
    assert serving.content.tower is tower.content_tower  # new items are embedded as cold items are
    assert float(serving.content.output_scale) == pytest.approx(float(tower.cold_scale.numpy()))
    assert set(serving.signatures()) == SIGNATURES
    data, items = trained_run.data, trained_run.item_ids
    emb = np.zeros((len(items), tower.embedding_dim), np.float32)
    assert retrieval_serving(trained_run.models["multimodal"], data.user_ids, items, emb, 10).content is None
    id_only = retrieval_serving(trained_run.models["id_only"], data.user_ids, items, emb, 10,
                                dataset=trained_run.dataset, content=trained_run.content)
    assert id_only.content is None and set(id_only.signatures()) == {"serving_default", "recommend_new_items",
                                                                       "embed_query"}


def test_warmup_requests_use_real_ids_and_content_and_the_module_answers_them(trained_run, serving: RetrievalServing,
                                                                             tmp_path: Path) -> None:
    data, items = trained_run.data, trained_run.item_ids
    files = retrieval_warmup("shop", serving, data.user_ids, items, trained_run.dataset)
    assert list(files) == [WARMUP_FILE]
    (tmp_path / WARMUP_FILE).write_bytes(files[WARMUP_FILE])
    logs = [log.predict_log.request for log in read_warmup_records(tmp_path / WARMUP_FILE)]
    assert [(r.model_spec.name, r.model_spec.signature_name) for r in logs] == [
        ("shop", "serving_default"), ("shop", "serving_default"), ("shop", "recommend_new_items"),
        ("shop", "embed_query"), ("shop", "embed_item_content")]
    users = [str(u).encode() for u in data.user_ids[:3]]
    assert tf.make_ndarray(logs[0].inputs["user_id"]).tolist() == users
    assert tf.make_ndarray(logs[1].inputs["exclude_item_ids"]).tolist() == [[str(i).encode() for i in items[:2]]] * 3
    content = {k: tf.make_ndarray(v) for k, v in logs[4].inputs.items()}
    assert set(content) == set(serving.content.input_names) and len(content["text"]) == 2
    for request in logs:
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        if request.model_spec.signature_name == "embed_item_content":  # unsaved, it takes them in input order
            outputs = serving.embed_item_content(*[inputs[n] for n in serving.content.input_names])
        else:
            outputs = serving.signatures()[request.model_spec.signature_name](**inputs)
        assert all(np.isfinite(v.numpy()).all() for v in outputs.values() if v.dtype.is_floating)


def test_the_runs_exports_are_whole_versions_that_reload_and_answer_as_the_module(
        trained_run, serving: RetrievalServing) -> None:
    retrieval, ranking = trained_run.exports["retrieval"], trained_run.exports["ranking"]
    for path in (retrieval, ranking):
        assert path.name == "1" and (path / "assets.extra" / WARMUP_FILE).is_file()
        # only whole versions in the model directory (TF Serving loads any integer-named one), no temporary
        assert all(p.name.isdigit() and (p / "saved_model.pb").is_file() for p in path.parent.iterdir())
    loaded = tf.saved_model.load(str(retrieval))
    assert set(loaded.signatures) == SIGNATURES
    users = [str(u) for u in trained_run.data.user_ids[:3]] + ["nobody"]
    got, want = loaded.signatures["serving_default"](**request(users, k=10)), serving.recommend(**request(users, k=10))
    assert got["item_ids"].numpy().tolist() == want["item_ids"].numpy().tolist()
    np.testing.assert_allclose(got["scores"].numpy(), want["scores"].numpy(), rtol=1e-5, atol=1e-6)
    # New arrivals: the items without training interactions, flagged at export, ranked among themselves
    # exactly as the full index ranks them; exclusions still apply.
    np.testing.assert_array_equal(loaded.item_is_new.numpy(), new_items(trained_run))
    fresh = set(np.asarray(trained_run.item_ids)[new_items(trained_run)].astype(str))
    query = loaded.signatures["embed_query"](user_id=tf.constant(users))["embedding"].numpy()
    index = loaded.item_embeddings.numpy()
    rows = np.flatnonzero(loaded.item_is_new.numpy())
    want_ids = np.asarray(trained_run.item_ids).astype(str)[rows[np.argsort(-(query @ index[rows].T), axis=1)[:, :10]]]
    arrivals = loaded.signatures["recommend_new_items"](**request(users, k=10))
    got_ids = arrivals["item_ids"].numpy().astype(str)
    assert len(fresh) >= 10 and set(got_ids.ravel()) <= fresh
    assert got_ids.tolist() == want_ids.tolist()
    excluded = loaded.signatures["recommend_new_items"](**{**request(users, k=10), "exclude_item_ids": tf.constant(
        got_ids[:, :1])})["item_ids"].numpy().astype(str)
    assert excluded[:, :9].tolist() == got_ids[:, 1:].tolist()
    ranker = tf.saved_model.load(str(ranking))
    assert set(ranker.signatures) == {"serving_default", "explain"}
    logs = read_warmup_records(ranking / "assets.extra" / WARMUP_FILE)
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == ["serving_default", "explain"]


def test_a_second_export_is_the_next_version_and_leaves_the_first_as_it_was(trained_run, tmp_path: Path) -> None:
    model, data, items = trained_run.models["id_only"], trained_run.data, trained_run.item_ids
    emb = model.item_tower(np.arange(1, len(items) + 1)).numpy()
    first = export_retrieval_model(tmp_path, "shop", model, data.user_ids, items, emb, 5)
    graph = (first / "saved_model.pb").read_bytes()
    second = export_retrieval_model(tmp_path, "shop", model, data.user_ids, items, emb, 5)
    assert (first, second) == (tmp_path / "shop" / "1", tmp_path / "shop" / "2")
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == ["1", "2"]
    assert (first / "saved_model.pb").read_bytes() == graph
    loaded = tf.saved_model.load(str(second))
    assert set(loaded.signatures) == SIGNATURES - {"embed_item_content"}  # an ID-only model has no content path
    top = loaded.signatures["serving_default"](**request([str(data.user_ids[0])], k=5))
    assert top["item_ids"].shape == (1, 5)
    user = model.query_tower(np.array([1])).numpy()[0]
    np.testing.assert_allclose(top["scores"].numpy()[0], np.sort(emb @ user)[::-1][:5], rtol=1e-5, atol=1e-6)


def test_a_ranker_with_a_history_field_exports_its_users_histories(trained_run, tmp_path: Path) -> None:
    """``ranking.history_length``: the users' training items are a table inside the model, so the
    export still takes only user and item ids and scores as the Keras model does."""
    trained, data = trained_run.models["ranking"], trained_run.data
    ranker = type(trained).from_config({**trained.get_config(), "history_length": 6})
    batch = {"user": np.arange(1, 9), "item": np.arange(1, 9)}
    ranker(batch)
    ranker.table.set_weights(trained.table.get_weights())  # the catalog's features
    ranker.set_user_history(user_histories(data.train, data.num_users, 6, "others")[1])
    path = export_ranking_model(tmp_path, "with_history", ranker, data.user_ids, trained_run.item_ids, binary=True)
    loaded = tf.saved_model.load(str(path))
    got = loaded.signatures["serving_default"](user_id=tf.constant(data.user_ids[:8].astype(str)),
                                               item_id=tf.constant(trained_run.item_ids[:8].astype(str)))
    want = tf.sigmoid(ranker(batch, training=False)).numpy()
    np.testing.assert_allclose(got["score"].numpy(), want, rtol=1e-5, atol=1e-6)
    empty = np.zeros_like(ranker.user_history.numpy())  # the histories matter to the scores
    ranker.set_user_history(empty)
    assert np.abs(tf.sigmoid(ranker(batch, training=False)).numpy() - want).max() > 1e-4


def test_a_matrix_factorisation_ranker_exports_and_explains_nothing(trained_run, tmp_path: Path) -> None:
    """``ranking.model: mf`` (the default on ratings) is served as the other rankers are; it reads no
    content, so ``explain`` has only the score."""
    data = trained_run.data
    ranker = MatrixFactorization(trained_run.models["ranking"].table, data.num_users,
                                 int(trained_run.models["ranking"].num_id_slots), factors=8)
    batch = {"user": np.arange(1, 9), "item": np.arange(1, 9)}
    want = ranker(batch, training=False).numpy()
    path = export_ranking_model(tmp_path, "mf", ranker, data.user_ids, trained_run.item_ids, binary=False)
    loaded = tf.saved_model.load(str(path))
    users, items = tf.constant(data.user_ids[:8].astype(str)), tf.constant(trained_run.item_ids[:8].astype(str))
    np.testing.assert_allclose(loaded.signatures["serving_default"](user_id=users, item_id=items)["score"].numpy(),
                               want, rtol=1e-5, atol=1e-6)
    assert set(loaded.signatures["explain"](user_id=users, item_id=items)) == {"score"}
