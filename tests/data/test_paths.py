"""The catalog path gate: only regular files inside the dataset root, of bounded size, are read."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tfmmrec.data.manifest import DatasetError
from tfmmrec.data.paths import PathRefused, manifest_file, read_bounded, read_in_root, resolve_in_root


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """root/ with a file, a subdirectory, symlinks in and out, a fifo; a secret outside the root."""
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(b"secret")
    os.symlink(tmp_path / "outside" / "secret.png", root / "images" / "out.png")
    os.symlink(root / "images" / "a.png", root / "images" / "in.png")
    os.symlink(tmp_path / "outside", root / "linkdir")
    os.mkfifo(root / "images" / "pipe.png")
    return root


def test_a_file_inside_the_root_is_resolved_and_read(tree: Path) -> None:
    assert resolve_in_root(tree, "images/a.png") == (tree / "images" / "a.png").resolve()
    assert read_in_root(tree, "images/a.png") == b"inside"
    assert read_in_root(tree, "images/../images/a.png") == b"inside"  # .. that stays inside is fine
    assert read_in_root(tree, "images/in.png") == b"inside"  # a symlink that stays inside too


@pytest.mark.parametrize("rel, reason", [
    ("../outside/secret.png", "outside the dataset root"),
    ("images/../../outside/secret.png", "outside the dataset root"),
    ("images/out.png", "outside the dataset root"),  # symlink leading out
    ("linkdir/secret.png", "outside the dataset root"),  # through a symlinked directory
    ("/etc/passwd", "absolute path"),
    ("/dev/zero", "absolute path"),
    ("images", "not a regular file"),
    ("images/pipe.png", "not a regular file"),
    (".", "not a regular file"),  # the root itself
    ("images/nothing.png", "file not found"),
    ("", "empty path"),
])
def test_refused_paths_name_their_reason(tree: Path, rel: str, reason: str) -> None:
    with pytest.raises(PathRefused) as err:
        resolve_in_root(tree, rel)
    assert err.value.reason == reason
    assert isinstance(err.value, DatasetError)


def test_dev_zero_through_a_symlink_inside_the_root_is_refused(tree: Path) -> None:
    os.symlink("/dev/zero", tree / "images" / "zero.png")
    with pytest.raises(PathRefused, match="outside the dataset root"):
        read_in_root(tree, "images/zero.png")


def test_size_bound_is_checked_before_reading_and_while_reading(tree: Path) -> None:
    (tree / "big.bin").write_bytes(b"x" * 1000)
    with pytest.raises(PathRefused) as err:
        resolve_in_root(tree, "big.bin", max_bytes=999)
    assert err.value.reason == "over limits.max_file_bytes" and "1000 > 999" in str(err.value)
    full = resolve_in_root(tree, "big.bin", max_bytes=1000)
    with pytest.raises(PathRefused, match="max_file_bytes"):  # the file grew after the check
        read_bounded(full, 500)
    assert read_bounded(full, 1000) == b"x" * 1000
    assert read_bounded(full, 10, limit=4) == b"xxxx"  # a header read needs no size bound


def test_a_fifo_is_never_opened_even_when_passed_straight_to_the_reader(tree: Path) -> None:
    """O_NONBLOCK: opening a fifo for reading with no writer would otherwise block forever."""
    with pytest.raises(PathRefused, match="not a regular file"):
        read_bounded(tree / "images" / "pipe.png", 100)


def test_a_symlink_swapped_in_after_the_check_is_not_followed(tree: Path) -> None:
    full = resolve_in_root(tree, "images/a.png")
    os.remove(full)
    os.symlink(tree.parent / "outside" / "secret.png", full)
    with pytest.raises(PathRefused, match="cannot be read"):
        read_bounded(full, 100)


def test_manifest_files_are_refused_naming_the_key(tree: Path) -> None:
    with pytest.raises(DatasetError, match=r"manifest key 'items' \(\.\./outside/secret\.png\): outside the dataset"):
        manifest_file(tree, "../outside/secret.png", "items")
    with pytest.raises(DatasetError, match=r"manifest key 'modalities\.clip\.npy' \(images\): not a regular file"):
        manifest_file(tree, "images", "modalities.clip.npy")
    with pytest.raises(DatasetError, match="manifest key 'users'.*expected a file name"):
        manifest_file(tree, ["a.csv"], "users")  # type: ignore[arg-type]
