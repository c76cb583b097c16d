"""A small HTTP server speaking TF Serving's REST API over exported SavedModels.

For tests and local development where ``tensorflow_model_server`` is not installed (it ships
as a Docker image; see ``deploy/``). It serves ``BASE/NAME/VERSION`` directories with the
endpoints clients use:

- ``GET  /v1/models/NAME[/versions/N | /labels/L]``: model status (``AVAILABLE`` per version),
- ``GET  /v1/models/NAME[...]/metadata``: the signatures,
- ``POST /v1/models/NAME[...]:predict``: a predict body, answered by ``rest_format``.

Labels come from a ``models.config`` in BASE when there is one (``stable`` otherwise means
the newest version). Like this module's sibling, it imports only the standard library, numpy
and tensorflow, so it can run in a process that never imports tfmmrec. Not for production.

It answers every request, as TF Serving does, with JSON: ``{"error": ...}`` and 400 for a bad
request, 404 for a model name that is not a plain directory name inside BASE (``..``, ``/``,
absolute paths never reach outside it), 411/400 for a missing or malformed Content-Length, 413
for a body over ``MAX_BODY_BYTES``, 408 when the body does not arrive within ``READ_TIMEOUT``
seconds (a wrong Content-Length never holds a handler thread), and 500 for anything unexpected,
never a dropped connection or a traceback on the server's console.
"""
from __future__ import annotations

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    from tfmmrec.serving.rest_format import RequestError, SavedModelEndpoint
except ImportError:  # loaded by path in a TF-only process: the sibling module sits next to this file
    sys.path.insert(0, str(Path(__file__).parent))
    from rest_format import RequestError, SavedModelEndpoint  # type: ignore[no-redef]

MAX_BODY_BYTES = 16 * 2**20  # TF Serving's own REST limit is in this range; no test body comes near it
READ_TIMEOUT = 10.0  # seconds a client may take to send its headers or body
# A model name is one plain directory name: no separators, no "." or ".." (checked as well).
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<action>/metadata|:predict)?$")


class ModelRepository:
    """Loads each ``BASE/NAME/VERSION`` on first use and keeps it."""

    def __init__(self, base: str | Path) -> None:
        self.base = Path(base)
        self._loaded: dict[tuple[str, int], SavedModelEndpoint] = {}
        self._lock = threading.Lock()

    def model_dir(self, name: str) -> Path | None:
        """``BASE/name`` if ``name`` is a plain directory name and it stays inside BASE, else None."""
        if not _MODEL_NAME.match(name) or name in (".", ".."):
            return None
        path = self.base / name
        try:
            inside = path.resolve().parent == self.base.resolve()
        except OSError:
            return None
        return path if inside else None

    def versions(self, name: str) -> list[int]:
        model_dir = self.model_dir(name)
        if model_dir is None or not model_dir.is_dir():
            return []
        return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file())

    def labels(self, name: str) -> dict[str, int]:
        config = self.base / "models.config"
        out: dict[str, int] = {}
        if config.is_file():
            text = config.read_text()
            for block in re.findall(r"config\s*\{(.*?)\n  \}", text, flags=re.S):
                if re.search(rf'name:\s*"{re.escape(name)}"', block):
                    out = {k: int(v) for k, v in re.findall(r'key:\s*"([^"]+)"\s*value:\s*(\d+)', block)}
        versions = self.versions(name)
        if "stable" not in out and versions:
            out["stable"] = versions[-1]
        return out

    def resolve(self, name: str, version: str | None, label: str | None) -> int:
        versions = self.versions(name)
        if not versions:
            raise LookupError(f"Servable not found for request: Latest({name})")
        if label is not None:
            labels = self.labels(name)
            if label not in labels:
                raise LookupError(f"Unrecognized servable version label: {label}")
            return labels[label]
        if version is not None:
            if int(version) not in versions:
                raise LookupError(f"Servable not found for request: Specific({name}, {version})")
            return int(version)
        return versions[-1]

    def get(self, name: str, version: int) -> SavedModelEndpoint:
        model_dir = self.model_dir(name)
        if model_dir is None:
            raise LookupError(f"Servable not found for request: Latest({name})")
        with self._lock:
            key = (name, version)
            if key not in self._loaded:
                self._loaded[key] = SavedModelEndpoint(model_dir / str(version))
            return self._loaded[key]


