"""Tests for the MovieLens importers and downloader, on small files in the real formats."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmmrec.data.manifest import DatasetError, Manifest
from tfmmrec.data.movielens import download_movielens_100k, import_movielens_100k, import_movielens_csv

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]
N_USERS, N_ITEMS, PER_USER = 20, 30, 5


def _ratings() -> list[tuple[int, int, int, int]]:
    """(user, item, rating, timestamp); items 1..29 only, so item 30 stays unrated."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, N_USERS + 1):
        for k, item in enumerate(rng.choice(np.arange(1, N_ITEMS), PER_USER, replace=False)):
            rows.append((user, int(item), int(rng.integers(1, 6)), 874965758 + 97 * user + k))
    return rows


def _item_line(item: int) -> str:
    flags = ["0"] * len(GENRES)
    title, date = f"Movie {item} (1994)", "01-Jan-1995"
    if item == 1:
        flags[GENRES.index("Action")] = flags[GENRES.index("Comedy")] = "1"
    if item == 2:
        title = "Misérables, Les (1995)"
        flags[GENRES.index("Children's")] = flags[GENRES.index("Drama")] = "1"
    if item == 3:  # like ml-100k item 267: no release date; year falls back to the title
        title, date, flags[0] = "Unknown Film (1987)", "", "1"
    return "|".join([str(item), title, date, "", f"http://us.imdb.com/M/title?{item}"] + flags)


def write_ml100k(root: Path, *, skip: str | None = None,
                 data_lines: list[str] | None = None) -> Path:
    """Write an ml-100k directory (latin-1, as GroupLens ships it) and return it."""
    root.mkdir(parents=True)
    files = {
        "u.data": "\n".join(data_lines or ["\t".join(map(str, r)) for r in _ratings()]) + "\n",
        "u.item": "\n".join(_item_line(i) for i in range(1, N_ITEMS + 1)) + "\n",
        "u.user": "\n".join(f"{u}|{20 + u}|{'MF'[u % 2]}|student|{u:05d}"
                            for u in range(1, N_USERS + 1)) + "\n",
        "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n",  # blank tail
    }
    for name, text in files.items():
        if name != skip:
            (root / name).write_bytes(text.encode("latin-1"))
    return root


