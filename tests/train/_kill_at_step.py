"""``python tests/train/_kill_at_step.py STAGE STEP tfmmrec-args...``: run the ``tfmmrec`` command,
SIGKILLing itself right after global training step STEP of the model whose backup directory is
named STAGE (e.g. ``retrieval_id_only``, ``ranking``).

A test-only wrapper (the library has no kill hook): it patches ``ResumableBackup`` so the kill
lands at a known step, between two backups, as a real preemption would.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import tfmmrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS)
from tfmmrec.cli import main
from tfmmrec.train.resume import ResumableBackup


def install(stage: str, step: int) -> None:
    original = ResumableBackup.on_train_batch_end

    def on_train_batch_end(self: ResumableBackup, batch: int, logs: dict | None = None) -> None:
        original(self, batch, logs)
        steps = int((self.params or {}).get("steps") or 0)
        if Path(self.backup_dir).name == stage and self._current_epoch * steps + batch + 1 >= step:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    ResumableBackup.on_train_batch_end = on_train_batch_end  # type: ignore[method-assign]


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
