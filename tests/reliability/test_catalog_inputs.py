"""Untrusted catalogs: every kind of bad manifest, table, vector file and media file ends in a
clear error naming the file/key/row/field, or a counted skip naming the item and the reason;
nothing outside the dataset root is read and nothing hangs.

Each case builds its input itself, in a temporary directory, on a tiny hand-made catalog (six
items with real PNG and WAV files). Loader cases call ``load_dataset`` in-process; the media
cases share one ``encode_catalog`` run over a catalog where each item carries one bad file;
a few cases run the real CLI in a subprocess with a timeout.
"""
from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from tests.media_files import TINY_GIF, bmp_bytes, gif_animation, png_header_only
from tfmmrec.config import LimitsConfig
from tfmmrec.data.loader import load_dataset
from tfmmrec.data.manifest import DatasetError
from tfmmrec.media.compressed import available_decoder

REPO = Path(__file__).resolve().parents[2]
N_ITEMS = 6


# --- building blocks --------------------------------------------------------------------------

def png_bytes(h: int = 8, w: int = 8, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return tf.io.encode_png(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).numpy()


def wav_bytes(seconds: float = 0.25, rate: int = 16000) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.sin(np.arange(int(rate * seconds)) / 5) * 8000).astype(np.int16).tobytes())
    return buf.getvalue()


def base_catalog(root: Path, **manifest: object) -> Path:
    """Six items with a title, a PNG and a WAV each; two users; a users table."""
    (root / "media").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(N_ITEMS):
        (root / "media" / f"{i}.png").write_bytes(png_bytes(seed=i))
        (root / "media" / f"{i}.wav").write_bytes(wav_bytes())
        items.append({"item_id": f"i{i}", "title": f"item {i}", "brand": "ab"[i % 2], "price": float(i),
                      "image_path": f"media/{i}.png", "audio_path": f"media/{i}.wav"})
    pd.DataFrame(items).to_csv(root / "items.csv", index=False)
    inter = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u1", "u2"],
                          "item_id": ["i0", "i1", "i2", "i3", "i4", "i5"],
                          "timestamp": [1, 2, 3, 4, 5, 6]})
    inter.to_csv(root / "interactions.csv", index=False)
    pd.DataFrame({"user_id": ["u1", "u2"], "age": [30, 40]}).to_csv(root / "users.csv", index=False)
    raw = {"name": "tiny", "items": "items.csv", "interactions": "interactions.csv", "users": "users.csv",
           "timestamp": "timestamp",
           "modalities": {"text": {"kind": "text", "columns": ["title"]},
                          "image": {"kind": "image", "column": "image_path"},
                          "audio": {"kind": "audio", "column": "audio_path"}},
           "categorical": ["brand"], "numeric": ["price"]}
    raw.update(manifest)
    write_manifest(root, raw)
    return root


