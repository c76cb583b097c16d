"""TF Serving's REST predict format, applied to a SavedModel loaded in this process.

It follows the rules of TF Serving's RESTful API (https://www.tensorflow.org/tfx/serving/api_rest):

- ``{"signature_name": S, "instances": [...]}`` is the row format: one entry per example,
  either a bare value (when the signature has one input) or an object with one key per input;
  the values of every instance are stacked along a new batch dimension, so they must have the
  same shape. The reply is ``{"predictions": [...]}``: per example, a bare value (one output)
  or an object with one key per output.
- ``{"signature_name": S, "inputs": {...}}`` (or a bare value for one input) is the columnar
  format: each input is given whole, batch dimension included. The reply is
  ``{"outputs": {...}}`` (a bare value for one output).
- ``signature_name`` defaults to ``serving_default``. ``instances`` and ``inputs`` exclude each other.
- Binary values are ``{"b64": "<base64>"}``; string outputs whose name ends in ``_bytes`` are
  sent back the same way, other strings as text.
- An input left out of the request takes the SignatureDef's default value if it has one;
  otherwise the request fails. A value of the wrong JSON type for the input's dtype fails.
- Errors are ``{"error": "<message>"}`` with HTTP status 400, and name the input at fault: JSON
  that does not parse (or nests deeper than ``MAX_DEPTH``), a ``signature_name`` that is not a
  string, a value out of its dtype's range (``k`` beyond int32 is refused, never wrapped), an
  input whose shape does not fit the SignatureDef, an error raised by the signature itself.

This module imports only ``json``, ``base64``, ``numpy`` and ``tensorflow`` and nothing from
tfmmrec, so a serving process (or a test that must not import tfmmrec) can load it by path.
It exists for tests and local development, as a stand-in where the real
``tensorflow_model_server`` is not available; production traffic goes to TF Serving itself.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

# Deeper JSON than any signature input needs (rank <= 3 plus the row-format objects) is refused
# before it is walked, so no request can exhaust the recursion limit.
MAX_DEPTH = 32


class RequestError(ValueError):
    """A request TF Serving would reject with HTTP 400."""


class SavedModelEndpoint:
    """One loaded model version answering REST predict bodies."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.model = tf.saved_model.load(str(self.path))
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((self.path / "saved_model.pb").read_bytes())
        self.signature_defs = dict(proto.meta_graphs[0].signature_def)

    def metadata(self) -> dict[str, Any]:
        """The signature part of ``GET /v1/models/NAME/metadata``."""
        def info(tensor: Any) -> dict[str, Any]:
            dims = [{"size": str(d.size), "name": ""} for d in tensor.tensor_shape.dim]
            return {"dtype": types_pb2.DataType.Name(tensor.dtype),
                    "tensor_shape": {"dim": dims, "unknown_rank": tensor.tensor_shape.unknown_rank},
                    "name": tensor.name}
        return {name: {"inputs": {k: info(v) for k, v in sig.inputs.items()},
                       "outputs": {k: info(v) for k, v in sig.outputs.items()},
                       "method_name": sig.method_name, "defaults": sorted(sig.defaults)}
                for name, sig in self.signature_defs.items() if name != "__saved_model_init_op"}

    def predict(self, body: str | bytes | dict[str, Any]) -> dict[str, Any]:
        """Answer a predict body; raises ``RequestError`` where TF Serving answers 400."""
        request = body if isinstance(body, dict) else _parse_json(body)
        if not isinstance(request, dict):
            raise RequestError("the request body must be a JSON object")
        _check_depth(request)
        name = request.get("signature_name", "serving_default")
        if not isinstance(name, str):
            raise RequestError(f"signature_name must be a string, got {type(name).__name__}: "
                               f"{json.dumps(name)[:100]}")
        if name not in self.signature_defs or name == "__saved_model_init_op":
            raise RequestError(f"Serving signature name: \"{name}\" not found in signature def; "
                               f"available: {sorted(n for n in self.signature_defs if not n.startswith('__'))}")
        sig = self.signature_defs[name]
        if ("instances" in request) == ("inputs" in request):
            raise RequestError("JSON Value must have exactly one of 'instances' (row format) or 'inputs' "
                               "(columnar format)")
        row = "instances" in request
        given = _rows_to_columns(request["instances"], list(sig.inputs)) if row else \
            _columns(request["inputs"], list(sig.inputs))
        feeds = {}
        # The inputs the request gives are converted first (in name order, not the protobuf map's
        # order, which differs between protobuf versions): a bad value is reported as such even when
        # another input is missing too.
        for alias in sorted(set(given) & set(sig.inputs)):
            info = sig.inputs[alias]
            feeds[alias] = _to_tensor(given.pop(alias), tf.dtypes.as_dtype(info.dtype), alias)
            _check_shape(feeds[alias], info, alias)
        for alias, info in sorted(sig.inputs.items()):
            dtype = tf.dtypes.as_dtype(info.dtype)
            if alias in feeds:
                continue
            if alias in sig.defaults:
                feeds[alias] = tf.constant(tf.make_ndarray(sig.defaults[alias]), dtype)
            else:
                raise RequestError(f"Signature input alias: {alias} not found in request and no default value "
                                   f"provided. Inputs expected: {sorted(sig.inputs)}")
        if given:
            raise RequestError(f"unknown input(s) {sorted(given)} for signature {name}; inputs: {sorted(sig.inputs)}")
        try:
            outputs = self.model.signatures[name](**feeds)
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
            raise RequestError(_op_error_message(e.message or str(e))) from None
        except (TypeError, ValueError) as e:  # the inputs do not bind to the signature
            raise RequestError(f"signature {name}: the inputs do not fit it ({str(e).splitlines()[0][:300]})") from None
        values = {k: _to_json(v.numpy(), k) for k, v in outputs.items()}
        if not row:
            return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
        batch = {len(v) for v in values.values()}
        if len(batch) != 1:
            raise RequestError(f"outputs of signature {name} have different batch sizes {sorted(batch)}; "
                               "use the columnar format")
        n = batch.pop()
        if len(values) == 1:
            return {"predictions": next(iter(values.values()))}
        return {"predictions": [{k: v[i] for k, v in values.items()} for i in range(n)]}


