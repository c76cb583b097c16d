"""Bad requests against exported models, through the stand-in TF Serving server and directly.

One small catalog (text, WAV audio, a categorical and a numeric field) is trained and exported
once for the module; ``tfmmrec.serving.dev_server`` serves it on 127.0.0.1 with a small body
limit and a short read timeout. Every case is a request a client could send by mistake or on
purpose; each asserts its clean outcome: the HTTP status, a JSON ``{"error": ...}`` naming the
input at fault, and that the server still answers good requests afterwards (no handler thread
held, no dropped connection). The signature-level cases call the loaded SavedModel directly: an
``InvalidArgumentError`` whose message names the input, as TF Serving would return it.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import struct
import wave
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfmmrec.config import RunConfig
from tfmmrec.data.manifest import Manifest, ModalitySpec
from tfmmrec.pipeline import run
from tfmmrec.serving.dev_server import serve

BODY_LIMIT = 1 << 20  # 1 MiB for this server (the default is 16 MiB)
READ_TIMEOUT = 1.0
MAX_K = 8


def _wav(seconds: float = 0.5, rate: int = 16000, freq: float = 440.0) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        t = np.arange(int(seconds * rate)) / rate
        w.writeframes((np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes())
    return buf.getvalue()


def _wav_with_rate_zero() -> bytes:
    data = bytearray(_wav())
    assert data[12:16] == b"fmt "
    struct.pack_into("<II", data, 24, 0, 0)  # the fmt chunk's sample rate and byte rate, consistently 0
    return bytes(data)


def _b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("requests")
    data = root / "data"
    (data / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    n_items, n_users = 40, 30
    audio = []
    for i in range(n_items):
        if i % 8 == 7:
            audio.append("")  # no audio
            continue
        (data / "audio" / f"{i}.wav").write_bytes(_wav(freq=200.0 + 50 * (i % 4)))
        audio.append(f"audio/{i}.wav")
    pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "title": [f"song {i % 4} tune" for i in range(n_items)],
                  "audio_path": audio, "brand": [f"b{i % 3}" for i in range(n_items)],
                  "price": rng.uniform(1, 10, n_items).round(2)}).to_csv(data / "items.csv", index=False)
    rows = [(f"u{u}", f"i{i}") for u in range(n_users) for i in rng.choice(n_items, 8, replace=False)]
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_csv(data / "interactions.csv", index=False)
    Manifest(items="items.csv", interactions="interactions.csv", name="req", timestamp=None,
             categorical=["brand"], numeric=["price"],
             modalities={"title": ModalitySpec(kind="text", columns=["title"]),
                         "sound": ModalitySpec(kind="audio", column="audio_path")}).save(data)
    cfg = RunConfig().with_overrides(["retrieval.epochs=1", "ranking.epochs=1", "train.id_only=false",
                                      "retrieval.embedding_dim=8", "tensorboard.enabled=false",
                                      f"export.top_k={MAX_K}", "train.backup_every_steps=0",
                                      "retrieval.temperature_candidates=[]", "retrieval.warm_tower=id_content"])
    result = run(data, root / "run", cfg, export_dir=root / "models", verbose=0)
    # A servable version right above BASE: what ``/v1/models/..`` would reach if names were not confined.
    (root / "1").symlink_to(result.exports["retrieval"], target_is_directory=True)
    return {"base": root / "models", "retrieval": result.exports["retrieval"], "ranking": result.exports["ranking"],
            "users": [str(u) for u in result.data.user_ids], "items": [str(i) for i in result.item_ids]}


@pytest.fixture(scope="module")
def server(exported: dict[str, Any]):
    srv = serve(exported["base"], port=0, max_body_bytes=BODY_LIMIT, read_timeout=READ_TIMEOUT)
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _post(port: int, path: str, body: bytes | str | dict | list) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def _raw(port: int, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send bytes as they are (headers a client library would fix) and read the JSON answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


RETRIEVAL = "/v1/models/req_retrieval:predict"
RANKING = "/v1/models/req_ranking:predict"
U = "u1"

# (case, path, body, status, text the error must contain)
BAD_REQUESTS = [
    ("malformed JSON", RETRIEVAL, '{"instances": [', 400, "JSON Parse error"),
    ("not UTF-8", RETRIEVAL, b'{"inputs": "\xff\xfe"}', 400, "not UTF-8"),
    ("a JSON list as body", RETRIEVAL, [1, 2], 400, "must be a JSON object"),
    ("a JSON string as body", RETRIEVAL, '"hello"', 400, "must be a JSON object"),
    ("signature_name a list", RETRIEVAL, {"signature_name": ["x"], "inputs": {"user_id": [U]}}, 400,
     "signature_name must be a string"),
    ("signature_name a number", RETRIEVAL, {"signature_name": 3, "inputs": {"user_id": [U]}}, 400,
     "signature_name must be a string"),
    ("unknown signature", RETRIEVAL, {"signature_name": "nope", "inputs": {"user_id": [U]}}, 400, '"nope" not found'),
    ("instances and inputs", RETRIEVAL, {"instances": [{"user_id": U}], "inputs": {"user_id": [U]}}, 400,
     "exactly one of"),
    ("neither instances nor inputs", RETRIEVAL, {"signature_name": "serving_default"}, 400, "exactly one of"),
    ("JSON nested 100000 deep", RETRIEVAL, '{"inputs": ' + "[" * 100000 + "]" * 100000 + "}", 400, "deeper than"),
    ("JSON nested 40 deep", RETRIEVAL, '{"inputs": {"user_id": ' + "[" * 40 + '"u1"' + "]" * 40 + "}}", 400,
     "deeper than 32"),
    ("k beyond int32", RETRIEVAL, {"inputs": {"user_id": [U], "k": [4294967301]}}, 400,
     "input k: 4294967301 is out of range"),
    ("k below int32", RETRIEVAL, {"inputs": {"user_id": [U], "k": [-2**40]}}, 400, "input k"),
    ("k fractional", RETRIEVAL, {"inputs": {"user_id": [U], "k": [1.5]}}, 400, "input k: JSON value 1.5"),
    ("k a string", RETRIEVAL, {"inputs": {"user_id": [U], "k": ["5"]}}, 400, "input k"),
    ("k a bool", RETRIEVAL, {"inputs": {"user_id": [U], "k": [True]}}, 400, "input k"),
    ("k NaN", RETRIEVAL, '{"inputs": {"user_id": ["u1"], "k": [NaN]}}', 400, "input k"),
    ("k zero", RETRIEVAL, {"inputs": {"user_id": [U], "k": [0]}}, 400, f"k must be between 1 and {MAX_K}"),
    ("k above the maximum", RETRIEVAL, {"inputs": {"user_id": [U], "k": [MAX_K + 1]}}, 400, "k must be between"),
    ("user_id a number", RETRIEVAL, {"inputs": {"user_id": [7]}}, 400, "input user_id: JSON value 7"),
    ("user_id null", RETRIEVAL, {"inputs": {"user_id": [None]}}, 400, "input user_id"),
    ("user_id rank 2", RETRIEVAL, {"inputs": {"user_id": [[U]]}}, 400, "input user_id: shape [1, 1]"),
    ("user_id rank 0", RETRIEVAL, {"inputs": {"user_id": U}}, 400, "input user_id: shape []"),
    ("empty batch", RETRIEVAL, {"inputs": {"user_id": []}}, 400, "user_id: the batch is empty"),
    ("empty instances", RETRIEVAL, {"instances": []}, 400, "non-empty list"),
    ("instances with other keys", RETRIEVAL, {"instances": [{"user_id": U}, {"user_id": U, "k": 2}]}, 400,
     "every instance must name the same inputs"),
    ("unknown input", RETRIEVAL, {"inputs": {"user_id": [U], "user": [U]}}, 400, "unknown input(s) ['user']"),
    ("ragged exclusions", RETRIEVAL, {"inputs": {"user_id": [U], "exclude_item_ids": [["i1"], ["i2", "i3"]]}}, 400,
     "exclude_item_ids"),
    ("exclusion rows != users", RETRIEVAL,
     {"inputs": {"user_id": [U, U, U], "exclude_item_ids": [["i1"], ["i2"]]}}, 400,
     "exclude_item_ids must have 1 row or as many rows as user_id"),
    ("ranking batch sizes differ", RANKING, {"inputs": {"user_id": [U, U], "item_id": ["i1", "i2", "i3"]}}, 400,
     "item_id has"),
    ("ranking rank 2 item_id", RANKING, {"inputs": {"user_id": [U], "item_id": [["i1"]]}}, 400,
     "input item_id: shape [1, 1]"),
    ("invalid base64", RETRIEVAL, {"signature_name": "embed_item_content",
                                   "inputs": {"sound": [{"b64": "!!!"}]}}, 400, "input sound: invalid base64"),
]


@pytest.mark.parametrize("case,path,body,status,text", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_request_gets_a_json_error_naming_what_is_wrong(server: int, case: str, path: str, body: Any,
                                                             status: int, text: str) -> None:
    got, reply = _post(server, path, body)
    assert (got, set(reply)) == (status, {"error"}), (case, reply)
    assert text in reply["error"], (case, reply["error"])
    assert "Traceback" not in reply["error"] and "function_node" not in reply["error"]


def _content(exported: dict[str, Any], rows: int, **overrides: Any) -> dict[str, Any]:
    inputs = {"title": ["song 1 tune"] * rows, "sound": [_b64(_wav())] * rows, "brand": ["b1"] * rows,
              "price": [3.0] * rows}
    inputs.update(overrides)
    return {"signature_name": "embed_item_content", "inputs": inputs}


CONTENT_CASES = [
    ("an empty content batch", dict(rows=0), "sound: the batch is empty"),
    ("a batch-1 numeric field over 3 items", dict(rows=3, price=[1.0]), "price has"),
    ("a text column one row short", dict(rows=3, title=["a", "b"]), "title has"),
    ("a WAV whose header says rate 0", dict(rows=1, sound=[_b64(_wav_with_rate_zero())]),
     "sound: the WAV header says sample rate 0"),
    ("audio bytes that are not a WAV", dict(rows=1, sound=[_b64(b"ID3 not a wav at all")]),
     "sound: bytes are not a RIFF/WAVE"),
    ("a numeric field given as text", dict(rows=1, price=["cheap"]), "input price"),
]


@pytest.mark.parametrize("case,spec,text", CONTENT_CASES, ids=[c[0] for c in CONTENT_CASES])
def test_bad_content_is_refused_naming_the_input(server: int, exported: dict[str, Any], case: str,
                                                 spec: dict[str, Any], text: str) -> None:
    got, reply = _post(server, RETRIEVAL, _content(exported, **spec))
    assert got == 400 and text in reply["error"], (case, reply)


def test_good_content_still_embeds(server: int, exported: dict[str, Any]) -> None:
    got, reply = _post(server, RETRIEVAL, _content(exported, rows=2, sound=[_b64(_wav()), {"b64": ""}]))
    assert got == 200 and np.array(reply["outputs"]).shape == (2, 8), reply


def test_exclusions_that_leave_fewer_than_k_items_pad_with_empty_ids_never_excluded_ones(
        server: int, exported: dict[str, Any]) -> None:
    keep = exported["items"][:3]
    exclude = [i for i in exported["items"] if i not in keep]
    got, reply = _post(server, RETRIEVAL, {"inputs": {"user_id": [U, "unknown-user"], "exclude_item_ids": [exclude],
                                                      "k": [6]}})
    assert got == 200, reply
    for ids, scores in zip(reply["outputs"]["item_ids"], reply["outputs"]["scores"]):
        assert sorted(ids[:3]) == sorted(keep) and ids[3:] == ["", "", ""]
        assert all(np.isfinite(scores[:3])) and scores[3:] == [-np.inf] * 3


URL_CASES = [
    ("model name ..", "/v1/models/..:predict", 404),
    ("model name . ", "/v1/models/.:predict", 404),
    ("model name ..%2F", "/v1/models/..%2Frequests:predict", 404),
    ("encoded absolute path", "/v1/models/%2Ftmp:predict", 404),
    ("empty model name", "/v1/models/:predict", 404),
    ("double slash", "/v1/models//req_retrieval:predict", 404),
    ("unknown version", "/v1/models/req_retrieval/versions/99:predict", 404),
    ("unknown label", "/v1/models/req_retrieval/labels/canary:predict", 404),
    ("not a predict action", "/v1/models/req_retrieval:classify", 404),
]


@pytest.mark.parametrize("case,path,status", URL_CASES, ids=[c[0] for c in URL_CASES])
def test_model_paths_never_leave_the_base_folder(server: int, exported: dict[str, Any], case: str, path: str,
                                                 status: int) -> None:
    # BASE/.. holds a real version "1" (see ``exported``): ".." would have served it before.
    got, reply = _post(server, path, {"inputs": {"user_id": [U]}})
    assert (got, set(reply)) == (status, {"error"}), (case, reply)


def test_a_model_dir_symlinked_out_of_the_base_folder_is_not_served(server: int, exported: dict[str, Any]) -> None:
    link = exported["base"] / "elsewhere"
    if not link.exists():
        outside = exported["base"].parent / "outside_models"
        outside.mkdir(exist_ok=True)
        (outside / "1").symlink_to(exported["retrieval"], target_is_directory=True)
        link.symlink_to(outside, target_is_directory=True)
    got, reply = _post(server, "/v1/models/elsewhere:predict", {"inputs": {"user_id": [U]}})
    assert got == 404 and "Servable not found" in reply["error"]


def _head(path: str, length: str | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_body_over_the_limit_is_refused_with_413(server: int) -> None:
    body = json.dumps({"inputs": {"user_id": ["x" * 1000] * (BODY_LIMIT // 1000 + 10)}}).encode()
    got, reply = _post(server, RETRIEVAL, body)  # sent whole: the server drops it and answers
    assert got == 413 and f"the limit is {BODY_LIMIT}" in reply["error"]
    # Announced as 60 MB, never sent: answered at once, nothing read into memory.
    got, reply = _raw(server, _head(RETRIEVAL, str(60 * 2**20)))
    assert got == 413 and f"the request body is {60 * 2**20} bytes" in reply["error"]


@pytest.mark.parametrize("length,status,text", [
    (None, 411, "needs a Content-Length"),
    ("-5", 400, "non-negative integer"),
    ("abc", 400, "non-negative integer"),
    ("1000", 408, "did not arrive: expected 1000 bytes"),  # more than is sent: the read times out
], ids=["missing", "negative", "not a number", "longer than the body"])
def test_a_wrong_content_length_is_answered_and_never_holds_the_handler(server: int, length: str | None,
                                                                        status: int, text: str) -> None:
    got, reply = _raw(server, _head(RETRIEVAL, length) + b'{"inputs": {"user_id": ["u1"]}}')
    assert got == status and text in reply["error"], reply


def test_get_on_predict_and_metadata_of_a_missing_model(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    conn.request("GET", "/v1/models/..%2F..%2Fetc/metadata")
    reply = conn.getresponse()
    assert reply.status == 404 and "error" in json.loads(reply.read())
    conn.request("GET", RETRIEVAL)
    reply = conn.getresponse()
    assert reply.status == 405 and json.loads(reply.read()) == {"error": "predict needs POST"}
    conn.close()


def test_the_server_still_answers_after_every_bad_request(server: int) -> None:
    # Run last in this module (pytest keeps file order): no handler is stuck, no connection dropped.
    for _ in range(3):
        got, reply = _post(server, RETRIEVAL, {"inputs": {"user_id": [U], "k": [3]}})
        assert got == 200 and len(reply["outputs"]["item_ids"][0]) == 3


# --- the signatures themselves (what TF Serving returns as 400) ----------------------------------

def test_signatures_raise_invalid_argument_naming_the_input(exported: dict[str, Any]) -> None:
    retrieval = tf.saved_model.load(str(exported["retrieval"]))
    recommend = retrieval.signatures["serving_default"]
    defaults = dict(recent_item_ids=tf.constant([[""]]), exclude_item_ids=tf.constant([[""]]), k=tf.constant([3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="user_id: the batch is empty"):
        recommend(user_id=tf.constant([], tf.string), **defaults)
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must have 1 row or as many rows as user_id"):
        recommend(user_id=tf.constant([U, U, U]), **{**defaults, "k": tf.constant([3, 3])})
    embed = retrieval.signatures["embed_item_content"]
    inputs = dict(title=tf.constant(["a", "b"]), sound=tf.constant([b"", b""]), brand=tf.constant(["b1", "b1"]),
                  price=tf.constant([1.0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="price has"):
        embed(**inputs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample rate"):
        embed(**{**inputs, "sound": tf.constant([_wav_with_rate_zero()] * 2), "price": tf.constant([1.0, 2.0])})
    ranking = tf.saved_model.load(str(exported["ranking"]))
    for signature in ("serving_default", "explain"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="item_id has"):
            ranking.signatures[signature](user_id=tf.constant([U]), item_id=tf.constant(["i1", "i2"]))
