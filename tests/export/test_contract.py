"""The serving contract: what TF Serving would load and how it answers.

Each export is loaded in a fresh process that imports TensorFlow and nothing from tfmmrec,
TFRS, TF-Hub or tf_keras; ``saved_model_cli show --all`` lists the documented signatures; and
requests written in TF Serving's REST row and columnar formats (``{"b64": ...}`` for bytes) go
through ``tfmmrec/serving/rest_format.py`` (loaded by path, so tfmmrec is never imported),
whose answers must equal the trained Keras models'. Bad requests get an error that says what
is wrong, or the documented fallback.
"""
from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmmrec.config import RetrievalConfig
from tfmmrec.export.build import raw_content_inputs

REST_FORMAT = Path(__file__).parents[2] / "tfmmrec" / "serving" / "rest_format.py"

FRESH = textwrap.dedent("""
    import importlib.util, json, sys
    import tensorflow as tf
    spec = json.load(open(sys.argv[1]))
    mod_spec = importlib.util.spec_from_file_location("rest_format", spec["rest_format"])
    rest = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(rest)
    endpoints = {name: rest.SavedModelEndpoint(path) for name, path in spec["models"].items()}
    answers = []
    for model, body in spec["requests"]:
        try:
            answers.append({"ok": endpoints[model].predict(json.dumps(body))})
        except rest.RequestError as e:
            answers.append({"error": str(e)})
    # Warm-up records, replayed the way TF Serving does when it loads a version.
    from tensorflow_serving.apis import prediction_log_pb2
    warmup = {}
    for name, endpoint in endpoints.items():
        warmup[name] = []
        for record in tf.data.TFRecordDataset(f"{endpoint.path}/assets.extra/tf_serving_warmup_requests"):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            request = log.predict_log.request
            feeds = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
            signature = endpoint.model.signatures[request.model_spec.signature_name]
            for alias in signature.structured_input_signature[1]:
                if alias not in feeds:  # TF Serving feeds the SignatureDef's defaults
                    default = endpoint.signature_defs[request.model_spec.signature_name].defaults[alias]
                    feeds[alias] = tf.constant(tf.make_ndarray(default))
            outputs = signature(**feeds)
            warmup[name].append([request.model_spec.name, request.model_spec.signature_name,
                                 sorted(outputs)])
    # What `saved_model_cli show --all` prints (the function behind that command).
    import contextlib, io
    from tensorflow.python.tools import saved_model_cli
    shows = {}
    for name, endpoint in endpoints.items():
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            saved_model_cli._show_all(str(endpoint.path))
        shows[name] = buffer.getvalue()
    foreign = ("tfmmrec", "tensorflow_recommenders", "tf_keras", "tensorflow_hub", "tensorflow_text")
    print(json.dumps({"answers": answers, "metadata": {k: e.metadata() for k, e in endpoints.items()},
                      "warmup": warmup, "saved_model_cli": shows,
                      "foreign_modules": sorted(m for m in sys.modules if m.split(".")[0] in foreign)}))
""")


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def wav_rate(path: Path) -> int:
    return struct.unpack("<I", path.read_bytes()[24:28])[0]


def run_fresh(models: dict[str, Path], requests: list, tmp_path: Path) -> tuple[dict, dict[str, str]]:
    """One TF-only process answers every request, replays the warm-up records and runs
    ``saved_model_cli show --all``'s function on each export."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"rest_format": str(REST_FORMAT), "models": {k: str(v) for k, v in models.items()},
                                "requests": requests}))
    proc = subprocess.run([sys.executable, "-c", FRESH, str(spec)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, out["saved_model_cli"]


def cli_io(text: str) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(signature, inputs|outputs, name) -> (dtype, shape) from ``saved_model_cli show --all``."""
    out = {}
    for block in re.split(r"\n(?=signature_def\[)", text):
        sig = re.match(r"signature_def\['([^']+)'\]", block)
        if not sig:
            continue
        for io, name, dtype, shape in re.findall(
                r"(inputs|outputs)\['([^']+)'\] tensor_info:\s*dtype: (\w+)\s*shape: (\([^)]*\))", block):
            out[(sig.group(1), io, name)] = (dtype, shape)
    return out


