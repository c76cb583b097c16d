"""The opt-in ScaNN index: its export needs ``import scann`` wherever it is loaded."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfmmrec import _deps_check
from tfmmrec.export.build import export_retrieval_model

try:  # scann is an optional extra with one build per TF minor (none yet for TF 2.21)
    _deps_check.require_scann()
    SCANN_MISSING = ""
except RuntimeError as e:
    SCANN_MISSING = str(e)

RELOAD = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    out = {}
    try:
        tf.saved_model.load(sys.argv[1])
        out["without_scann"] = "loaded"
    except Exception as e:  # the custom ops are not registered yet
        out["without_scann"] = f"{type(e).__name__}: {e}"[:300]
    import scann  # noqa: F401  registers the Scann>* ops
    model = tf.saved_model.load(sys.argv[1])
    users = json.loads(sys.argv[2])
    res = model.signatures["serving_default"](user_id=tf.constant(users), recent_item_ids=tf.constant([[""]]),
                                              exclude_item_ids=tf.constant([[""]]), k=tf.constant([10]))
    out["item_ids"] = [[b.decode() for b in row] for row in res["item_ids"].numpy()]
    out["modules"] = sorted({m.split(".")[0] for m in sys.modules} & {"tfmmrec", "tensorflow_recommenders"})
    print(json.dumps(out))
""")


def test_asking_for_scann_without_a_working_scann_says_what_to_install(trained_run, tmp_path: Path) -> None:
    if not SCANN_MISSING:
        pytest.skip("a working scann is installed here")
    data, model = trained_run.data, trained_run.models["multimodal"]
    item_emb = model.item_tower(np.arange(1, len(trained_run.item_ids) + 1)).numpy()
    with pytest.raises(RuntimeError, match=r"tfmmrec\[scann\]"):
        export_retrieval_model(tmp_path, "shop", model, data.user_ids, trained_run.item_ids, item_emb, 10,
                               index="scann")


@pytest.mark.skipif(bool(SCANN_MISSING), reason=f"needs the scann extra: {SCANN_MISSING[:200]}")
def test_scann_export_reloads_only_with_scann_imported(trained_run, tmp_path: Path) -> None:
    data, model = trained_run.data, trained_run.models["multimodal"]
    n = len(trained_run.item_ids)
    item_emb = model.item_tower(np.arange(1, n + 1)).numpy()
    path = export_retrieval_model(tmp_path, "shop", model, data.user_ids, trained_run.item_ids, item_emb, 10,
                                  index="scann")  # without the catalog: no content path, a smaller graph
    users = [str(u) for u in data.user_ids[:5]]
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run([sys.executable, "-c", RELOAD, str(path), json.dumps(users)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "Scann" in out["without_scann"] and "not registered" in out["without_scann"]
    assert out["modules"] == []
    # On a catalog this small ScaNN searches every leaf, so it must agree with brute force.
    queries = model.query_tower(np.arange(1, 6)).numpy()
    exact = np.argsort(-(queries @ item_emb.T), axis=1)[:, :10]
    overlap = np.mean([len(set(got) & {str(trained_run.item_ids[j]) for j in row}) / 10
                       for got, row in zip(out["item_ids"], exact)])
    assert overlap >= 0.9, overlap
