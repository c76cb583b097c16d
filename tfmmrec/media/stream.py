"""Stream media files through tf.data in batches, turning unreadable files into masks.

A catalog of real files always has a few broken ones. Stopping a multi-hour encoding run
for one bad JPEG is wrong, and so is silently dropping it: a file that is missing or fails to
decode masks that modality for that item, and is counted and named in a ``DecodeReport``.

tf.data cannot catch an op's error per element, so decoding runs with ``ignore_errors`` and
every element carries its row index: a row that never comes out failed. Some decoders signal
a truncated file with OutOfRange, which ends a tf.data iteration as if the data were done; the
loop below notices the early end and resumes after the culprit, so no row is ever lost silently.

Catalog files are untrusted: before tf.data sees a path it passes ``data.paths`` (inside the
dataset root, a regular file, at most ``limits.max_file_bytes``; nothing is opened otherwise)
and a header check (``media.headers``: pixel count, clip length, format). What fails there is
never decoded and is counted apart: *refused* (with its reason), *unsupported format* (WebP,
TIFF, MP3 ...: not a corrupt file, just one tfmmrec does not decode) or *missing* (an empty
file, a clip with no samples).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfmmrec.data.paths import DEFAULT_MAX_BYTES, PathRefused, read_bounded, resolve_in_root
from tfmmrec.media.compressed import INSTALL_HINT, available_decoder
from tfmmrec.media.headers import (
    DECODED_IMAGE_FORMATS,
    HEADER_BYTES,
    audio_format,
    gif_canvas,
    image_format,
    image_size,
    wav_info,
)

DecodeFn = Callable[[tf.Tensor], tf.Tensor]
#: header bytes, the checked file -> None (go ahead and decode) or (category, reason): category is
#: ``missing``, ``skipped`` (refused, e.g. over a limit), ``unsupported`` (reason: the format) or
#: ``failed``. A check that needs more than the header reads the file through ``read_bounded``.
Precheck = Callable[[bytes, Path], "tuple[str, str] | None"]
#: audio formats ``media.compressed`` turns into WAV when a decoder (soundfile, tensorflow-io) is installed
COMPRESSED_FORMATS = ("mp3", "flac", "ogg")


@dataclass
class DecodeReport:
    """Per modality: how many files were decoded, absent (no path), missing, refused, of an
    unsupported format or undecodable.

    ``skipped`` maps a reason ("outside the dataset root", "not a regular file", "over
    limits.max_file_bytes", ...) to the files refused for it (``ITEM (PATH)`` when the item ids
    are known); ``unsupported`` maps a format (``webp``, ``mp3``, ...) to its files.
    """

    modality: str
    total: int = 0
    decoded: int = 0
    absent: int = 0
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    unsupported: dict[str, list[str]] = field(default_factory=dict)

    def add(self, category: str, reason: str, entry: str) -> None:
        """Count one file that will not be decoded."""
        if category == "missing":
            self.missing.append(entry)
        elif category == "unsupported":
            self.unsupported.setdefault(reason, []).append(entry)
        elif category == "failed":
            self.failed.append(entry)
        else:
            self.skipped.setdefault(reason, []).append(entry)

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    @property
    def num_unsupported(self) -> int:
        return sum(len(v) for v in self.unsupported.values())

    def summary(self) -> str:
        text = (f"{self.modality}: {self.decoded}/{self.total} decoded, {self.absent} without a file, "
                f"{len(self.missing)} missing, {len(self.failed)} failed to decode")
        if self.unsupported:
            text += f", {self.num_unsupported} of an unsupported format (" + ", ".join(
                f"{fmt}: {len(v)}" for fmt, v in sorted(self.unsupported.items())) + ")"
        if self.skipped:
            text += f", {self.num_skipped} refused (" + "; ".join(
                f"{reason}: {len(v)}, e.g. {v[0]}" for reason, v in sorted(self.skipped.items())) + ")"
        bad = self.missing[:3] + self.failed[:3]
        return text + (f" (e.g. {', '.join(bad)})" if bad else "")


def image_precheck(max_pixels: int | None, max_bytes: int | None = DEFAULT_MAX_BYTES) -> Precheck:
    """Refuse what ``tf.io.decode_image`` cannot read (as *unsupported*) and images over
    ``max_pixels`` (an animated GIF: all its frames, which TF decodes)."""
    def check(header: bytes, full: Path) -> tuple[str, str] | None:
        fmt = image_format(header)
        if fmt is not None and fmt not in DECODED_IMAGE_FORMATS:
            return "unsupported", fmt
        dims = image_size(header)
        if max_pixels is None or dims is None:
            return None
        pixels = dims[0] * dims[1]
        if fmt == "gif" and pixels <= max_pixels:
            frames, width, height = gif_canvas(read_bounded(full, max_bytes))
            pixels = max(pixels, frames * width * height)
        return ("skipped", "over limits.max_image_pixels") if pixels > max_pixels else None
    return check


def audio_precheck(max_seconds: float | None) -> Precheck:
    """Refuse audio that is neither WAV nor a compressed format with a decoder installed (as
    *unsupported*), treat a clip with no samples as missing, and
    refuse clips longer than ``max_seconds`` by their header.

    The length is read from the WAV header here, before any decoder runs, so a clip over the
    limit is a counted refusal rather than a decoder failure.
    """
    def check(header: bytes, full: Path) -> tuple[str, str] | None:
        fmt = audio_format(header)
        if fmt in COMPRESSED_FORMATS and available_decoder() is not None:
            return None  # decoded outside the graph to WAV (media.compressed), bounded by the decoder
        if fmt is not None and fmt != "wav":
            return "unsupported", f"{fmt} ({INSTALL_HINT})" if fmt in COMPRESSED_FORMATS else fmt
        info = wav_info(header)
        if info is None:
            return None  # not a readable WAV header: the decoder fails it and it is counted as failed
        if not (info.channels and info.sample_rate and info.bits):
            return "failed", "invalid WAV header (0 channels, sample rate or bits)"
        if info.frames == 0:
            return "missing", "empty clip"
        if max_seconds is not None and info.seconds > max_seconds:
            return "skipped", "over limits.max_audio_seconds"
        return None
    return check


def check_media_file(root: Path, rel: str, precheck: Precheck | None = None,
                     max_bytes: int | None = DEFAULT_MAX_BYTES) -> tuple[Path | None, str, str]:
    """``(resolved path, "ok", "")`` for a file that may be decoded, else ``(None, category, reason)``
    (see :class:`DecodeReport`): every catalog media file passes here before anything reads it."""
    try:
        full = resolve_in_root(root, rel, max_bytes=max_bytes)
        if precheck is None:
            return full, "ok", ""
        header = read_bounded(full, rel=rel, limit=HEADER_BYTES)
    except PathRefused as err:
        category = "missing" if err.reason in ("file not found", "empty file") else "skipped"
        return None, category, err.reason
    if not header:
        return None, "missing", "empty file"
    try:
        verdict = precheck(header, full)
    except PathRefused as err:
        return None, "skipped", err.reason
    if verdict is not None:
        return None, verdict[0], verdict[1]
    return full, "ok", ""


def media_entry(rel: str, item: str | None) -> str:
    return f"{item} ({rel})" if item is not None else rel


def stream_decoded(root: Path, paths: list[str], decode: DecodeFn, *, modality: str, batch_size: int = 64,
                   precheck: Precheck | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES,
                   items: list[str] | None = None
                   ) -> tuple[Iterator[tuple[np.ndarray, tf.Tensor]], DecodeReport]:
    """Yield ``(row_indices, decoded_batch)`` for every decodable file, in row order.

    Args:
      root: dataset root; ``paths`` are relative to it. An empty path means the item has no
        such modality (counted as ``absent``, not as an error). A path outside the root, not a
        regular file or over ``max_bytes`` is never opened (``skipped``), nor is a file that
        ``precheck`` refuses from its header.
      decode: bytes -> tensor of a fixed shape (so that rows batch).
      items: item ids of ``paths``, to name them in the report.
    Returns:
      the iterator and its report, which is complete once the iterator is exhausted.
    """
    report = DecodeReport(modality, total=len(paths))
    todo: list[int] = []
    resolved = [""] * len(paths)
    for row, rel in enumerate(paths):
        if not rel:
            report.absent += 1
            continue
        full, category, reason = check_media_file(root, rel, precheck, max_bytes)
        if full is None:
            report.add(category, reason, rel if category in ("missing", "failed")
                       else media_entry(rel, items[row] if items else None))
            continue
        resolved[row] = str(full)
        todo.append(row)
    return _decode_rows(resolved, paths, np.asarray(todo, np.int64), decode, batch_size, report), report


def _decode_rows(full_paths: list[str], paths: list[str], rows: np.ndarray, decode: DecodeFn, batch_size: int,
                 report: DecodeReport) -> Iterator[tuple[np.ndarray, tf.Tensor]]:
    full = np.asarray(full_paths)
    start = 0
    while start < len(rows):
        todo = rows[start:]
        ds = tf.data.Dataset.from_tensor_slices((todo, full[todo]))
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