class _Handler(BaseHTTPRequestHandler):
    repository: ModelRepository
    timeout = READ_TIMEOUT  # applied to the socket by StreamRequestHandler.setup: every read is bounded
    max_body_bytes = MAX_BODY_BYTES

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    def _guarded(self, handler: Any) -> None:
        """Run ``handler``; whatever goes wrong becomes a JSON answer (500), not a dropped connection."""
        try:
            handler()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - the one place every unexpected error becomes an answer
            self.close_connection = True
            try:
                self._reply(500, {"error": f"internal error: {type(e).__name__}: {e}"})
            except OSError:
                pass

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[re.Match[str], int] | None:
        match = _ROUTE.match(self.path)
        if not match:
            self._reply(404, {"error": f"Malformed request: {self.command} {self.path}"})
            return None
        try:
            version = self.repository.resolve(match["name"], match["version"], match["label"])
        except LookupError as e:
            self._reply(404, {"error": str(e)})
            return None
        return match, version

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._guarded(self._post)

    def _get(self) -> None:
        routed = self._route()
        if routed is None:
            return
        match, version = routed
        name = match["name"]
        if match["action"] == "/metadata":
            meta = self.repository.get(name, version).metadata()
            self._reply(200, {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
                              "metadata": {"signature_def": {"signature_def": meta}}})
        elif match["action"] is None:
            versions = [version] if (match["version"] or match["label"]) else self.repository.versions(name)
            self._reply(200, {"model_version_status": [
                {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                for v in sorted(versions, reverse=True)]})
        else:
            self._reply(405, {"error": "predict needs POST"})

    def _body(self) -> bytes | None:
        """The request body, or None after answering why it cannot be read."""
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            self._reply(411, {"error": "a predict request needs a Content-Length header"})
            return None
        if not length.strip().isdigit():
            self.close_connection = True
            self._reply(400, {"error": f"Content-Length must be a non-negative integer, got {length[:40]!r}"})
            return None
        size = int(length)
        if size > self.max_body_bytes:
            self.close_connection = True  # the rest of the body must not be taken for the next request
            self._discard(min(size, 4 * self.max_body_bytes))
            self._reply(413, {"error": f"the request body is {size} bytes; the limit is {self.max_body_bytes}"})
            return None
        try:
            body = self.rfile.read(size)
        except TimeoutError:
            body = None
        if body is None or len(body) < size:
            self.close_connection = True
            self._reply(408, {"error": f"the request body did not arrive: expected {size} bytes (Content-Length) "
                                       f"within {self.timeout:g} s"})
            return None
        return body

    def _discard(self, size: int) -> None:
        """Read and drop up to ``size`` body bytes in small chunks (bounded by the read timeout),
        so a client still sending gets the answer instead of a broken pipe."""
        try:
            while size > 0:
                chunk = self.rfile.read1(min(size, 1 << 16))  # type: ignore[attr-defined]
                if not chunk:
                    return
                size -= len(chunk)
        except OSError:
            return

    def _post(self) -> None:
        routed = self._route()
        if routed is None:
            return
        match, version = routed
        if match["action"] != ":predict":
            self._reply(404, {"error": f"Malformed request: POST {self.path}"})
            return
        body = self._body()
        if body is None:
            return
        try:
            self._reply(200, self.repository.get(match["name"], version).predict(body))
        except RequestError as e:
            self._reply(400, {"error": str(e)})
        except RecursionError:
            self._reply(400, {"error": "the request nests too deeply"})


def serve(base: str | Path, host: str = "127.0.0.1", port: int = 8501, *, max_body_bytes: int = MAX_BODY_BYTES,
          read_timeout: float = READ_TIMEOUT) -> ThreadingHTTPServer:
    """Start serving ``base`` in a background thread; ``server.shutdown()`` stops it."""
    handler = type("Handler", (_Handler,), {"repository": ModelRepository(base), "max_body_bytes": max_body_bytes,
                                            "timeout": read_timeout})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    base_dir, port = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8501
    srv = serve(base_dir, port=port)
    print(f"serving {base_dir} on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    threading.Event().wait()
