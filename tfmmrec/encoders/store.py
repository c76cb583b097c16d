"""On-disk store of frozen item embeddings, keyed by item id + content hash + encoder id.

Encoding media is the expensive step, and with a frozen encoder an item's embedding depends
only on the encoder and the item's content, so each one is computed once:

- ``<store>/<modality>/<encoder_id>/`` holds the embeddings of one encoder (``encoder_id`` digests
  the handle, input size, pooling ..., so two encoders never mix), as chunk files of up to
  ``chunk_size`` items: ``keys`` (``item_id`` + NUL + content hash), ``embeddings`` and ``ok``
  (False: the file failed to decode, remembered so a broken file is not re-decoded every run).
- A chunk is written to a temporary name and renamed, so a run killed at any moment leaves
  only whole chunks: the next run reads them and encodes the rest (resume), and a changed item
  gets a new key, so only new or changed items are encoded again (incremental).
- Reading the index opens only the ``keys`` array of each chunk, and an encoding run holds at
  most one chunk in memory, so memory does not grow with the catalog.

Superseded entries (an item whose content changed) stay in their old chunk; ``compact``
rewrites a section keeping only the keys still in use.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfmmrec.data.paths import PathRefused, open_checked

CACHE_DIR_NAME = ".tfmmrec_cache"  # a dataset's embedding store: DATASET_ROOT/.tfmmrec_cache


def default_cache_dir(dataset_root: str | Path) -> Path:
    """Where a dataset's frozen embeddings are cached unless a run says otherwise."""
    return Path(dataset_root) / CACHE_DIR_NAME


KEY_SEP = "\0"