@pytest.fixture(scope="module")
def contract(trained_run, tmp_path_factory):
    """Requests, the fresh process's answers and the in-process expectations, computed once."""
    data, model, ranker = trained_run.data, trained_run.models["multimodal"], trained_run.models["ranking"]
    ds, catalog = trained_run.dataset, [str(i) for i in trained_run.item_ids]
    users = [str(data.user_ids[0]), str(data.user_ids[5])]
    user_q = model.query_tower(np.arange(1, len(data.user_ids) + 1)).numpy()
    mean_q = user_q.mean(0) / np.linalg.norm(user_q.mean(0))
    item_emb = model.item_tower(np.arange(1, len(catalog) + 1)).numpy()

    cold = np.setdiff1d(np.arange(len(catalog)), data.train_item_rows)
    latent = pd.read_csv(ds.root / "latent" / "items.csv", keep_default_na=False)
    full = latent[(latent.has_text == True) & (latent.has_image == True) & (latent.has_audio == True)  # noqa: E712
                  & (latent.corrupt == "")].item_id
    pick = [r for r in cold if catalog[r] in set(full) and wav_rate(ds.root / ds.items.audio_path[r]) == 16000][:3]
    names = ["audio", "brand", "image", "price", "text"]
    raw = raw_content_inputs(ds, np.array(pick), names)
    content_rows = [{"text": raw["text"][i].decode(), "image": b64(raw["image"][i]), "audio": b64(raw["audio"][i]),
                     "brand": raw["brand"][i].decode(), "price": float(raw["price"][i])} for i in range(len(pick))]
    empty_item = {"text": "", "image": b64(b""), "audio": b64(b""), "brand": "", "price": 0.0}
    corrupt_png = latent[latent.corrupt == "image"].item_id.iloc[0]
    corrupt_bytes = (ds.root / ds.items.image_path[catalog.index(corrupt_png)]).read_bytes()
    top_u0 = catalog[int(np.argmax(item_emb @ user_q[0]))]
    recent = [catalog[r] for r in data.train_item_rows[:2]]

    requests = [
        ("retrieval", {"instances": [{"user_id": users[0]}, {"user_id": users[1]}, {"user_id": "no-such-user"}]}),
        ("retrieval", {"inputs": {"user_id": [users[0], "no-such-user", ""], "k": [5],
                                  "recent_item_ids": [["", ""], recent, ["", ""]],
                                  "exclude_item_ids": [[top_u0], [""], [""]]}}),
        ("retrieval", {"signature_name": "embed_query", "inputs": {"user_id": [users[0], "nobody"]}}),
        ("retrieval", {"signature_name": "embed_item_content", "instances": content_rows + [empty_item]}),
        ("ranking", {"instances": [{"user_id": users[0], "item_id": catalog[pick[0]]},
                                   {"user_id": "nobody", "item_id": catalog[0]}]}),
        ("ranking", {"signature_name": "explain", "inputs": {"user_id": [users[0], users[1]],
                                                             "item_id": [catalog[pick[0]], catalog[pick[1]]]}}),
        # bad requests
        ("retrieval", {"inputs": {"user_id": [users[0]], "k": [1000]}}),
        ("retrieval", {"inputs": {"user_id": [users[0]], "k": ["five"]}}),
        ("retrieval", {"inputs": {"user_id": [1, 2]}}),
        ("retrieval", {"signature_name": "embed_item_content", "instances": [{**empty_item, "image": b64(b"junk")}]}),
        ("retrieval", {"signature_name": "embed_item_content",
                       "instances": [{**empty_item, "image": b64(corrupt_bytes)}]}),
        ("retrieval", {"instances": [{"user_id": users[0]}, {"user_id": users[1], "k": 3}]}),
        ("retrieval", {"instances": [{"user_id": users[0], "recent_item_ids": ["a", "b"]},
                                     {"user_id": users[1], "recent_item_ids": ["a"]}]}),
        ("retrieval", {"signature_name": "no_such_signature", "inputs": {"user_id": [users[0]]}}),
        ("retrieval", {"inputs": {"user_id": [users[0]]}, "instances": [{"user_id": users[0]}]}),
    ]
    models = {"retrieval": trained_run.exports["retrieval"], "ranking": trained_run.exports["ranking"]}
    out, cli = run_fresh(models, requests, tmp_path_factory.mktemp("contract"))
    return dict(out=out, cli=cli, answers=out["answers"], users=users, user_q=user_q, mean_q=mean_q,
                item_emb=item_emb, catalog=catalog, pick=pick, top_u0=top_u0, recent=recent, ranker=ranker,
                model=model, data=data)