def zip_dir(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("ml-100k/", "")
        for f in sorted(folder.iterdir()):
            archive.write(f, f"ml-100k/{f.name}")
    return zip_path


@pytest.fixture
def ml100k_zip(tmp_path: Path) -> Path:
    return zip_dir(write_ml100k(tmp_path / "src" / "ml-100k"), tmp_path / "ml-100k.zip")


def read_items(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "items.csv", dtype=str, keep_default_na=False)


def test_import_100k_writes_standard_layout(ml100k_zip: Path, tmp_path: Path) -> None:
    out = import_movielens_100k(ml100k_zip, tmp_path / "out")
    m = Manifest.load(out)
    assert (m.name, m.rating, m.timestamp, m.users) == ("ml-100k", "rating", "timestamp",
                                                       "users.csv")
    assert m.modalities["text"].kind == "text"
    assert m.modalities["text"].columns == ["title", "genres"]
    items = read_items(out).set_index("item_id")
    assert list(items.index) == [str(i) for i in range(1, N_ITEMS + 1)]  # 30 kept unrated
    assert items.loc["2", "title"] == "Misérables, Les (1995)"  # latin-1 decoded
    assert items.loc["1", "genres"] == "Action Comedy"
    assert items.loc["2", "genres"] == "Children's Drama"
    assert items.loc["3", "genres"] == ""  # the 'unknown' flag is not a genre
    assert items.loc["1", "year"] == "1995"  # release date wins over the title's (1994)
    assert items.loc["3", "year"] == "1987"
    inter = pd.read_csv(out / "interactions.csv", dtype=str)
    assert list(inter.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert sorted(map(tuple, inter.to_numpy())) == sorted(
        tuple(map(str, r)) for r in _ratings())
    users = pd.read_csv(out / "users.csv", dtype=str)
    assert len(users) == N_USERS
    assert users.iloc[0].tolist() == ["1", "21", "F", "student", "00001", "0"]  # zip keeps zeros
    assert (m.numeric, m.user_numeric) == (["year"], ["age"])


def test_100k_year_age_and_user_fields_reach_the_models(ml100k_zip: Path, tmp_path: Path) -> None:
    """year is a numeric item field, age a numeric user field; gender, occupation and the zip's first
    digit are categorical user fields; the full zip (one value per user here) is no feature."""
    from tfmmrec.config import RankingConfig
    from tfmmrec.data.loader import load_dataset
    from tfmmrec.models.build import build_ranking
    from tfmmrec.models.features import build_item_features, build_user_features

    ds = load_dataset(import_movielens_100k(ml100k_zip, tmp_path / "out"))
    assert ds.items["year"].dtype.kind in "fi" and ds.items["year"].tolist()[:3] == [1995.0, 1995.0, 1987.0]
    user_ids = np.array([str(u) for u in range(1, N_USERS + 1)])
    users = build_user_features(ds.users, user_ids, numeric_columns=ds.manifest.user_numeric)
    assert users.names == ["gender", "occupation", "zip_prefix"] and users.cardinalities == [3, 2, 2]
    ages = 20 + np.arange(1, N_USERS + 1)
    np.testing.assert_allclose(users.numeric[1:, 0], (ages - ages.mean()) / ages.std(), atol=1e-4)
    features = build_item_features(ds, None, np.arange(N_ITEMS))
    assert features.numeric.shape == (N_ITEMS + 1, 1)  # the year
    ranker = build_ranking(features, N_USERS, RankingConfig(), users=users)
    _, _, names = ranker.fields({"user": np.array([1, 2]), "item": np.array([1, 2])})
    assert {"user_categorical_0", "user_categorical_2", "_user_numeric", "_numeric"} <= set(names)
    plain = build_ranking(features, N_USERS, RankingConfig(user_features=False), users=users)
    assert "_user_numeric" not in plain.fields({"user": np.array([1]), "item": np.array([1])})[2]


def test_import_100k_from_directory_matches_zip(ml100k_zip: Path, tmp_path: Path) -> None:
    from_zip = import_movielens_100k(ml100k_zip, tmp_path / "a")
    from_dir = import_movielens_100k(tmp_path / "src" / "ml-100k", tmp_path / "b")
    from_parent = import_movielens_100k(tmp_path / "src", tmp_path / "c")
    for name in ("items.csv", "interactions.csv", "users.csv", "manifest.yaml"):
        expected = (from_zip / name).read_bytes()
        assert (from_dir / name).read_bytes() == expected
        assert (from_parent / name).read_bytes() == expected


def test_download_verifies_and_caches(ml100k_zip: Path, tmp_path: Path) -> None:
    md5 = hashlib.md5(ml100k_zip.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    got = download_movielens_100k(cache, url=ml100k_zip.as_uri(), md5=md5, progress=False)
    assert got == cache / "ml-100k.zip"
    assert got.read_bytes() == ml100k_zip.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["ml-100k.zip"]  # no temp file left
    ml100k_zip.unlink()  # a second download would now fail
    again = download_movielens_100k(cache, url=ml100k_zip.as_uri(), md5=md5, progress=False)
    assert again == got and again.read_bytes()[:2] == b"PK"


def test_download_replaces_corrupt_cached_file(ml100k_zip: Path, tmp_path: Path) -> None:
    md5 = hashlib.md5(ml100k_zip.read_bytes()).hexdigest()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "ml-100k.zip").write_bytes(b"truncated")
    got = download_movielens_100k(tmp_path / "cache", url=ml100k_zip.as_uri(), md5=md5)
    assert hashlib.md5(got.read_bytes()).hexdigest() == md5


def test_download_md5_mismatch_leaves_nothing(ml100k_zip: Path, tmp_path: Path) -> None:
    actual = hashlib.md5(ml100k_zip.read_bytes()).hexdigest()
    url = ml100k_zip.as_uri()
    with pytest.raises(DatasetError) as err:
        download_movielens_100k(tmp_path / "cache", url=url, md5="0" * 32, progress=False)
    assert url in str(err.value) and "0" * 32 in str(err.value) and actual in str(err.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_failure_says_how_to_fetch_by_hand(tmp_path: Path) -> None:
    url = (tmp_path / "nowhere.zip").as_uri()
    with pytest.raises(DatasetError, match="by hand") as err:
        download_movielens_100k(tmp_path / "cache", url=url, progress=False)
    assert url in str(err.value) and str(tmp_path / "cache" / "ml-100k.zip") in str(err.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_u_data_is_named(tmp_path: Path) -> None:
    archive = zip_dir(write_ml100k(tmp_path / "ml-100k", skip="u.data"), tmp_path / "x.zip")
    with pytest.raises(DatasetError, match=r"ml-100k/u\.data"):
        import_movielens_100k(archive, tmp_path / "out")
    with pytest.raises(DatasetError, match=r"u\.data: file not found"):
        import_movielens_100k(tmp_path / "ml-100k", tmp_path / "out")


@pytest.mark.parametrize("bad_line, message", [
    ("7\tabc\t3\t881250949", r"u\.data, line 4: item_id must be an integer, got 'abc'"),
    ("7\t5\t3.5\t881250949", r"u\.data, line 4: rating must be an integer"),
    ("7\t5\t3", r"u\.data, line 4: timestamp must be an integer"),  # a field short
    ("7\t5\t3\t881250949\t9", r"u\.data: .*Expected 4 fields in line 4, saw 5"),
])
def test_malformed_u_data_row_is_named(tmp_path: Path, bad_line: str, message: str) -> None:
    lines = ["1\t1\t5\t881250949", "2\t2\t4\t881250950", "3\t3\t1\t881250951", bad_line]
    src = write_ml100k(tmp_path / "ml-100k", data_lines=lines)
    with pytest.raises(DatasetError, match=message):
        import_movielens_100k(src, tmp_path / "out")


def test_interactions_with_unknown_items_are_rejected(tmp_path: Path) -> None:
    src = write_ml100k(tmp_path / "ml-100k", data_lines=["1\t1\t5\t1", "1\t99\t4\t2"])
    with pytest.raises(DatasetError, match="1 interactions refer to items not in the catalog"):
        import_movielens_100k(src, tmp_path / "out")


def write_latest_small(root: Path, *, tags: bool = True) -> Path:
    """A tiny ml-latest-small: quoted titles, UTF-8, half-star ratings, an unrated movie."""
    root.mkdir(parents=True)
    (root / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        "21,Amélie (Fabuleux destin d'Amélie Poulain) (2001),Comedy|Romance\n"
        "31,Some Documentary,(no genres listed)\n", encoding="utf-8")
    (root / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n"
        "1,1,4.0,964982703\n1,11,3.5,964981247\n2,1,0.5,1445714994\n3,21,5.0,1000000000\n")
    if tags:
        (root / "tags.csv").write_text(
            "userId,movieId,tag,timestamp\n"
            "2,1,pixar,1445714994\n3,1,Funny,1445714996\n4,1,funny,1445714997\n"
            '5,1," Highly quotable ",1445714998\n2,11,"politics, US",1445714999\n'
            "2,31,rare,1445715000\n")
    return root


def test_import_csv_layout(tmp_path: Path) -> None:
    out = import_movielens_csv(write_latest_small(tmp_path / "ml-latest-small"),
                               tmp_path / "out")
    m = Manifest.load(out)
    assert (m.name, m.rating, m.timestamp, m.users) == ("ml-latest-small", "rating",
                                                       "timestamp", None)
    assert m.modalities["text"].columns == ["title", "genres", "tags"]
    items = read_items(out).set_index("item_id")
    assert list(items.index) == ["1", "11", "21", "31"]  # 31 has no ratings but stays
    assert items.loc["11", "title"] == "American President, The (1995)"
    assert items.loc["21", "title"].startswith("Amélie")
    assert items.loc["1", "genres"] == "Adventure Animation Children Comedy Fantasy"
    assert items.loc["31", "genres"] == ""
    assert items["year"].tolist() == ["1995", "1995", "2001", ""]
    assert items.loc["1", "tags"] == "Funny Highly quotable pixar"  # distinct, sorted
    assert items.loc["11", "tags"] == "politics, US"
    assert items.loc["21", "tags"] == "" and items.loc["31", "tags"] == "rare"
    inter = pd.read_csv(out / "interactions.csv", dtype={"user_id": str, "item_id": str})
    assert list(inter.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert inter["item_id"].tolist() == ["1", "11", "1", "21"]
    assert inter["rating"].tolist() == [4.0, 3.5, 0.5, 5.0]
    assert inter["timestamp"].tolist() == [964982703, 964981247, 1445714994, 1000000000]


def test_import_csv_without_tags(tmp_path: Path) -> None:
    out = import_movielens_csv(write_latest_small(tmp_path / "ml-25m", tags=False),
                               tmp_path / "out")
    assert Manifest.load(out).modalities["text"].columns == ["title", "genres"]
    assert Manifest.load(out).name == "ml-25m"
    assert "tags" not in read_items(out).columns


def test_csv_errors_name_file_and_line(tmp_path: Path) -> None:
    src = write_latest_small(tmp_path / "ml")
    ratings = src / "ratings.csv"
    ratings.write_text(ratings.read_text() + "4,1,great,1000000001\n")
    with pytest.raises(DatasetError, match=r"ratings\.csv, line 6: rating must be a number, "
                                           r"got 'great'"):
        import_movielens_csv(src, tmp_path / "out")
    ratings.write_text("userId,movieId,score,timestamp\n1,1,4.0,1\n")
    with pytest.raises(DatasetError, match=r"ratings\.csv: missing column\(s\) \['rating'\]"):
        import_movielens_csv(src, tmp_path / "out")
    (src / "movies.csv").unlink()
    with pytest.raises(DatasetError, match=r"movies\.csv: file not found"):
        import_movielens_csv(src, tmp_path / "out")
