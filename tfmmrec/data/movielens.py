"""MovieLens importers: turn GroupLens archives into the standard tfmmrec dataset layout.

Two on-disk formats exist: the 1998 ``ml-100k`` files (``u.data``/``u.item``/``u.user``,
tab/pipe separated, latin-1, no header) and the CSV layout of ``ml-latest-small``,
``ml-20m``, ``ml-25m`` (``ratings.csv``/``movies.csv``/``tags.csv``, UTF-8, with header).
Both are written as ``items.csv`` + ``interactions.csv`` (+ ``users.csv``) + ``manifest.yaml``
(see :mod:`tfmmrec.data.manifest`) so that training code never sees either raw format.

Genres are written space-joined (``"Adventure Animation Children"``), not ``|``-joined:
they feed a text modality, and common tokenizers strip punctuation, which would glue
``Adventure|Animation`` into one token. MovieLens genre names contain no spaces. The
placeholder genres ``unknown`` (ml-100k) and ``(no genres listed)`` become empty.
"""
from __future__ import annotations

import csv
import hashlib
import http.client
import io
import os
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from tfmmrec.data.manifest import DatasetError, Manifest, ModalitySpec

ML_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# The md5 GroupLens publishes in ml-100k.zip.md5 (the archive has not changed since 1998). Taken from
# public projects that pin it; it could not be re-fetched from GroupLens on the offline build machine.
ML_100K_MD5 = "0e33842e24a9c977be4e0107933c0723"
_CHUNK = 1 << 16
_YEAR_IN_TITLE = r"\((\d{4})\)\s*$"
ZIP_PREFIX_DIGITS = 1  # the US zip's first digit: one of 10 national areas


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_movielens_100k(cache_dir: str | Path, *, url: str = ML_100K_URL,
                            md5: str = ML_100K_MD5, progress: bool = True) -> Path:
    """Fetch ``ml-100k.zip`` into ``cache_dir`` once and return its path.

    The archive is streamed to a temporary file next to the target and only renamed into
    place once its md5 matches, so an interrupted or corrupted download never looks cached.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "ml-100k.zip"
    if target.is_file() and _md5(target) == md5:
        return target
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=".ml-100k.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    total, done = int(response.headers.get("Content-Length") or 0), 0
                    while block := response.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            size = f"/{total / 1e6:.1f}" if total else ""
                            print(f"\rdownloading {url}: {done / 1e6:.1f}{size} MB",
                                  end="", file=sys.stderr)
            except (OSError, http.client.HTTPException) as err:
                raise DatasetError(
                    f"could not download {url}: {err}. Download it by hand (browser, or "
                    f"`curl -o {target} {url}`) and save it as {target}; it is then used "
                    "without downloading.") from err
        if progress:
            print(file=sys.stderr)
        actual = digest.hexdigest()
        if actual != md5:
            raise DatasetError(f"{url}: md5 mismatch: expected {md5}, got {actual}; "
                               "the download was deleted")
        os.replace(tmp, target)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def _load(src: Path | bytes, where: str, names: Sequence[str], *, ints: Sequence[str] = (),
          floats: Sequence[str] = (), sep: str = ",", header: bool = True,
          encoding: str = "utf-8", quoting: int = csv.QUOTE_MINIMAL) -> pd.DataFrame:
    """Read a delimited file into columns ``names``, checking field counts and numbers.

    Headered files (which may be ml-25m sized) are first parsed straight into numeric
    dtypes; only if that fails are they re-read as text to find and name the bad line.
    """
    opener = (lambda: io.BytesIO(src)) if isinstance(src, bytes) else (lambda: src)
    if isinstance(src, Path) and not src.is_file():
        raise DatasetError(f"{where}: file not found")
    kw = dict(sep=sep, encoding=encoding, quoting=quoting, skip_blank_lines=False,
              keep_default_na=False, na_values=[""])
    text = {n: str for n in names}
    try:
        if header:
            found = list(pd.read_csv(opener(), nrows=0, **kw).columns)
            if missing := [n for n in names if n not in found]:
                raise DatasetError(f"{where}: missing column(s) {missing}; found {found}")
            kw["usecols"] = list(names)
            try:
                df = pd.read_csv(opener(), dtype=text | {n: "int64" for n in ints}
                                 | {n: "float64" for n in floats}, **kw)
                if not df[list(floats)].isna().any().any():
                    return df[list(names)]
            except ValueError as err:
                if isinstance(err, pd.errors.ParserError):
                    raise
            df = pd.read_csv(opener(), dtype=text, **kw)[list(names)]
        else:
            df = pd.read_csv(opener(), header=None, dtype=str, **kw)
            if df.shape[1] != len(names):
                raise DatasetError(f"{where}: expected {len(names)} {sep!r}-separated fields "
                                   f"per line, found {df.shape[1]} on line 1")
            df.columns = list(names)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DatasetError(f"{where}: {err}") from err
    first_line = 2 if header else 1  # index 0 is this line of the file
    df = df.dropna(how="all")  # blank lines (kept above so the index is the line number)
    for col, kind in [(c, "an integer") for c in ints] + [(c, "a number") for c in floats]:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | ((values % 1 != 0) if kind == "an integer" else False)
        if bad.any():
            i = bad.idxmax()
            raise DatasetError(f"{where}, line {i + first_line}: {col} must be {kind}, got "
                               f"{df.at[i, col]!r} (wrong number of fields?)")
        df[col] = values.astype("int64" if kind == "an integer" else "float64")
    return df


def _check_known(inter: pd.DataFrame, items: pd.DataFrame, where: str) -> None:
    """Interactions with items missing from the catalog would silently become cold items."""
    unknown = ~inter["item_id"].isin(items["item_id"])
    if unknown.any():
        raise DatasetError(f"{where}: {int(unknown.sum())} interactions refer to items not in "
                           f"the catalog, e.g. item {inter.loc[unknown, 'item_id'].iloc[0]}")


def _year(titles: pd.Series) -> pd.Series:
    return pd.to_numeric(titles.str.extract(_YEAR_IN_TITLE)[0], errors="coerce").astype("Int64")


def _write(out_dir: str | Path, name: str, items: pd.DataFrame, inter: pd.DataFrame,
           users: pd.DataFrame | None, text_columns: list[str], *, numeric: Sequence[str] = (),
           user_numeric: Sequence[str] = ()) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items.to_csv(out / "items.csv", index=False)
    inter.to_csv(out / "interactions.csv", index=False)
    if users is not None:
        users.to_csv(out / "users.csv", index=False)
    text = ModalitySpec(kind="text", columns=text_columns)
    Manifest(items="items.csv", interactions="interactions.csv", name=name,
             users="users.csv" if users is not None else None, timestamp="timestamp",
             rating="rating", modalities={"text": text}, numeric=list(numeric),
             user_numeric=list(user_numeric)).save(out)
    return out


def _ml100k_files(source: Path) -> tuple[str, Callable[[str], Path | bytes]]:
    """Return (label, reader): reader(name) gives ``name`` from the zip (bytes) or dir (path)."""
    if source.is_dir():
        root = source / "ml-100k" if (source / "ml-100k" / "u.data").is_file() else source
        return str(root), lambda name: root / name
    if not source.is_file():
        raise DatasetError(f"{source}: no such file or directory (expected ml-100k.zip or "
                           "an extracted ml-100k/ directory)")
    try:
        with zipfile.ZipFile(source) as archive:
            members = set(archive.namelist())
            data = sorted((m for m in members if m == "u.data" or m.endswith("/u.data")),
                          key=len)
            prefix = data[0][: -len("u.data")] if data else "ml-100k/"
            wanted = [prefix + n for n in ("u.data", "u.item", "u.user", "u.genre")]
            contents = {m: archive.read(m) for m in wanted if m in members}
    except zipfile.BadZipFile as err:
        raise DatasetError(f"{source}: not a zip archive ({err})") from err

    def read(name: str) -> bytes:
        if prefix + name not in contents:
            raise DatasetError(f"{source}: archive has no {prefix + name}")
        return contents[prefix + name]
    return str(source), read


def import_movielens_100k(source: str | Path, out_dir: str | Path) -> Path:
    """Import ``ml-100k.zip`` (or its extracted directory) into ``out_dir``; return out_dir.

    Items keep every movie in ``u.item``; ``year`` (a numeric column of the manifest, empty when
    unknown) comes from the release date, else from the ``(1995)`` suffix of the title.
    ``users.csv`` carries the demographics as model features: ``age`` (numeric), ``gender``,
    ``occupation`` and ``zip_prefix`` (categorical). The full ``zip`` stays in the file but is no
    feature: with ~800 values for 943 users it is nearly a user id; its first digit is the US
    region (the zip "national area"), a feature users share.
    """
    label, read = _ml100k_files(Path(source))
    latin = dict(header=False, encoding="latin-1", quoting=csv.QUOTE_NONE)
    genre = _load(read("u.genre"), f"{label}/u.genre", ["genre", "index"], ints=["index"],
                  sep="|", **latin).sort_values("index")
    flags = [f"g{i}" for i in genre["index"]]
    cols = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *flags]
    raw = _load(read("u.item"), f"{label}/u.item", cols, ints=["item_id", *flags], sep="|",
                **latin)
    genres = pd.Series("", index=raw.index)
    for flag, name in zip(flags, genre["genre"]):
        if name != "unknown":
            genres = genres + raw[flag].gt(0).map({True: name + " ", False: ""})
    title = raw["title"].fillna("")
    released = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce")
    items = pd.DataFrame({"item_id": raw["item_id"], "title": title,
                          "genres": genres.str.rstrip(),
                          "year": released.dt.year.astype("Int64").fillna(_year(title)),
                          "release_date": raw["release_date"], "imdb_url": raw["imdb_url"]})
    inter = _load(read("u.data"), f"{label}/u.data",
                  ["user_id", "item_id", "rating", "timestamp"],
                  ints=["user_id", "item_id", "rating", "timestamp"], sep="\t", header=False)
    _check_known(inter, items, f"{label}/u.data")
    users = _load(read("u.user"), f"{label}/u.user",
                  ["user_id", "age", "gender", "occupation", "zip"], ints=["user_id", "age"],
                  sep="|", **latin)
    users["zip_prefix"] = users["zip"].fillna("").str.strip().str[:ZIP_PREFIX_DIGITS]
    return _write(out_dir, "ml-100k", items, inter, users, ["title", "genres"], numeric=["year"],
                  user_numeric=["age"])


def import_movielens_csv(source_dir: str | Path, out_dir: str | Path) -> Path:
    """Import a MovieLens CSV directory (ml-latest-small, ml-20m, ml-25m) into ``out_dir``.

    Every movie in ``movies.csv`` is kept, rated or not, so the catalog is complete for
    cold-start evaluation. ``tags.csv`` (optional) becomes a ``tags`` text column: per movie
    the distinct tags (case-insensitive, whitespace-trimmed), sorted, joined by spaces.
    """
    src = Path(source_dir)
    if not src.is_dir():
        raise DatasetError(f"{src}: not a directory (expected an extracted MovieLens dir)")
    movies = _load(src / "movies.csv", f"{src}/movies.csv", ["movieId", "title", "genres"],
                   ints=["movieId"])
    ratings = _load(src / "ratings.csv", f"{src}/ratings.csv",
                    ["userId", "movieId", "rating", "timestamp"],
                    ints=["userId", "movieId", "timestamp"], floats=["rating"])
    title = movies["title"].fillna("")
    genres = movies["genres"].fillna("").str.replace("(no genres listed)", "", regex=False)
    items = pd.DataFrame({"item_id": movies["movieId"], "title": title,
                          "genres": genres.str.replace("|", " ", regex=False).str.strip(),
                          "year": _year(title)})
    text_columns = ["title", "genres"]
    if (src / "tags.csv").is_file():
        tags = _load(src / "tags.csv", f"{src}/tags.csv", ["userId", "movieId", "tag"],
                     ints=["movieId"])
        tags = tags.assign(tag=tags["tag"].fillna("").str.strip()).query("tag != ''")
        tags = tags.assign(key=tags["tag"].str.lower())
        tags = tags.sort_values(["movieId", "key", "tag"]).drop_duplicates(["movieId", "key"])
        joined = tags.groupby("movieId", sort=False)["tag"].agg(" ".join)
        items["tags"] = items["item_id"].map(joined).fillna("")
        text_columns.append("tags")
    inter = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    _check_known(inter, items, f"{src}/ratings.csv")
    return _write(out_dir, src.resolve().name, items, inter, None, text_columns)