def write_manifest(root: Path, raw: object) -> None:
    (root / "manifest.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def edit_manifest(root: Path, **changes: object) -> None:
    raw = yaml.safe_load((root / "manifest.yaml").read_text())
    raw.update(changes)
    write_manifest(root, raw)


def edit_table(root: Path, name: str, change: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
    df = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    out = change(df)
    (df if out is None else out).to_csv(root / name, index=False)


def set_cell(name: str, column: str, row: int, value: object) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        def change(df: pd.DataFrame) -> None:
            df[column] = df[column].astype(object)
            df.loc[row, column] = value
        edit_table(root, name, change)
    return setup


def parquet_items(change: Callable[[pd.DataFrame], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        df = pd.read_csv(root / "items.csv", dtype={"item_id": object}, keep_default_na=False)
        change(df)
        df.to_parquet(root / "items.parquet", index=False)
        edit_manifest(root, items="items.parquet")
    return setup


def parquet_interactions(change: Callable[[pd.DataFrame], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        df = pd.read_csv(root / "interactions.csv", dtype={"user_id": object, "item_id": object})
        change(df)
        df.to_parquet(root / "interactions.parquet", index=False)
        edit_manifest(root, interactions="interactions.parquet")
    return setup


def vector_npy(make: Callable[[Path], None], name: str = "vec.npy") -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        make(root / name)
        raw = yaml.safe_load((root / "manifest.yaml").read_text())
        raw["modalities"]["vec"] = {"kind": "vector", "npy": name}
        write_manifest(root, raw)
    return setup


def vector_parquet(cells: list[object], name: str = "vec.parquet", ids: list[object] | None = None
                   ) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        table = pd.DataFrame({"item_id": ids or [f"i{i}" for i in range(len(cells))], "vector": cells})
        if name.endswith(".parquet"):
            table.to_parquet(root / name, index=False)
        else:
            table.to_csv(root / name, index=False)
        raw = yaml.safe_load((root / "manifest.yaml").read_text())
        raw["modalities"]["vec"] = {"kind": "vector", "parquet": name}
        write_manifest(root, raw)
    return setup


def outside_file(rel_key: str) -> Callable[[Path], None]:
    """Point manifest key ``rel_key`` at a copy of the items table outside the root."""
    def setup(root: Path) -> None:
        outside = root.parent / "outside"
        outside.mkdir(exist_ok=True)
        (outside / "t.csv").write_bytes((root / "items.csv").read_bytes())
        edit_manifest(root, **{rel_key: "../outside/t.csv"})
    return setup


def symlinked_out(key: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        outside = root.parent / "outside"
        outside.mkdir(exist_ok=True)
        (outside / "t.csv").write_bytes((root / "interactions.csv").read_bytes())
        os.symlink(outside / "t.csv", root / "link.csv")
        edit_manifest(root, **{key: "link.csv"})
    return setup


def fifo_table(key: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        os.mkfifo(root / "pipe.csv")
        edit_manifest(root, **{key: "pipe.csv"})
    return setup


def modalities(**extra: object) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        raw = yaml.safe_load((root / "manifest.yaml").read_text())
        raw["modalities"].update(extra)
        write_manifest(root, raw)
    return setup


def write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / name).write_bytes(data)


def chain(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        for step in steps:
            step(root)
    return setup


@pytest.fixture()
def no_hang() -> None:
    """Fail instead of hanging forever if anything blocks on a fifo or reads /dev/zero."""
    def expired(*_: object) -> None:
        raise TimeoutError("the test hung: something opened a fifo or read an endless file")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- manifests, tables and vector files: a clear error naming the file, key, row or field ------

LOAD_ERRORS: dict[str, tuple[Callable[[Path], None], str]] = {
    # manifests
    "manifest: modalities as a list": (lambda r: edit_manifest(r, modalities=["text", "image"]),
                                       r"key 'modalities' must be a mapping"),
    "manifest: items as a number": (lambda r: edit_manifest(r, items=5), r"key 'items' must be a non-empty string"),
    "manifest: categorical as a string": (lambda r: edit_manifest(r, categorical="brand"),
                                          r"key 'categorical' must be a list of column names, e.g. \['brand'\]"),
    "manifest: numeric as a mapping": (lambda r: edit_manifest(r, numeric={"price": 1}),
                                       r"key 'numeric' must be a list of column names"),
    "manifest: name escapes": (lambda r: edit_manifest(r, name="../../../somewhere"),
                               r"key 'name' must be a plain name"),
    "manifest: name is ..": (lambda r: edit_manifest(r, name=".."), r"key 'name' must be a plain name"),
    "manifest: name absolute": (lambda r: edit_manifest(r, name="/tmp/x"), r"key 'name' must be a plain name"),
    "manifest: name not a string": (lambda r: edit_manifest(r, name=["a"]), r"key 'name' must be a non-empty string"),
    "manifest: top level a list": (lambda r: write_manifest(r, ["items.csv"]), r"expected a mapping at the top level"),
    "manifest: not YAML": (lambda r: (r / "manifest.yaml").write_text("items: [unclosed\n"), r"not valid YAML"),
    "manifest: binary garbage": (lambda r: (r / "manifest.yaml").write_bytes(b"\xff\xfe\x00garbage"),
                                 r"manifest.yaml"),
    "manifest: modality a string": (modalities(text="title"), r"modality 'text' must be a mapping"),
    "manifest: unknown modality kind": (modalities(video={"kind": "video", "column": "x"}), r"kind must be one of"),
    "manifest: text columns a string": (modalities(text={"kind": "text", "columns": "title"}),
                                        r"modality 'text': key 'columns' must be a list of column names"),
    "manifest: modality name with a slash": (modalities(**{"a/b": {"kind": "text", "columns": ["title"]}}),
                                             r"modality name must be a plain name"),
    "manifest: unknown key": (lambda r: edit_manifest(r, timestmap="ts"), r"unknown keys \['timestmap'\]"),
    "manifest: rating and label": (lambda r: edit_manifest(r, rating="timestamp", label="timestamp"),
                                   r"give 'rating' .* or 'label' .*not both"),
    "manifest: a column both categorical and numeric": (lambda r: edit_manifest(r, categorical=["brand", "price"]),
                                                        r"\['price'\] named as more than one of"),
    "manifest: a modality named like a field": (modalities(brand={"kind": "text", "columns": ["title"]}),
                                                r"\['brand'\] named as more than one of"),
    "manifest: column listed twice": (lambda r: edit_manifest(r, numeric=["price", "price"]), r"lists a column twice"),
    # table paths
    "path: items outside the root": (outside_file("items"), r"manifest key 'items' \(\.\./outside/t\.csv\): outside"),
    "path: items absolute": (lambda r: edit_manifest(r, items=str(r / "items.csv")),
                             r"manifest key 'items' .*absolute path"),
    "path: interactions symlinked out": (symlinked_out("interactions"),
                                         r"manifest key 'interactions' \(link\.csv\): outside the dataset root"),
    "path: users a fifo": (fifo_table("users"), r"manifest key 'users' \(pipe\.csv\): not a regular file"),
    "path: items a directory": (lambda r: edit_manifest(r, items="media"), r"manifest key 'items' .*not a regular"),
    "path: items /dev/zero via ..": (lambda r: edit_manifest(r, items="../" * 30 + "dev/zero"),
                                     r"manifest key 'items' .*outside the dataset root"),
    "path: interactions missing": (lambda r: edit_manifest(r, interactions="nope.csv"),
                                   r"manifest key 'interactions' \(nope\.csv\): file not found"),
    "table: unsupported suffix": (chain(write("inter.txt", b"user_id,item_id\n"),
                                        lambda r: edit_manifest(r, interactions="inter.txt")),
                                  r"inter\.txt: unsupported table format"),
    # tables
    "table: empty interactions": (lambda r: (r / "interactions.csv").write_text("user_id,item_id,timestamp\n"),
                                  r"interactions\.csv: the interactions table has no rows"),
    "table: zero-byte interactions": (lambda r: (r / "interactions.csv").write_bytes(b""),
                                      r"interactions\.csv: cannot be read as a table"),
    "table: empty items": (lambda r: (r / "items.csv").write_text(
        "item_id,title,brand,price,image_path,audio_path\n"), r"items\.csv: the items table has no rows"),
    "table: binary interactions": (lambda r: (r / "interactions.csv").write_bytes(os.urandom(3000)),
                                   r"interactions\.csv"),
    "table: corrupt parquet": (chain(write("inter.parquet", b"PAR1" + os.urandom(200) + b"PAR1"),
                                     lambda r: edit_manifest(r, interactions="inter.parquet")),
                               r"inter\.parquet: cannot be read as a table"),
    "table: split without test rows": (lambda r: edit_table(r, "interactions.csv", lambda d: d.assign(split="train")),
                                       r"column 'split' has no 'test' rows"),
    "table: split without train rows": (lambda r: edit_table(r, "interactions.csv",
                                                             lambda d: d.assign(split="test")),
                                        r"column 'split' has no 'train' rows"),
    "table: unknown split value": (lambda r: edit_table(r, "interactions.csv", lambda d: d.assign(split="TRAIN")),
                                   r"column 'split' must be one of"),
    "table: null item id in parquet": (parquet_items(lambda d: d.__setitem__("item_id", [None, *d["item_id"][1:]])),
                                       r"items\.parquet: column 'item_id' has null ids in row\(s\) 1"),
    "table: null user id in parquet": (parquet_interactions(
        lambda d: d.__setitem__("user_id", [*d["user_id"][:2], None, *d["user_id"][3:]])),
        r"interactions\.parquet: column 'user_id' has null ids in row\(s\) 3"),
    "table: duplicate user ids": (lambda r: (r / "users.csv").write_text("user_id,age\nu1,3\nu2,4\nu1,5\n"),
                                  r"users\.csv: duplicate user ids \['u1'\] in rows 2, 4"),
    "table: duplicate item ids": (set_cell("items.csv", "item_id", 3, "i0"), r"duplicate item ids \['i0'\]"),
    "table: empty item id": (set_cell("items.csv", "item_id", 2, ""), r"items\.csv: empty item id .*row\(s\) 4"),
    "table: blank user id": (set_cell("interactions.csv", "user_id", 1, "  "), r"empty user id .*row\(s\) 3"),
    "table: label 5": (chain(lambda r: edit_table(r, "interactions.csv", lambda d: d.assign(lab=[1, 0, 1, 5, 0, 1])),
                             lambda r: edit_manifest(r, label="lab")),
                       r"column 'lab' must be 0 or 1 \(binary feedback\); row 5 has 5"),
    "table: label -3": (chain(lambda r: edit_table(r, "interactions.csv", lambda d: d.assign(lab=[1, 0, -3, 1, 0, 1])),
                              lambda r: edit_manifest(r, label="lab")),
                        r"column 'lab' must be 0 or 1 .*row 4 has -3"),
    "table: negative weight": (chain(lambda r: edit_table(r, "interactions.csv",
                                                          lambda d: d.assign(w=[1, 1, -2, 1, 1, 1])),
                                     lambda r: edit_manifest(r, weight="w")),
                               r"column 'w' must be a finite number >= 0 .*row 4 has -2"),
    "table: weight not a number": (chain(lambda r: edit_table(r, "interactions.csv",
                                                              lambda d: d.assign(w=["1", "x", "1", "1", "1", "1"])),
                                         lambda r: edit_manifest(r, weight="w")),
                                   r"column 'w' must be .*row 3 has 'x'"),
    "table: infinite rating": (chain(lambda r: edit_table(r, "interactions.csv",
                                                          lambda d: d.assign(s=["1", "inf", "2", "3", "4", "5"])),
                                     lambda r: edit_manifest(r, rating="s")), r"column 's' must be numeric; row 3"),
    "table: non-numeric price": (set_cell("items.csv", "price", 1, "cheap"),
                                 r"items\.csv: column 'price' must be numeric; row 3 has 'cheap'"),
    "table: missing column": (lambda r: edit_manifest(r, numeric=["price", "weight_kg"]),
                              r"items\.csv: missing column\(s\) \['weight_kg'\]"),
    "table: unknown items": (set_cell("interactions.csv", "item_id", 0, "ghost"),
                             r"1 interactions reference item ids not in items\.csv \(first: 'ghost' in row 2\)"),
    "table: interactions without item ids": (lambda r: (r / "interactions.csv").write_text("user_id,timestamp\nu1,1\n"),
                                             r"interactions\.csv: missing column\(s\) \['item_id'\]"),
    "table: NUL in an item id": (parquet_items(lambda d: d.__setitem__("item_id", ["i0", "i\x00x", *d["item_id"][2:]])),
                                 r"items\.parquet: item id with a control character .*row\(s\) 3"),
    "table: newline in a user id": (set_cell("users.csv", "user_id", 1, "u\n2"),
                                    r"users\.csv: user id with a control character .*row\(s\) 3"),
    "table: numeric column of lists in parquet": (parquet_items(lambda d: d.__setitem__("price", [[1.0]] * len(d))),
                                                  r"items\.parquet: column 'price' must be numeric"),
    "table: timestamps as text": (set_cell("interactions.csv", "timestamp", 0, "2020-01-01"),
                                  r"column 'timestamp' must be numeric; row 2 has '2020-01-01'"),
    "table: latin-1 bytes": (lambda r: (r / "users.csv").write_bytes("user_id,age\nu1,3\nu2,4\nJos\xe9,5\n".encode(
        "latin-1")), r"users\.csv: cannot be read as a table"),
    "table: ragged CSV rows": (lambda r: (r / "users.csv").write_text("user_id,age\nu1,3\nu2,4,5,6\n"),
                               r"users\.csv: cannot be read as a table.*Expected 2 fields in line 3"),
    "manifest: python tag": (lambda r: (r / "manifest.yaml").write_text("items: !!python/object:os.system x\n"),
                             r"not valid YAML"),
    # vector files
    "vectors: object-dtype npy": (vector_npy(lambda p: np.save(p, np.array([{"a": 1}] * N_ITEMS, dtype=object),
                                                               allow_pickle=True)),
                                  r"vec\.npy: vector file of modality 'vec' cannot be read"),
    "vectors: string npy": (vector_npy(lambda p: np.save(p, np.array([["a", "b"]] * N_ITEMS))),
                            r"vec\.npy: vector file of modality 'vec' must hold numbers, got dtype <U1"),
    "vectors: npz named npy": (vector_npy(lambda p: np.savez(open(p, "wb"), x=np.zeros((N_ITEMS, 2)))),
                               r"vec\.npy: vector file of modality 'vec' is not a \.npy array file"),
    "vectors: pickle named npy": (vector_npy(lambda p: p.write_bytes(pickle.dumps(np.zeros((N_ITEMS, 2))))),
                                  r"is not a \.npy array file"),
    "vectors: 1-D npy": (vector_npy(lambda p: np.save(p, np.zeros(N_ITEMS, np.float32))),
                         r"expected a 2-D array with one row per item \(6 rows\).*shape \(6,\)"),
    "vectors: wrong rows": (vector_npy(lambda p: np.save(p, np.zeros((N_ITEMS + 1, 3), np.float32))),
                            r"6 rows.*shape \(7, 3\)"),
    "vectors: zero columns": (vector_npy(lambda p: np.save(p, np.zeros((N_ITEMS, 0), np.float32))),
                              r"at least one column"),
    "vectors: truncated npy": (vector_npy(lambda p: (np.save(p, np.zeros((N_ITEMS, 64), np.float32)),
                                                     p.write_bytes(p.read_bytes()[:200]))),
                               r"vec\.npy: vector file of modality 'vec' cannot be read"),
    "vectors: npy outside the root": (chain(lambda r: np.save(r.parent / "v.npy", np.zeros((N_ITEMS, 2))),
                                            modalities(vec={"kind": "vector", "npy": "../v.npy"})),
                                      r"manifest key 'modalities\.vec\.npy' \(\.\./v\.npy\): outside the dataset root"),
    "vectors: table as CSV": (vector_parquet([[1.0, 2.0]] * N_ITEMS, name="vec.csv"),
                              r"'modalities\.vec\.parquet' \(vec\.csv\): a vector table must be a \.parquet file"),
    "vectors: parquet strings": (vector_parquet(["[1, 2]"] * N_ITEMS),
                                 r"column 'vector' of modality 'vec', row 1: expected a list of numbers, got str"),
    "vectors: parquet nested lists": (vector_parquet([[[1.0, 2.0], [3.0, 4.0]]] * N_ITEMS),
                                      r"row 1: expected a flat list of numbers"),
    "vectors: parquet ragged": (vector_parquet([[1.0, 2.0]] * (N_ITEMS - 1) + [[1.0]]),
                                r"vectors of modality 'vec' have different lengths \[1, 2\]"),
    "vectors: parquet numbers": (vector_parquet([1.5] * N_ITEMS), r"row 1: expected a list of numbers, got float"),
    "vectors: parquet duplicate ids": (vector_parquet([[1.0]] * 3, ids=["i0", "i1", "i0"]),
                                       r"vec\.parquet: duplicate item ids \['i0'\]"),
    "vectors: parquet dicts": (vector_parquet([{"a": 1.0}] * N_ITEMS), r"row 1: expected a list of numbers"),
    "vectors: complex npy": (vector_npy(lambda p: np.save(p, np.zeros((N_ITEMS, 2), np.complex64))),
                             r"must hold numbers, got dtype complex64"),
    "vectors: 3-D npy": (vector_npy(lambda p: np.save(p, np.zeros((N_ITEMS, 2, 2), np.float32))),
                         r"expected a 2-D array .*shape \(6, 2, 2\)"),
}


@pytest.mark.parametrize("case", sorted(LOAD_ERRORS))
def test_bad_catalog_is_refused_naming_what_is_wrong(tmp_path: Path, case: str, no_hang: None) -> None:
    setup, message = LOAD_ERRORS[case]
    root = base_catalog(tmp_path / "data")
    setup(root)
    with pytest.raises(DatasetError, match=message):
        load_dataset(root)


def test_the_base_catalog_itself_loads(tmp_path: Path) -> None:
    """The control for every case above: without the fault, the catalog is fine."""
    ds = load_dataset(base_catalog(tmp_path / "data"))
    assert ds.num_items == N_ITEMS and len(ds.interactions) == 6 and ds.manifest.categorical == ["brand"]


def test_bom_and_parquet_timestamps_are_read_as_users_mean_them(tmp_path: Path) -> None:
    root = base_catalog(tmp_path / "data")
    (root / "users.csv").write_bytes(b"\xef\xbb\xbfuser_id,age\nu1,3\nu2,4\n")  # Excel's UTF-8 BOM
    inter = pd.read_csv(root / "interactions.csv", dtype=str)
    inter["timestamp"] = pd.date_range("2024-01-01", periods=len(inter), freq="h", tz="Europe/Berlin")
    inter.to_parquet(root / "interactions.parquet", index=False)
    edit_manifest(root, interactions="interactions.parquet")
    ds = load_dataset(root)
    assert list(ds.users["user_id"]) == ["u1", "u2"]
    assert ds.interactions["timestamp"].is_monotonic_increasing and ds.interactions["timestamp"].dtype.kind in "iu"


def test_all_training_weights_zero_is_a_clear_error(tmp_path: Path) -> None:
    from tfmmrec.config import RunConfig
    from tfmmrec.train.prepare import prepare_data

    root = base_catalog(tmp_path / "data")
    edit_table(root, "interactions.csv", lambda d: d.assign(w=0))
    edit_manifest(root, weight="w")
    with pytest.raises(DatasetError, match="no training interactions after the split"):
        prepare_data(root, RunConfig())


def test_valid_weights_and_labels_are_accepted(tmp_path: Path) -> None:
    root = base_catalog(tmp_path / "data")
    edit_table(root, "interactions.csv", lambda d: d.assign(w=[1, 0, 2.5, 1, 1, 1], lab=[1, 0, 1, 1, 0, 1]))
    edit_manifest(root, weight="w", label="lab")
    ds = load_dataset(root)
    assert ds.interactions["weight"].tolist() == [1, 0, 2.5, 1, 1, 1]
    assert set(ds.interactions["label"]) == {0, 1}


# --- media: a counted skip naming the item and the reason; nothing outside the root is read -----

LIMITS = LimitsConfig(max_file_bytes=150_000, max_image_pixels=1_000_000, max_audio_seconds=2.0, max_text_chars=60)

#: case -> (item column, file setup: root -> relative path, expected category, expected reason)
MEDIA_CASES: dict[str, tuple[str, Callable[[Path], str], str, str]] = {}


def media_case(name: str, column: str, category: str, reason: str) -> Callable:
    def register(setup: Callable[[Path], str]) -> Callable[[Path], str]:
        MEDIA_CASES[name] = (column, setup, category, reason)
        return setup
    return register


def _outside(root: Path, name: str, data: bytes) -> Path:
    """A file outside the root whose bytes appear nowhere inside it."""
    data = data[:-1] + bytes([(data[-1] + 1) % 256]) if name.endswith(".wav") else png_bytes(seed=99)
    out = root.parent / "outside"
    out.mkdir(exist_ok=True)
    (out / name).write_bytes(data)
    return out / name


media_case("image: ../ outside the root", "image_path", "skipped", "outside the dataset root")(
    lambda r: (_outside(r, "x.png", png_bytes()), "../outside/x.png")[1])
media_case("image: absolute path", "image_path", "skipped", "absolute path")(
    lambda r: str(_outside(r, "abs.png", png_bytes())))
media_case("image: /dev/zero", "image_path", "skipped", "absolute path")(lambda r: "/dev/zero")
media_case("image: symlink out of the root", "image_path", "skipped", "outside the dataset root")(
    lambda r: (os.symlink(_outside(r, "s.png", png_bytes()), r / "media" / "s.png"), "media/s.png")[1])
media_case("image: symlink to /dev/zero", "image_path", "skipped", "outside the dataset root")(
    lambda r: (os.symlink("/dev/zero", r / "media" / "z.png"), "media/z.png")[1])
media_case("image: fifo in the root", "image_path", "skipped", "not a regular file")(
    lambda r: (os.mkfifo(r / "media" / "p.png"), "media/p.png")[1])
media_case("audio: fifo outside the root", "audio_path", "skipped", "outside the dataset root")(
    lambda r: (os.mkfifo(r.parent / "outside_fifo.wav"), "../outside_fifo.wav")[1])
media_case("image: a directory", "image_path", "skipped", "not a regular file")(lambda r: "media")
media_case("image: over max_file_bytes", "image_path", "skipped", "over limits.max_file_bytes")(
    lambda r: ((r / "media" / "big.png").write_bytes(png_bytes(300, 300)), "media/big.png")[1])
media_case("image: bomb header", "image_path", "skipped", "over limits.max_image_pixels")(
    lambda r: ((r / "media" / "bomb.png").write_bytes(png_header_only(12000, 12000)), "media/bomb.png")[1])
media_case("image: real PNG over max pixels", "image_path", "skipped", "over limits.max_image_pixels")(
    lambda r: ((r / "media" / "wide.png").write_bytes(tf.io.encode_png(np.zeros((1100, 1000, 3), np.uint8)).numpy()),
               "media/wide.png")[1])
media_case("image: WebP", "image_path", "unsupported", "webp")(
    lambda r: ((r / "media" / "w.webp").write_bytes(b"RIFF\x20\x00\x00\x00WEBPVP8 " + os.urandom(40)),
               "media/w.webp")[1])
media_case("image: TIFF", "image_path", "unsupported", "tiff")(
    lambda r: ((r / "media" / "t.tif").write_bytes(b"II*\x00" + os.urandom(60)), "media/t.tif")[1])
media_case("image: corrupt PNG", "image_path", "failed", "")(
    lambda r: ((r / "media" / "c.png").write_bytes(png_bytes()[:40]), "media/c.png")[1])
media_case("image: random bytes", "image_path", "failed", "")(
    lambda r: ((r / "media" / "r.png").write_bytes(os.urandom(500)), "media/r.png")[1])
media_case("image: zero bytes", "image_path", "missing", "")(
    lambda r: ((r / "media" / "e.png").write_bytes(b""), "media/e.png")[1])
media_case("image: no such file", "image_path", "missing", "")(lambda r: "media/none.png")
media_case("audio: 0 samples", "audio_path", "missing", "")(
    lambda r: ((r / "media" / "silent.wav").write_bytes(wav_bytes(0.0)), "media/silent.wav")[1])
media_case("audio: over max seconds", "audio_path", "skipped", "over limits.max_audio_seconds")(
    lambda r: ((r / "media" / "long.wav").write_bytes(wav_bytes(3.0, rate=8000)), "media/long.wav")[1])
media_case("audio: header promising hours", "audio_path", "skipped", "over limits.max_audio_seconds")(
    lambda r: ((r / "media" / "liar.wav").write_bytes(
        wav_bytes(0.1)[:40] + struct.pack("<I", 2**31) + wav_bytes(0.1)[44:]), "media/liar.wav")[1])
def COMPRESSED(fmt: str) -> tuple[str, str]:  # noqa: N802  (reads as a case constant)
    return ("failed", "") if available_decoder() else ("unsupported", f"{fmt} (install tfmmrec[audio])")


# Garbage behind an MP3/FLAC signature: a decoder (soundfile, tfmmrec[audio]) fails it; without one it
# is an unsupported format, never a crash.
media_case("audio: MP3", "audio_path", *COMPRESSED("mp3"))(
    lambda r: ((r / "media" / "a.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + os.urandom(100)),
               "media/a.mp3")[1])
media_case("audio: FLAC", "audio_path", *COMPRESSED("flac"))(
    lambda r: ((r / "media" / "a.flac").write_bytes(b"fLaC" + os.urandom(100)), "media/a.flac")[1])
media_case("audio: truncated WAV", "audio_path", "failed", "")(
    lambda r: ((r / "media" / "cut.wav").write_bytes(wav_bytes(0.5)[:30]), "media/cut.wav")[1])
media_case("image: animated GIF over max pixels", "image_path", "skipped", "over limits.max_image_pixels")(
    lambda r: ((r / "media" / "anim.gif").write_bytes(gif_animation(1, 1, 3, frame_size=(800, 800))),
               "media/anim.gif")[1])
media_case("image: symlink loop", "image_path", "skipped", "cannot be read")(
    lambda r: (os.symlink("loop_b.png", r / "media" / "loop_a.png"),
               os.symlink("loop_a.png", r / "media" / "loop_b.png"), "media/loop_a.png")[2])
media_case("image: path too long", "image_path", "skipped", "cannot be read")(lambda r: "media/" + "x" * 5000 + ".png")
media_case("audio: sample rate 0", "audio_path", "failed", "")(
    lambda r: ((r / "media" / "rate0.wav").write_bytes(wav_bytes()[:24] + struct.pack("<I", 0) + wav_bytes()[28:]),
               "media/rate0.wav")[1])
media_case("audio: a PNG named .wav", "audio_path", "failed", "")(
    lambda r: ((r / "media" / "png.wav").write_bytes(png_bytes()), "media/png.wav")[1])
media_case("audio: ../ outside the root", "audio_path", "skipped", "outside the dataset root")(
    lambda r: (_outside(r, "x.wav", wav_bytes()), "../outside/x.wav")[1])


@pytest.fixture(scope="module")
def media_run(tmp_path_factory: pytest.TempPathFactory):
    """One catalog with one bad file per item (and two good items), encoded once under LIMITS."""
    from tfmmrec.encoders.encode import encode_catalog

    def expired(*_: object) -> None:
        raise TimeoutError("encoding hung on a fifo or an endless file")

    root = tmp_path_factory.mktemp("media") / "data"
    base_catalog(root)
    items = pd.read_csv(root / "items.csv", dtype=str, keep_default_na=False)
    rows = [items.iloc[0].to_dict(), items.iloc[1].to_dict()]
    expected = {}
    for i, (case, (column, setup, category, reason)) in enumerate(sorted(MEDIA_CASES.items())):
        row = {**items.iloc[i % N_ITEMS].to_dict(), "item_id": f"case{i}", "image_path": "", "audio_path": ""}
        row[column] = setup(root)
        rows.append(row)
        expected[case] = (f"case{i}", row[column], column, category, reason)
    long_text = {**items.iloc[2].to_dict(), "item_id": "long_text", "title": "x" * 61}
    rows.append(long_text)
    pd.DataFrame(rows).to_csv(root / "items.csv", index=False)
    outside_before = {p: p.read_bytes() for p in (root.parent / "outside").iterdir()}
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(300)
    try:
        ds = load_dataset(root, on_unknown_items="drop")
        content = encode_catalog(ds, cache_dir=root.parent / "cache", progress=False, limits=LIMITS)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    reports = {r.modality: r for r in content.reports}
    return ds, content, reports, expected, outside_before, root


@pytest.mark.parametrize("case", sorted(MEDIA_CASES))
def test_bad_media_is_a_counted_skip_naming_item_and_reason(media_run, case: str) -> None:
    ds, content, reports, expected, _, _ = media_run
    item, rel, column, category, reason = expected[case]
    report = reports["image" if column == "image_path" else "audio"]
    row = list(ds.item_ids).index(item)
    assert not content.masks["image" if column == "image_path" else "audio"][row]  # masked for that item
    if category == "skipped":
        assert f"{item} ({rel})" in report.skipped[reason]
    elif category == "unsupported":
        assert f"{item} ({rel})" in report.unsupported[reason]
    elif category == "missing":
        assert rel in report.missing
    else:
        assert rel in report.failed


GOOD_MEDIA = {"gif": TINY_GIF, "bmp": bmp_bytes(), "jpeg": tf.io.encode_jpeg(np.zeros((9, 7, 3), np.uint8)).numpy(),
              "anim_small": gif_animation(20, 20, 3)}


def test_every_supported_image_format_decodes(tmp_path: Path) -> None:
    """The controls of the cases above: GIF (animated too), BMP, JPEG and PNG decode under LIMITS."""
    from tfmmrec.encoders.encode import media_precheck
    from tfmmrec.media.image import decode_image
    from tfmmrec.media.stream import stream_decoded

    paths = []
    for name, data in GOOD_MEDIA.items():
        (tmp_path / f"{name}.img").write_bytes(data)
        paths.append(f"{name}.img")
    iterator, report = stream_decoded(tmp_path, paths, lambda b: decode_image(b, 4, LIMITS.max_image_pixels),
                                      modality="image", precheck=media_precheck("image", LIMITS))
    rows = np.concatenate([r for r, _ in iterator])
    assert sorted(rows.tolist()) == list(range(len(paths))), report.summary()
    assert report.decoded == len(paths) and not report.failed and not report.skipped


def test_media_report_counts_add_up_and_good_items_decode(media_run) -> None:
    ds, content, reports, expected, _, _ = media_run
    for modality, report in reports.items():
        if modality == "text":
            continue
        counted = (report.decoded + report.absent + len(report.missing) + len(report.failed)
                   + report.num_skipped + report.num_unsupported)
        assert counted == report.total == ds.num_items, report.summary()
        assert content.masks[modality][:2].all()  # the two untouched items decode
    image = reports["image"]
    assert "refused" in image.summary() and "unsupported format (tiff: 1, webp: 1)" in image.summary()


def test_text_over_max_chars_is_masked_and_reported(media_run) -> None:
    ds, content, reports, *_ = media_run
    row = list(ds.item_ids).index("long_text")
    assert not content.masks["text"][row] and content.masks["text"][0]
    assert reports["text"].skipped == {"over limits.max_text_chars": ["long_text"]}


def test_files_outside_the_root_are_untouched_and_not_in_the_store(media_run) -> None:
    ds, content, reports, expected, outside_before, root = media_run
    for path, data in outside_before.items():
        assert path.read_bytes() == data
    for modality in ("image", "audio"):
        rows = [list(ds.item_ids).index(item) for item, rel, *_ in expected.values() if ".." in rel]
        assert not content.masks[modality][rows].any()


def test_export_inputs_read_nothing_outside_the_root(media_run) -> None:
    """The warm-up records and reindex are built from ``raw_content_inputs``: refused files are
    empty bytes there, and named."""
    from tfmmrec.export.build import raw_content_inputs

    ds, _, _, expected, outside_before, _ = media_run
    rows = np.arange(ds.num_items)
    masked: dict[str, list[str]] = {}
    inputs = raw_content_inputs(ds, rows, ["image", "audio", "text"], limits=LIMITS, masked=masked)
    secrets = set(outside_before.values())
    assert not any(v in secrets for v in inputs["image"].tolist() + inputs["audio"].tolist())
    out_item = expected["image: ../ outside the root"][0]
    assert masked[out_item] == ["image (outside the dataset root)"]
    assert "text (over limits.max_text_chars)" in masked["long_text"]
    assert masked[expected["image: WebP"][0]] == ["image (unsupported format webp)"]
    assert inputs["image"][0] == (ds.root / "media" / "0.png").read_bytes()


def test_in_graph_pixel_check_refuses_before_decoding() -> None:
    """The same bound inside tf.data and the exported signature: a JPEG's SOF, a PNG's IHDR."""
    from tfmmrec.media.image import decode_image, image_pixels

    jpeg = tf.io.encode_jpeg(np.zeros((40, 30, 3), np.uint8)).numpy()
    assert int(image_pixels(tf.constant(jpeg))) == 1200
    assert int(image_pixels(tf.constant(png_header_only(12000, 12000)))) == 144_000_000
    assert int(image_pixels(tf.constant(b""))) == -1
    with pytest.raises(tf.errors.InvalidArgumentError, match="cover: image over limits.max_image_pixels"):
        decode_image(tf.constant(jpeg), 8, max_pixels=1000, name="cover")
    assert decode_image(tf.constant(jpeg), 8, max_pixels=1200).shape == (8, 8, 3)


# --- the CLI: exit code 2 and one line naming the fault; --debug adds the traceback ---------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfmmrec.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tfmmrec: error:")]


@pytest.mark.parametrize("case", ["manifest: modalities as a list", "manifest: name escapes",
                                  "table: null item id in parquet", "vectors: npz named npy"])
def test_cli_train_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    setup, message = LOAD_ERRORS[case]
    root = base_catalog(tmp_path / "data")
    setup(root)
    proc = _cli("train", str(root), "--out", str(tmp_path / "run"), "--no-export", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1 and __import__("re").search(message, lines[0]), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "somewhere").exists() and not (tmp_path.parent / "somewhere").exists()


def test_cli_debug_shows_the_traceback(tmp_path: Path) -> None:
    root = base_catalog(tmp_path / "data")
    edit_manifest(root, items=5)
    proc = _cli("encode", str(root), "--debug", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and len(_error_lines(proc.stderr)) == 1


def test_cli_encode_skips_a_fifo_outside_the_root_without_hanging(tmp_path: Path) -> None:
    root = base_catalog(tmp_path / "data")
    os.mkfifo(tmp_path / "pipe.png")
    edit_table(root, "items.csv", lambda d: d.assign(image_path=["../pipe.png", *d["image_path"][1:]]))
    proc = _cli("encode", str(root), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 refused (outside the dataset root: 1, e.g. i0 (../pipe.png))" in proc.stdout


def test_cli_in_process_maps_run_and_config_file_errors_to_exit_2(tmp_path: Path, capsys) -> None:
    """A garbage run.json, an invalid config YAML and a missing dataset: one line each, exit 2."""
    from tfmmrec.cli import main
    from tfmmrec.config import RunConfig

    run = tmp_path / "run"
    run.mkdir()
    RunConfig().to_yaml(run / "config.yaml")
    (run / "run.json").write_text("{not json")
    (tmp_path / "bad.yaml").write_text("retrieval: [unclosed\n")
    cases = [(["evaluate", str(run)], r"run\.json: not a run state written by tfmmrec"),
             (["config", "--config", str(tmp_path / "bad.yaml")], r"bad\.yaml"),
             (["train", str(tmp_path / "nowhere"), "--no-export"], r"nowhere/manifest\.yaml: no manifest")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        lines = _error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and __import__("re").search(message, lines[0]), (argv, lines)