def test_exports_load_with_tensorflow_alone(contract) -> None:
    assert contract["out"]["foreign_modules"] == []


def test_warmup_records_are_prediction_logs_the_exports_answer(contract) -> None:
    warmup = contract["out"]["warmup"]
    assert {sig for _, sig, _ in warmup["retrieval"]} == {"serving_default", "recommend_new_items", "embed_query",
                                                         "embed_item_content"}
    assert {sig for _, sig, _ in warmup["ranking"]} == {"serving_default", "explain"}
    assert {name for name, _, _ in warmup["retrieval"]} == {"demo_retrieval"}
    assert all(outputs for _, _, outputs in warmup["retrieval"] + warmup["ranking"])


def test_saved_model_cli_shows_the_documented_signatures(contract) -> None:
    r, k = cli_io(contract["cli"]["retrieval"]), cli_io(contract["cli"]["ranking"])
    assert r and k
    assert r[("serving_default", "inputs", "user_id")] == ("DT_STRING", "(-1)")
    assert r[("serving_default", "inputs", "recent_item_ids")] == ("DT_STRING", "(-1, -1)")
    assert r[("serving_default", "inputs", "exclude_item_ids")] == ("DT_STRING", "(-1, -1)")
    assert r[("serving_default", "inputs", "k")] == ("DT_INT32", "(-1)")
    assert r[("serving_default", "outputs", "item_ids")] == ("DT_STRING", "(-1, -1)")
    assert r[("serving_default", "outputs", "scores")] == ("DT_FLOAT", "(-1, -1)")
    assert r[("serving_default", "outputs", "query_source")] == ("DT_INT32", "(-1)")
    dim = contract["model"].query_tower.embedding_dim
    assert r[("embed_query", "outputs", "embedding")] == ("DT_FLOAT", f"(-1, {dim})")
    assert r[("embed_item_content", "outputs", "embedding")] == ("DT_FLOAT", f"(-1, {dim})")
    assert {n for (s, io, n) in r if s == "embed_item_content" and io == "inputs"} == {
        "text", "image", "audio", "brand", "price"}
    assert r[("embed_item_content", "inputs", "price")] == ("DT_FLOAT", "(-1)")
    assert r[("embed_item_content", "inputs", "image")] == ("DT_STRING", "(-1)")
    assert k[("serving_default", "inputs", "item_id")] == ("DT_STRING", "(-1)")
    assert k[("serving_default", "outputs", "score")] == ("DT_FLOAT", "(-1)")
    assert {n for (s, io, n) in k if s == "explain" and io == "outputs"} == {
        "score", "contribution_audio", "contribution_image", "contribution_text"}
    # The optional inputs are optional because the SignatureDef carries defaults for them.
    assert contract["out"]["metadata"]["retrieval"]["serving_default"]["defaults"] == [
        "exclude_item_ids", "k", "recent_item_ids"]


def test_row_format_top_k_equals_the_keras_towers(contract) -> None:
    predictions = contract["answers"][0]["ok"]["predictions"]
    queries = np.stack([contract["user_q"][0], contract["user_q"][5], contract["mean_q"]])
    scores = queries @ contract["item_emb"].T
    top = np.argsort(-scores, axis=1)[:, :10]
    for row, pred, src in zip(range(3), predictions, [0, 0, 2]):
        assert pred["item_ids"][:5] == [contract["catalog"][j] for j in top[row, :5]]
        np.testing.assert_allclose(pred["scores"], scores[row, top[row]], rtol=1e-4, atol=1e-5)
        assert pred["query_source"] == src  # unknown user: the mean user, never the untrained OOV row


