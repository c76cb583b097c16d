"""The embedding store on its own: whole chunks, failures remembered, compaction."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfmmrec.encoders.store import EmbeddingStore, file_hash, item_key


def test_chunks_are_whole_files_and_read_back_by_key(tmp_path: Path) -> None:
    section = EmbeddingStore(tmp_path).section("image", "enc-1")
    vectors = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    keys = [item_key(f"i{i}", f"h{i}") for i in range(10)]
    writer = section.writer(chunk_size=4)
    writer.add(keys[:6], vectors[:6])          # one chunk of 6 written (>= 4), nothing buffered
    writer.add(keys[6:8], vectors[6:8])        # buffered, below the chunk size
    assert len(section.chunks()) == 1          # what a kill at this point would leave
    writer.add(keys[8:], None, np.zeros(2, bool))  # two files that failed to decode
    assert len(section.chunks()) == 2
    assert not list(tmp_path.rglob("*.tmp"))

    wanted = [keys[7], "", keys[2], keys[9], item_key("new", "h")]
    found = section.lookup(wanted)
    assert found.found.tolist() == [True, False, True, True, False]
    assert found.ok.tolist() == [True, False, True, False, False]
    emb, mask = section.read(wanted)
    assert mask.tolist() == [True, False, True, False, False]
    np.testing.assert_array_equal(emb[0], vectors[7])
    np.testing.assert_array_equal(emb[2], vectors[2])
    assert not emb[[1, 3, 4]].any()


def test_compact_keeps_only_live_keys(tmp_path: Path) -> None:
    section = EmbeddingStore(tmp_path).section("text", "enc")
    with section.writer(chunk_size=2) as writer:
        writer.add(["a\0old", "b\0x", "c\0x"], np.eye(3, dtype=np.float32))
        writer.add(["a\0new"], np.full((1, 3), 7, np.float32))
    assert section.compact(["a\0new", "b\0x", "c\0x"]) == 1
    assert len(section.chunks()) == 1
    emb, mask = section.read(["a\0new", "a\0old", "c\0x"])
    assert mask.tolist() == [True, False, True]
    np.testing.assert_array_equal(emb[0], [7, 7, 7])
    np.testing.assert_array_equal(emb[2], [0, 0, 1])


def test_file_hash_follows_bytes_not_names_or_times(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"same")
    (tmp_path / "b.png").write_bytes(b"same")
    (tmp_path / "c.png").write_bytes(b"other")
    assert file_hash(tmp_path / "a.png") == file_hash(tmp_path / "b.png") != file_hash(tmp_path / "c.png")


def test_file_hash_never_blocks_on_a_fifo_nor_reads_past_its_bound(tmp_path: Path) -> None:
    import os

    from tfmmrec.data.paths import PathRefused

    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(PathRefused, match="not a regular file"):
        file_hash(tmp_path / "pipe")
    (tmp_path / "big").write_bytes(b"x" * 5000)
    with pytest.raises(PathRefused, match="max_file_bytes"):
        file_hash(tmp_path / "big", block=1024, max_bytes=4096)
    assert file_hash(tmp_path / "big", max_bytes=5000) == file_hash(tmp_path / "big")
