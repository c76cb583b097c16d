"""TF Serving's side files: ``models.config``, batching parameters, warm-up records.

- ``models.config`` (``--model_config_file``): one entry per model under the base directory,
  serving the versions that carry a label. ``stable`` defaults to the newest version; a
  ``canary`` label lets a new version take traffic from clients that ask for it by label
  (``/v1/models/NAME/labels/canary:predict``) before ``stable`` moves to it.
- ``batching.config`` (``--enable_batching --batching_parameters_file``): server-side batching
  of concurrent requests into one matmul, which is where a brute-force index gains most.
- ``assets.extra/tf_serving_warmup_requests``: a TFRecord file of ``PredictionLog`` protos that
  TF Serving replays when it loads a version, so the first live request does not pay for
  graph initialisation. Built from real ids of the exported model.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmmrec.export.versioning import existing_versions

WARMUP_FILE = "tf_serving_warmup_requests"


def models_config_text(base: str | Path, names: list[str], *, container_base: str = "/models",
                       labels: dict[str, dict[str, int]] | None = None) -> str:
    """The text proto of a ``ModelServerConfig``.

    Args:
      base: the host directory holding ``NAME/VERSION`` (read to find versions).
      container_base: where ``base`` is mounted inside the server (docker-compose mounts it at /models).
      labels: per model, label -> version; default ``{"stable": newest version}``.
    """
    blocks = []
    for name in names:
        versions = existing_versions(Path(base) / name)
        if not versions:
            raise FileNotFoundError(f"{Path(base) / name} has no integer version directory to serve")
        model_labels = (labels or {}).get(name) or {"stable": versions[-1]}
        for label, version in model_labels.items():
            if version not in versions:
                raise ValueError(f"label {label!r} of {name} points at version {version}, not in {versions}")
        served = sorted(set(model_labels.values()))
        lines = [f'    name: "{name}"', f'    base_path: "{container_base.rstrip("/")}/{name}"',
                 '    model_platform: "tensorflow"',
                 "    model_version_policy { specific { " + " ".join(f"versions: {v}" for v in served) + " } }"]
        lines += [f'    version_labels {{ key: "{label}" value: {v} }}' for label, v in sorted(model_labels.items())]
        blocks.append("  config {\n" + "\n".join(lines) + "\n  }")
    return "model_config_list {\n" + "\n".join(blocks) + "\n}\n"


def batching_config_text(max_batch_size: int = 64, batch_timeout_micros: int = 2000,
                         max_enqueued_batches: int = 100, num_batch_threads: int = 2) -> str:
    """``BatchingParameters`` text proto. A short timeout keeps batch-1 latency close to unbatched."""
    return (f"max_batch_size {{ value: {max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {batch_timeout_micros} }}\n"
            f"max_enqueued_batches {{ value: {max_enqueued_batches} }}\n"
            f"num_batch_threads {{ value: {num_batch_threads} }}\n")


def write_serving_configs(base: str | Path, names: list[str], **kwargs: Any) -> dict[str, Path]:
    """Write ``models.config`` and ``batching.config`` into ``base`` (atomically, by rename)."""
    base = Path(base)
    out = {}
    for filename, text in (("models.config", models_config_text(base, names, **kwargs)),
                           ("batching.config", batching_config_text())):
        path = base / filename
        tmp = path.with_name(f".{filename}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        out[filename] = path
    return out


def _tensor_proto(value: Any) -> Any:
    array = np.asarray(value)
    if array.dtype.kind in "US":
        array = np.char.encode(array.astype(str), "utf-8") if array.dtype.kind == "U" else array
        return tf.make_tensor_proto(array.tolist(), dtype=tf.string, shape=array.shape)
    return tf.make_tensor_proto(array)


def warmup_records(model_name: str, requests: list[tuple[str, dict[str, Any]]]) -> bytes:
    """A TFRecord file of ``PredictionLog`` protos, one per (signature name, inputs) request."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    tmpdir = Path(tempfile.mkdtemp(prefix="tfmmrec-warmup-"))
    path = tmpdir / WARMUP_FILE
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    data = path.read_bytes()
    shutil.rmtree(tmpdir, ignore_errors=True)
    return data


def read_warmup_records(path: str | Path) -> list[Any]:
    """Parse a warm-up file back into ``PredictionLog`` protos (what TF Serving does on load)."""
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs
