"""Interactions grouped by user row (CSR), as both evaluation paths read them."""
from __future__ import annotations

import numpy as np

from tfmmrec.data.per_user import rows_per_user


def test_each_user_row_gets_its_sorted_items_and_users_without_any_get_none() -> None:
    indptr, items = rows_per_user(np.array([2, 0, 2, 2]), np.array([7, 3, 1, 7]), num_user_rows=4)
    assert indptr.tolist() == [0, 1, 1, 4, 4]
    assert [items[indptr[u]:indptr[u + 1]].tolist() for u in range(4)] == [[3], [], [1, 7, 7], []]


def test_unique_keeps_each_user_item_pair_once() -> None:
    indptr, items = rows_per_user(np.array([2, 2, 2]), np.array([7, 1, 7]), num_user_rows=3, unique=True)
    assert indptr.tolist() == [0, 0, 0, 2] and items.tolist() == [1, 7]
    empty_ptr, empty = rows_per_user(np.zeros(0, int), np.zeros(0, int), num_user_rows=2, unique=True)
    assert empty_ptr.tolist() == [0, 0, 0] and len(empty) == 0
