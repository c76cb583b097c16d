"""The exports load and answer in a fresh process that imports nothing but TensorFlow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import tensorflow as tf

LOAD_AND_QUERY = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    retrieval_dir, ranking_dir = sys.argv[1], sys.argv[2]
    users, items = json.loads(sys.argv[3]), json.loads(sys.argv[4])
    out = {"signatures": {}}
    for name, path in (("retrieval", retrieval_dir), ("ranking", ranking_dir)):
        model = tf.saved_model.load(path)
        out["signatures"][name] = {
            key: {"inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_input_signature[1].items()},
                  "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_outputs.items()}}
            for key, fn in model.signatures.items()}
        if name == "retrieval":
            res = model.signatures["serving_default"](user_id=tf.constant(users))
            out["item_ids"] = [[b.decode() for b in row] for row in res["item_ids"].numpy()]
            out["scores"] = res["scores"].numpy().tolist()
            out["embedding"] = model.signatures["embed_query"](user_id=tf.constant(users))["embedding"].numpy().tolist()
        else:
            res = model.signatures["serving_default"](user_id=tf.constant(users), item_id=tf.constant(items))
            out["ranking_scores"] = res["score"].numpy().tolist()
    foreign = ("tfmmrec", "tensorflow_recommenders", "tf_keras", "tensorflow_hub")
    out["foreign_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in foreign)
    print(json.dumps(out))
""")


def query_fresh_process(retrieval: Path, ranking: Path, users: list[str], items: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # a plain TF process
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_QUERY, str(retrieval), str(ranking), json.dumps(users),
                           json.dumps(items)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_exports_answer_like_the_trained_models_in_a_fresh_process(trained_run) -> None:
    data, model, ranker = trained_run.data, trained_run.models["multimodal"], trained_run.models["ranking"]
    catalog = trained_run.item_ids
    users = [str(data.user_ids[0]), str(data.user_ids[5]), "no-such-user"]
    items = [str(catalog[0]), str(catalog[7]), "no-such-item"]
    out = query_fresh_process(trained_run.exports["retrieval"], trained_run.exports["ranking"], users, items)

    assert out["foreign_modules"] == []  # neither tfmmrec, TFRS, TF-Hub nor tf_keras is needed to serve
    sigs = out["signatures"]
    assert sigs["retrieval"]["serving_default"] == {
        "inputs": {"user_id": ["string", [None]]},
        "outputs": {"item_ids": ["string", [None, 10]], "scores": ["float32", [None, 10]]}}
    assert sigs["retrieval"]["embed_query"]["inputs"] == {"user_id": ["string", [None]]}
    assert sigs["ranking"]["serving_default"] == {
        "inputs": {"user_id": ["string", [None]], "item_id": ["string", [None]]},
        "outputs": {"score": ["float32", [None]]}}

    # Same answers as the trained Keras models, computed here from their towers.
    user_idx = np.array([1, 6, 0], np.int32)  # model indices: user_ids[i] -> i + 1; unknown -> 0
    query = model.query_tower(user_idx).numpy()
    np.testing.assert_allclose(out["embedding"], query, rtol=1e-5, atol=1e-6)
    item_emb = model.item_tower(np.arange(1, len(catalog) + 1)).numpy()
    scores = query @ item_emb.T
    top = np.argsort(-scores, axis=1)[:, :10]
    np.testing.assert_allclose(out["scores"], np.take_along_axis(scores, top, 1), rtol=1e-4, atol=1e-5)
    assert [row[:3] for row in out["item_ids"]] == [[str(catalog[j]) for j in row[:3]] for row in top]

    expected = tf.sigmoid(ranker({"user": user_idx, "item": np.array([1, 8, 0], np.int32)})).numpy()
    np.testing.assert_allclose(out["ranking_scores"], expected, rtol=1e-5, atol=1e-6)
    assert all(0.0 < s < 1.0 for s in out["ranking_scores"])
