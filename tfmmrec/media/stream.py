"""Stream media files through tf.data in batches, turning unreadable files into masks.

A catalog of real files always has a few broken ones. Stopping a multi-hour encoding run
for one bad JPEG is wrong, and so is silently dropping it: a file that is missing or fails to
decode masks that modality for that item, and is counted and named in a ``DecodeReport``.

tf.data cannot catch an op's error per element, so decoding runs with ``ignore_errors`` and
every element carries its row index: a row that never comes out failed. Some decoders signal
a truncated file with OutOfRange, which ends a tf.data iteration as if the data were done; the
loop below notices the early end and resumes after the culprit, so no row is ever lost silently.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

DecodeFn = Callable[[tf.Tensor], tf.Tensor]


@dataclass
class DecodeReport:
    """Per modality: how many files were decoded, absent (no path), missing, undecodable, or in a
    format this environment cannot decode (``unsupported``: e.g. FLAC without ``tfmmrec[audio]``;
    such files are not corrupt and are tried again once a decoder is installed)."""

    modality: str
    total: int = 0
    decoded: int = 0
    absent: int = 0
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    unsupported_reason: str = ""

    def summary(self) -> str:
        text = (f"{self.modality}: {self.decoded}/{self.total} decoded, {self.absent} without a file, "
                f"{len(self.missing)} missing, {len(self.failed)} failed to decode")
        if self.unsupported:
            text += f", {len(self.unsupported)} {self.unsupported_reason or 'unsupported format'}"
        bad = self.missing[:3] + self.failed[:3] + self.unsupported[:3]
        return text + (f" (e.g. {', '.join(bad)})" if bad else "")


def stream_decoded(root: Path, paths: list[str], decode: DecodeFn, *, modality: str,
                   batch_size: int = 64) -> tuple[Iterator[tuple[np.ndarray, tf.Tensor]], DecodeReport]:
    """Yield ``(row_indices, decoded_batch)`` for every decodable file, in row order.

    Args:
      root: dataset root; ``paths`` are relative to it. An empty path means the item has no
        such modality (counted as ``absent``, not as an error).
      decode: bytes -> tensor of a fixed shape (so that rows batch).
    Returns:
      the iterator and its report, which is complete once the iterator is exhausted.
    """
    report = DecodeReport(modality, total=len(paths))
    todo: list[int] = []
    for row, rel in enumerate(paths):
        if not rel:
            report.absent += 1
            continue
        full = root / rel
        try:
            if os.path.getsize(full) > 0:
                todo.append(row)
                continue
        except OSError:
            pass
        report.missing.append(rel)
    return _decode_rows(root, paths, np.asarray(todo, np.int64), decode, batch_size, report), report


def _decode_rows(root: Path, paths: list[str], rows: np.ndarray, decode: DecodeFn, batch_size: int,
                 report: DecodeReport) -> Iterator[tuple[np.ndarray, tf.Tensor]]:
    full_paths = np.asarray([str(root / p) if p else "" for p in paths])
    start = 0
    while start < len(rows):
        todo = rows[start:]
        ds = tf.data.Dataset.from_tensor_slices((todo, full_paths[todo]))
        ds = ds.map(lambda row, path: (row, decode(tf.io.read_file(path))),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.ignore_errors().batch(batch_size).prefetch(2)
        last_seen = -1
        for got_rows, batch in ds:
            got_rows = got_rows.numpy()
            _count_failed(todo, last_seen, got_rows, paths, report)
            last_seen = int(np.searchsorted(todo, got_rows[-1]))
            report.decoded += len(got_rows)
            yield got_rows, batch
        if last_seen == len(todo) - 1:
            return
        # Stopped early: the row after the last one seen is the one that ended the iteration.
        culprit = last_seen + 1
        report.failed.append(paths[todo[culprit]])
        start += culprit + 1


def _count_failed(todo: np.ndarray, last_seen: int, got_rows: np.ndarray, paths: list[str],
                  report: DecodeReport) -> None:
    expected = todo[last_seen + 1: int(np.searchsorted(todo, got_rows[-1])) + 1]
    for row in np.setdiff1d(expected, got_rows, assume_unique=True):
        report.failed.append(paths[row])
