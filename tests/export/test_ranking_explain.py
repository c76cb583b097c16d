"""The ranking export's ``explain``: what each modality adds to a score."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfmmrec.export.ranking import RankingServing
from tfmmrec.models.dcn import DCN


@pytest.mark.parametrize("kind", ["deepfm", "dcn"])
def test_a_contribution_is_the_score_change_when_the_item_lacks_that_modality(trained_run, kind: str) -> None:
    ranker, data = trained_run.models["ranking"], trained_run.data
    if kind == "dcn":  # same fields, DCN-v2's head (untrained weights: the algebra is what is checked)
        trained = ranker
        ranker = DCN.from_config({**trained.get_config(), "cross_layers": 2, "projection_dim": 0, "name": "dcn"})
        ranker({"user": np.arange(1, 4), "item": np.arange(1, 4)})
        ranker.table.set_weights(trained.table.get_weights())  # the catalog's features (masks included)
    serving = RankingServing(data.user_ids, trained_run.item_ids, ranker, binary=True)
    rows = np.array([0, 1, 2, 3, 4, 5])
    users, items = tf.constant(data.user_ids[rows].astype(str)), tf.constant(trained_run.item_ids[rows].astype(str))
    out = {k: v.numpy() for k, v in serving.explain(users, items).items()}
    np.testing.assert_allclose(out["score"], serving.score(users, items)["score"].numpy(), rtol=1e-6, atol=1e-7)

    # A copy of the ranker whose feature table says these items have no image: the real "absent" path.
    clone = type(ranker).from_config(ranker.get_config())
    batch = {"user": rows + 1, "item": rows + 1}
    clone(batch)
    clone.set_weights(ranker.get_weights())
    mask = clone.table.masks["image"].numpy()
    had_image = mask[rows + 1] > 0
    mask[rows + 1] = 0.0
    clone.table.masks["image"].assign(mask)
    without_image = tf.sigmoid(clone(batch, training=False)).numpy()
    np.testing.assert_allclose(out["contribution_image"], out["score"] - without_image, rtol=1e-4, atol=1e-6)
    assert np.all(out["contribution_image"][~had_image] == 0.0)  # nothing to take away
    assert np.any(np.abs(out["contribution_image"][had_image]) > 1e-5)