def _op_error_message(message: str) -> str:
    """The op's own message, without the graph-execution preamble and node traces around it."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "Op:__inference")
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(noise)]
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", " ".join(kept)) or message


def _parse_json(body: str | bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except json.JSONDecodeError as e:
        raise RequestError(f"JSON Parse error: {e}") from None
    except UnicodeDecodeError as e:
        raise RequestError(f"JSON Parse error: the body is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise RequestError(f"JSON Parse error: nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(request, dict):
        raise RequestError("the request body must be a JSON object")
    return request


def _check_depth(value: Any) -> None:
    """Refuse JSON nested deeper than ``MAX_DEPTH`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RequestError(f"the request nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _check_shape(tensor: tf.Tensor, info: Any, alias: str) -> None:
    """The SignatureDef's rank and fixed dimensions of input ``alias`` (TF Serving would fail
    deep inside the graph instead)."""
    shape = info.tensor_shape
    if shape.unknown_rank:
        return
    expected = [d.size for d in shape.dim]
    actual = tensor.shape.as_list()
    if len(actual) != len(expected) or any(e >= 0 and a != e for a, e in zip(actual, expected)):
        want = "[" + ", ".join("?" if e < 0 else str(e) for e in expected) + "]"
        raise RequestError(f"input {alias}: shape {actual} does not match the signature's {want} "
                           f"(rank {len(expected)}{'; the batch dimension comes first' if expected else ''})")


def _rows_to_columns(instances: Any, names: list[str]) -> dict[str, Any]:
    if not isinstance(instances, list) or not instances:
        raise RequestError("'instances' must be a non-empty list")
    if not all(isinstance(i, dict) and "b64" not in i for i in instances):
        if len(names) != 1:
            raise RequestError(f"instances must be objects with keys {sorted(names)}: the signature has "
                               f"{len(names)} inputs")
        return {names[0]: instances}
    keys = set(instances[0])
    for n, instance in enumerate(instances):
        if set(instance) != keys:
            raise RequestError(f"instance {n} has keys {sorted(instance)}, instance 0 has {sorted(keys)}: "
                               "every instance must name the same inputs")
    return {k: [instance[k] for instance in instances] for k in keys}


def _columns(inputs: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(inputs, dict) and "b64" not in inputs:
        return dict(inputs)
    if len(names) != 1:
        raise RequestError(f"'inputs' must be an object with keys {sorted(names)}")
    return {names[0]: inputs}


def _decode(value: Any, dtype: tf.DType, alias: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, dtype, alias) for v in value]
    if dtype == tf.string:
        if isinstance(value, dict) and set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (ValueError, TypeError):
                raise RequestError(f"input {alias}: invalid base64 in {{\"b64\": ...}}") from None
        if isinstance(value, str):
            return value.encode("utf-8")
        raise RequestError(f"input {alias}: JSON value {json.dumps(value)} is not of expected type: string")
    if isinstance(value, (dict, str)) or value is None:
        raise RequestError(f"input {alias}: JSON value {json.dumps(value)} is not of expected type: {dtype.name}")
    if dtype == tf.bool:
        if not isinstance(value, bool):
            raise RequestError(f"input {alias}: JSON value {value} is not of expected type: bool")
        return value
    if isinstance(value, bool):
        raise RequestError(f"input {alias}: JSON value {value} is not of expected type: {dtype.name}")
    if not isinstance(value, (int, float)):
        raise RequestError(f"input {alias}: JSON value {json.dumps(value)} is not of expected type: {dtype.name}")
    if dtype.is_integer:
        if not np.isfinite(value) or not float(value).is_integer():
            raise RequestError(f"input {alias}: JSON value {value} is not of expected type: {dtype.name}")
        value = int(value)
        if not dtype.min <= value <= dtype.max:
            raise RequestError(f"input {alias}: {value} is out of range for {dtype.name} "
                               f"[{dtype.min}, {dtype.max}]")
    return value


def _to_tensor(value: Any, dtype: tf.DType, alias: str) -> tf.Tensor:
    decoded = _decode(value, dtype, alias)
    try:
        array = np.array(decoded, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    except (ValueError, OverflowError) as e:
        raise RequestError(f"input {alias}: {e} (row-format values must all have the same shape)") from None
    if array.dtype == object and dtype != tf.string or (dtype == tf.string and any(
            isinstance(x, list) for x in array.reshape(-1))):
        raise RequestError(f"input {alias}: values must all have the same shape")
    return tf.constant(array, dtype)


def _to_json(array: np.ndarray, name: str) -> Any:
    if array.dtype == object:
        as_b64 = name.endswith("_bytes")
        convert = np.vectorize(
            lambda b: {"b64": base64.b64encode(b).decode()} if as_b64 else b.decode("utf-8", "replace"),
            otypes=[object])
        return convert(array).tolist() if array.size else array.tolist()
    if array.dtype.kind == "f":
        return [_to_json(a, name) for a in array] if array.ndim else float(array)
    return array.tolist()
