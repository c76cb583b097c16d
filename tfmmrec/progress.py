"""A progress line for long loops: done/total, items/s and ETA, at most every few seconds."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, *, enabled: bool = True, every: float = 2.0,
                 stream: TextIO | None = None) -> None:
        self.label, self.total, self.enabled, self.every = label, total, enabled, every
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self._last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.every and self.done < self.total:
            self._last = now
            self._print(now)

    def close(self) -> None:
        """Print the final count and rate (always, even when the loop was too short to report)."""
        if self.enabled:
            self._print(time.perf_counter())

    def _print(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        print(f"  {self.label}: {self.done}/{self.total} ({rate:,.0f}/s, ETA {eta:,.0f}s)",
              file=self.stream, flush=True)
