"""Fault tolerance: a run killed at any point (SIGKILL, preemption) resumes when rerun.

``ResumableBackup`` is Keras's ``BackupAndRestore`` with three choices made for tfmmrec:

- a backup every ``every_steps`` training steps, not only per epoch, so a kill mid-epoch loses
  at most that many steps (Keras then resumes *inside* the epoch, at the next step);
- a backup at every epoch end, and the last one is kept when training finishes: rerunning a
  command whose model already finished restores its weights and trains zero epochs, so a run
  with several models (multimodal, ID-only, ranking) resumes at the one that was interrupted;
- a log line saying where it resumed, so a resumed run is visible in its log.

A resumed run ends where an uninterrupted one would (to float round-off), because everything a
step depends on is restored or recomputed: weights, optimizer slots and step counters (the
backup); the input batch (the endless input stream is a function of the global step, see
``train.inputs.batched_permutations``: ``fit`` starts it at :func:`resume_step`); every random draw
of training (dropouts, hidden ids, sampled negatives: ``fusion.randomness``'s generator is part of
the backup, the ranking negatives are keyed by the step); and early stopping's best value, patience
count and best weights (:class:`ResumableEarlyStopping`).

Backups are a function of the config (``pipeline.run`` keys the directory by a hash of the
config), so a rerun with a changed config never picks up weights trained under another.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras as keras


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` every ``every_steps`` steps and at epoch ends, kept after training."""

    def __init__(self, backup_dir: str | Path, every_steps: int = 100,
                 log: Callable[[str], None] = print) -> None:
        super().__init__(str(backup_dir), save_freq=max(1, int(every_steps)), delete_checkpoint=False)
        self._log = log
        self.resumed_at: tuple[int, int] | None = None  # (epoch, step) already done when restored

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        epoch = int(tf.keras.backend.get_value(self._training_state._ckpt_saved_epoch))
        batch = int(tf.keras.backend.get_value(self._training_state._ckpt_saved_batch))
        if epoch >= 0:  # -1 = nothing restored
            self.resumed_at = (epoch, batch)
            params = self.params or {}
            epoch_done = bool(params.get("steps")) and batch + 1 >= params["steps"]
            if epoch_done and epoch + 1 >= params.get("epochs", 0):
                where = "training had finished, weights restored"
            else:
                where = f"epoch {epoch + 1}, " + ("the whole epoch" if epoch_done else f"step {batch + 1}") + " done"
            self._log(f"[train] resumed from backup {self.backup_dir}: {where}")
            if self.model.built and hasattr(self.model.optimizer, "build"):
                # Create the optimizer's slots now, so the restored values land even if no step runs:
                # for the variables training updates, in its order (the slots are saved by position),
                # which for a model trained in stages is the stage's (MatrixFactorization.stage_variables).
                stage_variables = getattr(self.model, "stage_variables", None)
                self.model.optimizer.build(stage_variables() if callable(stage_variables)
                                           else self.model.trainable_variables)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # The saved batch is the epoch's last step here, so a restore continues with the next epoch.
        super().on_epoch_end(epoch, logs)
        self._backup(epoch=epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # Mark training finished (last epoch, last step) with the final weights (those restored by
        # EarlyStopping, which must come earlier in the callback list): a rerun trains zero epochs.
        state, params = self._training_state, self.params or {}
        state._ckpt_saved_epoch.assign(max(int(params.get("epochs", 1)) - 1, 0))
        state._ckpt_saved_batch.assign(max(int(params.get("steps") or 1) - 1, 0))
        self._backup(epoch=params.get("epochs", 1) - 1)
        super().on_train_end(logs)


def resume_step(backup_dir: str | Path, steps_per_epoch: int) -> int:
    """The global step a rerun continues from (0: no backup yet): the step after the last one the
    backup in ``backup_dir`` holds, as Keras's ``BackupAndRestore`` will continue counting."""
    latest = tf.train.latest_checkpoint(str(Path(backup_dir) / "chief"))
    if latest is None:
        return 0
    reader = tf.train.load_checkpoint(latest)
    epoch = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    batch = int(reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"))
    if epoch < 0:
        return 0
    if batch < 0:  # an epoch-level backup: that epoch is done
        return (epoch + 1) * steps_per_epoch
    return epoch * steps_per_epoch + batch + 1


def backup_root(run_dir: str | Path, config_yaml: str, data_fingerprint: str) -> Path:
    """``RUN_DIR/backup/<key>``: the key hashes the config and the training data, so backups are
    only ever restored into the run that wrote them (same config, same data)."""
    import hashlib

    key = hashlib.sha256(f"{config_yaml}\n{data_fingerprint}".encode()).hexdigest()[:12]
    return Path(run_dir) / "backup" / key
