"""Encoding benchmark: throughput per built-in encoder, and peak memory as the catalog grows.

    PYTHONPATH=. python benchmarks/encode_store.py [--workdir DIR] [--sizes 2 10]

Writes demo catalogs at 2x and 10x the default demo size (2,000 items), runs ``tfmmrec encode``
on each in a fresh process (so each peak RSS is that run's alone: ``os.wait4``'s ru_maxrss), then
re-runs it on the unchanged catalog (everything from the store). Prints, side by side:

- items/s per modality (decode + encode + store write) for each catalog size;
- peak RSS of each run and the ratio 10x / 2x: a streaming encoder stays near 1.0, one that
  holds the media grows with the catalog;
- the no-op re-run's time relative to the first run (hashing files + reading the index).

Absolute numbers depend on the machine and its load; compare the ratios within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
from tfmmrec.encoders.encode import encode_dataset
t = time.perf_counter()
plans = encode_dataset(sys.argv[1], cache_dir=sys.argv[2], progress=False)
print(json.dumps({"total_seconds": time.perf_counter() - t,
                  "modalities": {p.modality: {"encoder": p.spec.name, "computed": p.computed, "seconds": p.seconds}
                                 for p in plans}}))
"""


def encode_in_child(data: Path, cache: Path) -> tuple[dict, float]:
    """Run one encode in a fresh interpreter; returns its report and its own peak RSS in GB."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(cache)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"encode failed on {data} (status {status})")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024 ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 10], help="multiples of the 2,000-item demo")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tfmmrec_bench_"))
    from tfmmrec.data.demo import write_demo_catalog

    rows = {}
    for k in args.sizes:
        data = workdir / f"demo_x{k}"
        if not (data / "manifest.yaml").is_file():
            started = time.perf_counter()
            write_demo_catalog(data, n_items=2000 * k, n_users=1500 * k, n_interactions=60000 * k, seed=0)
            print(f"wrote the {k}x demo catalog ({2000 * k} items) in {time.perf_counter() - started:.0f}s", flush=True)
        cache = workdir / f"store_x{k}"
        first, rss = encode_in_child(data, cache)
        again, rss_again = encode_in_child(data, cache)
        rows[k] = (first, rss, again, rss_again)

    print("\nencoding throughput (items/s, decode + encode + store write), per catalog size")
    print("modality (encoder)          | " + " | ".join(f"{k:>4}x demo" for k in args.sizes))
    for m in rows[args.sizes[0]][0]["modalities"]:
        enc = rows[args.sizes[0]][0]["modalities"][m]["encoder"]
        cells = []
        for k in args.sizes:
            r = rows[k][0]["modalities"][m]
            cells.append(f"{r['computed'] / max(r['seconds'], 1e-9):9.0f}")
        print(f"{m + ' (' + enc + ')':<27} | " + " | ".join(cells))
    print("\npeak RSS of the encode process (GB)")
    print("run                         | " + " | ".join(f"{k:>4}x demo" for k in args.sizes))
    print("first run                   | " + " | ".join(f"{rows[k][1]:9.2f}" for k in args.sizes))
    print("re-run (all from the store) | " + " | ".join(f"{rows[k][3]:9.2f}" for k in args.sizes))
    lo, hi = args.sizes[0], args.sizes[-1]
    print(f"\nratio {hi}x / {lo}x: catalog size {hi / lo:.1f}, peak RSS {rows[hi][1] / rows[lo][1]:.2f}")
    for k in args.sizes:
        print(f"re-run time / first-run time at {k}x: {rows[k][2]['total_seconds'] / rows[k][0]['total_seconds']:.3f} "
              f"({rows[k][2]['total_seconds']:.1f}s vs {rows[k][0]['total_seconds']:.1f}s; "
              f"{sum(r['computed'] for r in rows[k][2]['modalities'].values())} items re-encoded)")


if __name__ == "__main__":
    main()
