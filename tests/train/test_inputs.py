"""Input pipelines: what the models are fed."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tfmmrec.data.interactions import encode_interactions, user_histories
from tfmmrec.train.inputs import batches_per_epoch, ranking_dataset, retrieval_dataset


def test_retrieval_batches_carry_each_items_probability(log: pd.DataFrame) -> None:
    data = encode_interactions(log, num_items=10)
    batch = next(iter(retrieval_dataset(data, batch_size=100, seed=0)))
    assert sorted(batch["item"].numpy().tolist()) == sorted(data.train.item.tolist())
    np.testing.assert_allclose(batch["item_prob"].numpy(), data.item_prob[batch["item"].numpy()])


def test_retrieval_epochs_are_fresh_permutations_of_the_training_pairs(log: pd.DataFrame) -> None:
    import tensorflow as tf

    data = encode_interactions(log, num_items=10)
    tf.random.set_seed(0)
    ds = retrieval_dataset(data, batch_size=3, seed=0)
    assert ds.cardinality().numpy() == 4  # 10 pairs: 3 + 3 + 3 + 1, known to Keras as steps per epoch
    pairs = lambda: [(u, i) for b in ds for u, i in zip(b["user"].numpy(), b["item"].numpy())]  # noqa: E731
    epochs = [pairs() for _ in range(4)]
    expected = sorted(zip(data.train.user, data.train.item))
    assert all(sorted(e) == expected for e in epochs)  # every pair once per epoch
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled between epochs


def test_one_endless_iterator_gives_every_pair_once_per_epoch_in_a_new_order(log: pd.DataFrame) -> None:
    """``train_retrieval`` feeds ``fit`` one iterator for all epochs (``steps_per_epoch`` batches
    each): every block of that many batches must be one whole epoch, and each block a new order."""
    data = encode_interactions(log, num_items=10)
    steps = batches_per_epoch(len(data.train), 3)
    assert steps == 4
    it = iter(retrieval_dataset(data, batch_size=3, seed=0, repeat=True))
    epochs = []
    for _ in range(4):
        batches = [next(it) for _ in range(steps)]
        assert [len(b["user"]) for b in batches] == [3, 3, 3, 1]  # an epoch ends with its partial batch
        epochs.append([(u, i) for b in batches for u, i in zip(b["user"].numpy(), b["item"].numpy())])
    expected = sorted(zip(data.train.user, data.train.item))
    assert all(sorted(e) == expected for e in epochs)
    assert len({tuple(e) for e in epochs}) == 4  # a fresh order every epoch
    again = iter(retrieval_dataset(data, batch_size=3, seed=0, repeat=True))
    assert [(u, i) for _ in range(steps) for b in [next(again)]
            for u, i in zip(b["user"].numpy(), b["item"].numpy())] == epochs[0]  # reproducible from the seed


def test_ranking_negatives_come_only_from_training_items(log: pd.DataFrame) -> None:
    data = encode_interactions(log, num_items=10)
    features, labels = [], []
    for x, y in ranking_dataset(data, batch_size=7, negatives=20, seed=0, explicit=False):
        features.append(x["item"].numpy())
        labels.append(y.numpy())
    items, labels = np.concatenate(features), np.concatenate(labels)
    assert (labels == 1).sum() == len(data.train) and (labels == 0).sum() == 20 * len(data.train)
    assert set(items[labels == 0]) <= set(data.train.item)  # cold items 9, 10 are never negatives


def test_histories_stay_aligned_with_their_pairs_when_shuffled() -> None:
    log = pd.DataFrame({"user_id": ["a", "a", "b", "a", "a", "b"], "item_idx": [0, 1, 2, 3, 4, 5],
                        "timestamp": [40, 10, 5, 30, 20, 6], "split": "train"})
    data = encode_interactions(log, num_items=6)
    per_interaction, _ = user_histories(data.train, data.num_users, length=2)
    expected = {int(item): history.tolist() for item, history in zip(data.train.item, per_interaction)}
    batch = next(iter(retrieval_dataset(data, batch_size=10, seed=0, history=per_interaction)))
    for item, history in zip(batch["item"].numpy(), batch["history"].numpy()):
        assert history.tolist() == expected[item]  # histories stay aligned with their pairs when shuffled