def test_columnar_request_with_k_history_and_exclusions(contract) -> None:
    out = contract["answers"][1]["ok"]["outputs"]
    assert [len(row) for row in out["item_ids"]] == [5, 5, 5]
    assert out["query_source"] == [0, 1, 2]  # known user; unknown with history; empty id -> mean user
    assert contract["top_u0"] not in out["item_ids"][0]  # excluded
    hist = contract["item_emb"][[contract["catalog"].index(i) for i in contract["recent"]]].sum(0)
    hist /= np.linalg.norm(hist)
    scores = contract["item_emb"] @ hist
    expected = np.sort(scores)[::-1][:5]
    # Compared by score: the two recent items score exactly alike against their own mean, so their
    # order is a tie that TF's top_k and numpy's argsort may break either way.
    got = scores[[contract["catalog"].index(i) for i in out["item_ids"][1]]]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["scores"][1], expected, rtol=1e-4, atol=1e-5)


def test_embed_query_and_item_content_equal_the_towers(contract) -> None:
    emb = contract["answers"][2]["ok"]["outputs"]
    np.testing.assert_allclose(emb["embedding"][0], contract["user_q"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb["embedding"][1], contract["mean_q"], rtol=1e-5, atol=1e-6)
    assert emb["known"] == [True, False]
    # New-item path: raw text + PNG + WAV (16 kHz) + brand + price of items never seen in training
    # give the same vector as the trained item tower computed from the cached features.
    got = np.array([p["embedding"] if isinstance(p, dict) else p for p in contract["answers"][3]["ok"]["predictions"]])
    np.testing.assert_allclose(got[:-1], contract["item_emb"][contract["pick"]], rtol=1e-3, atol=2e-4)
    # Nothing given: all masked, still a vector, of a cold item's length (the warm/cold model's cold-score factor).
    cold_norm = np.linalg.norm(contract["item_emb"][contract["pick"][0]])
    assert 0.0 < cold_norm <= max(RetrievalConfig().cold_scale) + 1e-5
    np.testing.assert_allclose(np.linalg.norm(got[-1]), cold_norm, rtol=1e-5)


def test_ranking_score_and_explain(contract) -> None:
    ranker, pick = contract["ranker"], contract["pick"]
    expected = tf.sigmoid(ranker({"user": np.array([1, 0]), "item": np.array([pick[0] + 1, 1])})).numpy()
    np.testing.assert_allclose(contract["answers"][4]["ok"]["predictions"], expected, rtol=1e-5, atol=1e-6)
    explained = contract["answers"][5]["ok"]["outputs"]
    scored = tf.sigmoid(ranker({"user": np.array([1, 6]), "item": np.array([pick[0] + 1, pick[1] + 1])})).numpy()
    np.testing.assert_allclose(explained["score"], scored, rtol=1e-5, atol=1e-6)
    assert set(explained) == {"score", "contribution_audio", "contribution_image", "contribution_text"}
    assert any(abs(v) > 1e-6 for k, vals in explained.items() if k != "score" for v in vals)


@pytest.mark.parametrize("index, pattern", [
    (6, r"k must be between 1 and 10"),
    (7, r"input k: JSON value \"five\" is not of expected type: int32"),
    (8, r"input user_id: JSON value 1 is not of expected type: string"),
    (9, r"image: bytes are not a PNG/JPEG/GIF/BMP image"),
    (10, r"Invalid PNG data"),  # a truncated PNG: the decoder's own error
    (11, r"instance 1 has keys \['k', 'user_id'\]"),
    (12, r"same shape"),
    (13, r"no_such_signature.*not found"),
    (14, r"exactly one of 'instances'"),
])
def test_bad_requests_fail_with_a_clear_error(contract, index: int, pattern: str) -> None:
    answer = contract["answers"][index]
    assert "error" in answer, answer
    assert re.search(pattern, answer["error"]), answer["error"]
