"""The evaluation protocols: held-out pairs, exclusions, warm/cold groups, sampled ranking negatives."""
from __future__ import annotations

import pandas as pd

from tfmmrec.data.interactions import encode_interactions
from tfmmrec.evaluate.protocol import ranking_eval_set


def test_ranking_eval_negatives_are_unseen_and_from_the_positives_group(log: pd.DataFrame) -> None:
    data = encode_interactions(log, num_items=10)
    inputs, labels, warm = ranking_eval_set(data, "test", negatives=50, seed=0, explicit=False)
    assert labels[:4].tolist() == [1, 1, 1, 1] and (labels[4:] == 0).all()
    seen = {(u, i) for s in (data.train, data.valid, data.test) for u, i in zip(s.user, s.item)}
    negatives = list(zip(inputs["user"][4:], inputs["item"][4:]))
    assert negatives and not any(pair in seen for pair in negatives)
    train_items = set(data.train.item)
    assert all((item in train_items) == is_warm for item, is_warm in zip(inputs["item"], warm))
    assert warm[:4].tolist() == [False, False, True, True]
    # Each positive's negatives are of its own kind: cold positives get cold negatives.
    cold_neg_users = set(inputs["user"][4:][~warm[4:]])
    assert cold_neg_users <= {1, 2}
