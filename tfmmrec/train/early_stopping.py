"""Model selection on the validation split: stop early, keep the best epoch, remember the curve.

``ValidationEarlyStopping`` is Keras's ``EarlyStopping(restore_best_weights=True)`` with three
additions tfmmrec's training needs:

- an *objective* built from the validation logs: with a cold-start split the retrieval metrics
  exist for warm and cold validation items (``val_recall_at_20_warm`` / ``_cold``), and the
  objective is one of them, all items, or the mean of warm and cold (``VALIDATION_OBJECTIVES``);
  it is written back into the logs as ``val_objective``, so History and TensorBoard show it;
- the validation curve (per epoch the objective and the monitored metrics), for ``metrics.json``
  (:meth:`summary`);
- resumable state: with ``state_dir`` (inside the run's backup directory) the best value, the
  best epoch, the patience counter and the curve are written as ``state.json`` after every epoch,
  and the best epoch's weights as a checkpoint. A run killed and resumed (``ResumableBackup``
  restores weights and epoch) continues with the same best-so-far and patience counter, and at
  the end restores the best epoch even if that epoch ran before the kill.

Place it before ``ResumableBackup`` in the callback list: the backup taken when training ends
must hold the restored best weights (``train_retrieval``/``train_ranking`` put it first).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras as keras

VALIDATION_OBJECTIVES = ("all", "warm", "cold", "mean")
STATE_FILE = "state.json"


def catalog_monitor(metric: str) -> str:
    """``"recall@20"`` -> ``"val_recall_at_20"`` (the Keras log name of a catalog metric)."""
    name, sep, k = metric.partition("@")
    if not sep or not k.isdigit() or int(k) < 1:
        raise ValueError(f"validation metric {metric!r} is not of the form NAME@K, e.g. recall@20")
    return f"val_{name}_at_{int(k)}"


class ValidationEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on ``objective`` of ``monitor`` with the best epoch's weights restored.

    Args:
      monitor: a validation log, e.g. ``val_recall_at_20`` or ``val_rmse``.
      mode: ``"max"`` or ``"min"``.
      patience: epochs without improvement before stopping.
      objective: ``all`` (``monitor`` itself), ``warm`` / ``cold`` (``monitor + "_warm"`` /
        ``"_cold"``) or ``mean`` (mean of warm and cold, over the groups that have validation users).
      state_dir: where the resumable state and best weights go (``None``: memory only).
    """

    def __init__(self, monitor: str, mode: str, patience: int, objective: str = "all",
                 state_dir: str | Path | None = None, verbose: int = 0) -> None:
        if objective not in VALIDATION_OBJECTIVES:
            raise ValueError(f"validation objective must be one of {VALIDATION_OBJECTIVES}, got {objective!r}")
        super().__init__(monitor="val_objective", mode=mode, patience=max(0, int(patience)),
                         restore_best_weights=True, verbose=verbose)
        self.metric, self.objective = monitor, objective
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.curve: list[dict[str, float | None]] = []
        self.records: list[dict[str, Any]] = []  # per epoch (from 0): best, best_epoch, wait after it
        self._saved: dict[str, Any] | None = None  # state read back from state_dir at train begin
        self._best_path: Path | None = None
        self._resumed = False

    # --- the objective -----------------------------------------------------------------------
    def objective_value(self, logs: dict[str, Any]) -> float | None:
        """The objective from one epoch's logs; None when the logs lack the metric."""
        if self.objective == "all":
            value = logs.get(self.metric)
            return None if value is None else float(value)
        groups = ("_warm", "_cold") if self.objective == "mean" else (f"_{self.objective}",)
        # A group without validation users reports 0 (see models.catalog_eval): leave it out.
        values = [float(logs[self.metric + g]) for g in groups
                  if self.metric + g in logs and logs.get("val_users" + g, 1) > 0]
        return float(np.mean(values)) if values else None

    def get_monitor_value(self, logs: dict[str, Any] | None) -> float | None:
        logs = logs if logs is not None else {}
        value = self.objective_value(logs)
        if value is None:
            return super().get_monitor_value(logs)  # Keras's warning naming the available logs
        logs["val_objective"] = value
        return value

    # --- Keras hooks -----------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self.curve, self.records, self._best_path, self._resumed = [], [], None, False
        self._saved = None
        if self.state_dir is not None and (self.state_dir / STATE_FILE).is_file():
            self._saved = json.loads((self.state_dir / STATE_FILE).read_text())
            # All of it for now, in case no epoch runs (a finished run); trimmed at the first epoch.
            self.curve, self.records = list(self._saved["curve"]), list(self._saved["records"])
            if self._saved.get("best_epoch") is not None:
                self.best_epoch = int(self._saved["best_epoch"])
                self.best = float(self._saved["best"])
                self.stopped_epoch = int(self._saved.get("stopped_epoch", 0))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._saved is not None and not self._resumed:
            self._resume(epoch)

    def _resume(self, epoch: int) -> None:
        """Continue from the saved state as it was after epoch ``epoch - 1`` (the last one the
        weights backup holds), even if the state file had recorded a later epoch before a kill."""
        assert self._saved is not None
        self._resumed = True
        records = self.records = [r for r in self._saved["records"] if r["epoch"] < epoch]
        self.curve = [c for c in self._saved["curve"] if c["epoch"] <= epoch]
        self.stopped_epoch = 0
        if records:
            last = records[-1]
            self.best, self.best_epoch, self.wait = float(last["best"]), int(last["best_epoch"]), int(last["wait"])
            self._best_path = self._weights_path(self.best_epoch)
        else:
            self.best, self.best_epoch, self.wait = (np.inf if self.monitor_op == np.less else -np.inf), 0, 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        current = self.get_monitor_value(logs)
        if current is not None and not math.isnan(current):
            self.wait += 1
            if self._is_improvement(current, self.best):
                self.best, self.best_epoch, self.wait = current, epoch, 0
                self.best_weights = self.model.get_weights()
                self._save_best(epoch)
            elif self.wait >= self.patience and epoch > 0:
                self.stopped_epoch = epoch
                self.model.stop_training = True
        self.curve.append({"epoch": epoch + 1, "objective": current,
                           **{k: float(v) for k, v in logs.items()
                              if k.startswith(self.metric) or k in ("loss", "val_loss")}})
        self._write_state(epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        elif self._best_path is not None and Path(str(self._best_path) + ".index").is_file():
            # The best epoch ran before a kill and none after the resume beat it.
            self.model.load_weights(str(self._best_path)).expect_partial()
        if self.stopped_early and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping; restored the best epoch, {self.best_epoch + 1}")

    # --- the record ------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """``{"monitor", "objective", "best_epoch", "best", "epochs_run", "stopped_early", "val_curve"}``
        (epochs counted from 1); ``best_epoch`` is None when no epoch had a validation value."""
        has_best = any(c["objective"] is not None for c in self.curve)
        return {"monitor": self.metric, "objective": self.objective,
                "best_epoch": self.best_epoch + 1 if has_best else None,
                "best": float(self.best) if has_best else None, "epochs_run": len(self.curve),
                "stopped_early": self.stopped_early, "val_curve": self.curve}

    @property
    def stopped_early(self) -> bool:
        """Patience ran out before the last allowed epoch (running out *at* it stops nothing)."""
        return self.stopped_epoch > 0 and self.stopped_epoch + 1 < (self.params or {}).get("epochs", np.inf)

    def _weights_path(self, epoch: int) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"best_epoch_{epoch + 1}" / "ckpt"

    def _save_best(self, epoch: int) -> None:
        if self.state_dir is None:
            return
        previous = self._best_path
        self._best_path = self._weights_path(epoch)
        self.model.save_weights(str(self._best_path))
        # Keep the previous best too: a kill before the weights backup of this epoch resumes from
        # the state after the previous epoch, whose best is that one.
        keep = {self._best_path.parent, previous.parent if previous is not None else None}
        for old in self.state_dir.glob("best_epoch_*"):
            if old not in keep:
                shutil.rmtree(old, ignore_errors=True)

    def _write_state(self, epoch: int) -> None:
        self.records = [*[r for r in self.records if r["epoch"] < epoch],
                        {"epoch": epoch, "best": float(self.best), "best_epoch": int(self.best_epoch),
                         "wait": int(self.wait)}]
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {"records": self.records, "curve": self.curve, "best": float(self.best),
                 "best_epoch": int(self.best_epoch), "stopped_epoch": int(self.stopped_epoch)}
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_dir / STATE_FILE)  # atomic: a kill never leaves half a state file


def describe_selection(name: str, selection: dict[str, Any]) -> list[str]:
    """What validation chose for model ``name``, one line per trained stage (a training History's
    ``selection``); a warm/cold model (``tfmmrec.train.coldstart``) also says its blend, a
    matrix factorisation with content (``tfmmrec.models.mf``) which items selected each stage."""
    if "content" in selection and "blend" not in selection:  # ranking.model mf with content: two stages
        ids = {k: v for k, v in selection.items() if k != "content"}
        return [*describe_selection(f"{name} (ids stage, {ids.get('valid_items', 'all')} items)", ids),
                *describe_selection(f"{name} (content stage, {selection['content'].get('valid_items', 'all')} items)",
                                    selection["content"])]
    if "content" in selection:
        blend = selection["blend"]
        warm = {k: v for k, v in selection.items() if k not in ("content", "blend", "warm_tower")}
        lines = [*describe_selection(f"{name} (warm stage)", warm),
                 *describe_selection(f"{name} (content stage)", selection["content"]),
                 f"{name}: blend c = {blend['blend_c']:g}, cold-score factor s = {blend['cold_scale']:.2f} "
                 f"({blend['objective']})"]
        if "warm_tower" in selection:  # retrieval.warm_tower: select
            choice = selection["warm_tower"]
            metric, scores = next((k, v) for k, v in choice.items() if k != "chosen")
            lines.append(f"{name}: warm tower {choice['chosen']} chosen on validation ({metric.removeprefix('valid_')}"
                         " of all items: " + ", ".join(f"{kind} {v:.4f}" for kind, v in scores.items()) + ")")
        return lines
    if selection["best_epoch"] is None:
        return [f"{name}: {selection.get('note', 'no validation value')}"]
    lines = [f"{name}: best epoch {selection['best_epoch']} of {selection['epochs_run']} run "
             f"({selection['monitor']} {selection['objective']} = {selection['best']:.4f}"
             + (", stopped early)" if selection["stopped_early"] else ")")]
    if "temperature" in selection:  # retrieval.temperature_candidates
        scores = ", ".join(f"{t}: {v:.4f}" for t, v in selection["temperature"]["valid_best"].items())
        lines.append(f"{name}: temperature {selection['temperature']['chosen']:g} chosen on validation ({scores})")
    return lines
