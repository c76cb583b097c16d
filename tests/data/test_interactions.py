"""Interactions as model indices: the id mapping, item frequencies and users' histories."""
from __future__ import annotations

import pandas as pd
import pytest

from tfmmrec.data.interactions import encode_interactions, user_histories


def test_ids_map_to_model_indices_and_frequencies(log: pd.DataFrame) -> None:
    data = encode_interactions(log, num_items=10)
    assert data.user_ids.tolist() == ["a", "b"]  # vocabulary = users with training data
    assert data.test.user.tolist() == [1, 2, 2, 0]  # unknown user -> 0
    assert data.test.item.tolist() == [9, 10, 2, 1]  # dataset row + 1
    assert data.item_prob[3] == pytest.approx(2 / 10)  # row 2 appears twice among 10 training pairs
    assert data.item_prob[1:9].sum() == pytest.approx(1.0)  # rows 0..7 are all the training items
    assert (data.item_prob > 0).all()  # never log(0) in the logQ correction


def test_histories_hold_only_earlier_items_never_the_target() -> None:
    """Per interaction: the user's items before it in time (log order breaks no ties here), left-padded;
    per user: their last items. Timestamps, not file order, decide what came before."""
    log = pd.DataFrame({"user_id": ["a", "a", "b", "a", "a", "b"], "item_idx": [0, 1, 2, 3, 4, 5],
                        "timestamp": [40, 10, 5, 30, 20, 6], "split": "train"})
    data = encode_interactions(log, num_items=6)
    per_interaction, per_user = user_histories(data.train, data.num_users, length=2)
    # user a in time order: item rows 1 (t10), 4 (t20), 3 (t30), 0 (t40) -> indices 2, 5, 4, 1
    expected = {1: [5, 4], 2: [0, 0], 4: [2, 5], 5: [0, 2], 3: [0, 0], 6: [0, 3]}
    for item, history in zip(data.train.item, per_interaction):
        assert history.tolist() == expected[item]
        assert item not in history
    assert per_user.tolist() == [[0, 0], [4, 1], [3, 6]]  # row 0: the unknown user has none


def test_histories_of_others_draw_from_the_whole_timeline_never_the_target() -> None:
    """``sampling="others"`` (random and cold-start splits): any of the user's other items, earlier
    or later; a user with no more other items than the length gets each once; per user, distinct
    items of theirs; the same seed draws the same histories."""
    n_a = 12  # user a: 12 items in time order, user b: 3
    log = pd.DataFrame({"user_id": ["a"] * n_a + ["b"] * 3, "item_idx": list(range(n_a + 3)),
                        "timestamp": list(range(n_a)) + [0, 1, 2], "split": "train"})
    data = encode_interactions(log, num_items=n_a + 3)
    length = 4
    per_interaction, per_user = user_histories(data.train, data.num_users, length, sampling="others", seed=3)
    users = data.train.user
    items_of = {u: set(data.train.item[users == u].tolist()) for u in set(users.tolist())}
    later_seen = False
    for user, item, history in zip(users, data.train.item, per_interaction):
        drawn = [h for h in history.tolist() if h]
        assert item not in drawn and set(drawn) <= items_of[user] - {item}
        if len(items_of[user]) - 1 <= length:
            assert history.tolist() == [0] * (length - len(drawn)) + drawn and len(set(drawn)) == len(drawn)
            assert set(drawn) == items_of[user] - {item}
        later_seen |= any(h > item for h in drawn)  # item indices follow time here
    assert later_seen
    for user, row in enumerate(per_user[1:], start=1):
        drawn = [h for h in row.tolist() if h]
        assert len(drawn) == min(length, len(items_of[user])) == len(set(drawn)) and set(drawn) <= items_of[user]
    again = user_histories(data.train, data.num_users, length, sampling="others", seed=3)
    assert (again[0] == per_interaction).all() and (again[1] == per_user).all()
    with pytest.raises(ValueError, match="history sampling"):
        user_histories(data.train, data.num_users, length, sampling="recent")