def content_hash(parts: Iterable[str]) -> str:
    """A short digest of strings (texts, or anything that defines content)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:20]


def file_hash(path: Path, block: int = 1 << 20, max_bytes: int | None = None) -> str:
    """A digest of a file's bytes: a copied or touched file keeps its key, an edited one does not.

    Opened through ``data.paths.open_checked`` (never follows a symlink, never blocks on a fifo,
    only a regular file) and read to at most ``max_bytes``: a file that grew past it is refused
    (``PathRefused``), so hashing can never read forever.
    """
    h = hashlib.sha256()
    seen = 0
    with open_checked(path, str(path)) as f:
        while chunk := f.read(block):
            seen += len(chunk)
            if max_bytes is not None and seen > max_bytes:
                raise PathRefused(str(path), "over limits.max_file_bytes", f"more than {max_bytes} bytes")
            h.update(chunk)
    return h.hexdigest()[:20]


def item_key(item_id: str, digest: str) -> str:
    return f"{item_id}{KEY_SEP}{digest}"


def file_fingerprints(root: Path, paths: list[str]) -> list[str]:
    """Path, size and mtime of each file (kept for callers of the earlier store API)."""
    out = []
    for rel in paths:
        try:
            st = os.stat(root / rel) if rel else None
            out.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}" if st else "")
        except OSError:
            out.append(f"{rel}:missing")
    return out


@dataclass
class Lookup:
    """Which of the requested keys the store has: ``found[i]``, and for those ``ok[i]`` (decoded)."""

    found: np.ndarray
    ok: np.ndarray


class StoreSection:
    """The embeddings of one modality under one encoder id."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def chunks(self) -> list[Path]:
        return sorted(self.directory.glob("chunk-*.npz")) if self.directory.is_dir() else []

    def index(self) -> dict[str, tuple[int, int]]:
        """key -> (chunk number in ``chunks()``, row); later chunks win."""
        out: dict[str, tuple[int, int]] = {}
        for c, path in enumerate(self.chunks()):
            with np.load(path) as data:
                for r, key in enumerate(data["keys"].tolist()):
                    out[key] = (c, r)
        return out

    def lookup(self, keys: list[str]) -> Lookup:
        """For each key ("" = item without this modality): stored? decoded?"""
        found = np.zeros(len(keys), bool)
        ok = np.zeros(len(keys), bool)
        index = self.index()
        chunks = self.chunks()
        oks = {}
        for i, key in enumerate(keys):
            hit = index.get(key) if key else None
            if hit is None:
                continue
            found[i] = True
            if hit[0] not in oks:
                with np.load(chunks[hit[0]]) as data:
                    oks[hit[0]] = data["ok"]
            ok[i] = bool(oks[hit[0]][hit[1]])
        return Lookup(found, ok)

    def read(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings ``[len(keys), dim]`` and a mask (stored and decoded); zeros elsewhere."""
        index = self.index()
        chunks = self.chunks()
        wanted: dict[int, list[tuple[int, int]]] = {}
        for i, key in enumerate(keys):
            hit = index.get(key) if key else None
            if hit is not None:
                wanted.setdefault(hit[0], []).append((i, hit[1]))
        emb: np.ndarray | None = None
        mask = np.zeros(len(keys), bool)
        for c, pairs in wanted.items():  # one chunk in memory at a time
            with np.load(chunks[c]) as data:
                vectors, ok = data["embeddings"], data["ok"]
                rows = np.array([p[0] for p in pairs])
                src = np.array([p[1] for p in pairs])
                good = ok[src]
                if not good.any():
                    continue
                if emb is None:
                    emb = np.zeros((len(keys), vectors.shape[1]), np.float32)
                emb[rows[good]] = vectors[src[good]]
                mask[rows[good]] = True
        if emb is None:  # nothing decodable: keep the modality with every item masked
            emb = np.zeros((len(keys), 1), np.float32)
        return emb, mask

    def writer(self, chunk_size: int = 1024) -> ChunkWriter:
        return ChunkWriter(self.directory, chunk_size)

    def compact(self, keep: Iterable[str]) -> int:
        """Rewrite the section with only the ``keep`` keys; returns how many entries were dropped."""
        keep_set = {k for k in keep if k}
        index = self.index()
        stale = len(index) - len(keep_set & set(index))
        if not stale:
            return 0
        old = self.chunks()
        live = sorted(keep_set & set(index))
        with self.writer(chunk_size=max(len(live), 1)) as w:
            for c, path in enumerate(old):
                with np.load(path) as data:
                    sel = [r for r, k in enumerate(data["keys"].tolist()) if k in keep_set and index[k] == (c, r)]
                    if sel:
                        w.add(data["keys"][sel].tolist(), data["embeddings"][sel] if data["embeddings"].shape[1]
                              else None, data["ok"][sel])
        for path in old:
            path.unlink()
        return stale


class ChunkWriter:
    """Buffers encoded rows and writes them as whole chunk files (atomic rename)."""

    def __init__(self, directory: Path, chunk_size: int) -> None:
        self.directory, self.chunk_size = directory, chunk_size
        self.keys: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.ok: list[np.ndarray] = []
        self.dim: int | None = None
        self.chunks_written = 0

    def add(self, keys: list[str], vectors: np.ndarray | None, ok: np.ndarray | None = None) -> None:
        """Rows for ``keys``; ``vectors`` ``None`` (or ``ok`` False) marks files that failed to decode."""
        n = len(keys)
        if vectors is not None:
            self.dim = vectors.shape[1]
        self.keys.extend(keys)
        self.vectors.append(np.asarray(vectors, np.float32) if vectors is not None else np.zeros((n, 0), np.float32))
        self.ok.append(np.ones(n, bool) if ok is None else np.asarray(ok, bool))
        if len(self.keys) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        if not self.keys:
            return
        dim = self.dim or 0
        rows = [v if v.shape[1] == dim else np.zeros((len(v), dim), np.float32) for v in self.vectors]
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"chunk-{time.time_ns():020d}-{os.getpid()}"
        tmp = self.directory / f".{name}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.array(self.keys, dtype=str), embeddings=np.concatenate(rows),
                     ok=np.concatenate(self.ok))
        os.replace(tmp, self.directory / f"{name}.npz")
        self.chunks_written += 1
        self.keys, self.vectors, self.ok = [], [], []

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None or exc[0] is KeyboardInterrupt:
            self.flush()


class EmbeddingStore:
    """A directory of ``StoreSection``s, one per (modality, encoder id)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def section(self, modality: str, encoder_id: str) -> StoreSection:
        return StoreSection(self.directory / modality / encoder_id)
