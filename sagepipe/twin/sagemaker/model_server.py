"""The twin's SageMaker hosting container: one process serving /ping and /invocations.

Usage::

    python -m sagepipe.twin.sagemaker.model_server --model-dir DIR --code-dir DIR \\
        --program inference.py --host 127.0.0.1 --port 0 --ready-file PATH

Emulates the HTTP contract of a SageMaker inference container
("Use your own inference code with hosting services",
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html) as
implemented by the scikit-learn container / sagemaker-inference-toolkit handler service:

* the user program (``--program`` inside ``--code-dir``, i.e. ``/opt/ml/model/code``)
  must define ``model_fn(model_dir)``, ``input_fn(body, content_type)``,
  ``predict_fn(data, model)`` and ``output_fn(prediction, accept)``; ``model_fn`` runs
  once before the server answers; if it raises, the process exits 2 with the error on
  stderr and never writes the ready file;
* ``GET /ping`` -> 200, empty body (500 when env ``SAGEPIPE_TWIN_FAIL_PING=1``, a
  failure-injection knob for rollback tests);
* ``POST /invocations`` -> input_fn / predict_fn / output_fn with the request
  ``Content-Type`` (default ``application/json``) and ``Accept`` (missing or ``*/*`` ->
  env ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` or ``application/json``). ``output_fn`` may
  return ``(body, content_type)`` or just the body (content type = accept).
  Errors: a ``ValueError`` whose class is named ``UnsupportedContentType`` (or
  ``UnsupportedFormatError``) -> 415, other ``ValueError`` -> 400, anything else -> 500;
  the body is the message text (``text/plain``). Bodies over 6 MB (the InvokeEndpoint
  limit) -> 413.
* ``GET /execution-parameters`` -> batch-transform defaults JSON.

After binding, ``{"port": N, "pid": P}`` is written atomically to ``--ready-file`` and
``model_server listening on HOST:N`` is printed. SIGTERM/SIGINT shut the server down
cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
HANDLER_NAMES = ("model_fn", "input_fn", "predict_fn", "output_fn")
UNSUPPORTED_NAMES = {"UnsupportedContentType", "UnsupportedFormatError", "UnsupportedMediaType"}


def load_program(code_dir: str | Path, program: str) -> ModuleType:
    """Import the user inference program like the container does.

    Args:
        code_dir: directory containing the program; it is put first on ``sys.path`` so
            the program can import sibling modules.
        program: file name, e.g. ``inference.py``.
    Returns:
        the imported module.
    Raises:
        FileNotFoundError: the program does not exist; AttributeError: a handler
        function is missing; any import-time exception of the program.
    """
    path = Path(code_dir) / program
    if not path.is_file():
        raise FileNotFoundError(f"inference program {path} not found")
    sys.path.insert(0, str(Path(code_dir).resolve()))
    module_name = Path(program).stem
    spec = importlib.util.spec_from_file_location(module_name, str(path))
    if spec is None or spec.loader is None:  # only for paths without a .py loader; program is a .py file
        raise ImportError(f"cannot import inference program {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    missing = [n for n in HANDLER_NAMES if not callable(getattr(module, n, None))]
    if missing:
        raise AttributeError("{} does not define {}".format(program, ", ".join(missing)))
    return module


def status_for_exception(exc: BaseException) -> int:
    """Map a handler exception to an HTTP status (inference-toolkit convention).

    415 for ``UnsupportedContentType``-like ValueErrors, 400 for other ValueErrors,
    500 otherwise.
    """
    if isinstance(exc, ValueError):
        if any(cls.__name__ in UNSUPPORTED_NAMES for cls in type(exc).__mro__):
            return 415
        return 400
    return 500


def _media(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def write_ready_file(path: str | Path, port: int) -> None:
    """Atomically write ``{"port": port, "pid": os.getpid()}`` (temp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
    os.replace(tmp, path)


class InvocationsHandler(BaseHTTPRequestHandler):
    """The container's HTTP contract (see the module docstring); :func:`make_handler` binds it to a model."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid 40 ms delayed-ACK stalls
    server_version = "sagepipe-twin-model-server/1"
    # bound by make_handler: the user program, what its model_fn returned, the default Accept
    module: Any = None
    model: Any = None
    default_accept = "application/json"

    def log_message(self, fmt: str, *args: Any) -> None:  # access log to stderr, compact
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes | None:
        """The request body (chunked or Content-Length); None when it exceeds MAX_PAYLOAD_BYTES."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            total += size
            if total > MAX_PAYLOAD_BYTES:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        return b"".join(chunks)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/ping":
            if os.environ.get("SAGEPIPE_TWIN_FAIL_PING") == "1":
                self._send(500, b"ping failure injected (SAGEPIPE_TWIN_FAIL_PING=1)")
            else:
                self._send(200, b"", "application/json")
        elif path == "/execution-parameters":
            body = json.dumps({"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6})
            self._send(200, body.encode(), "application/json")
        elif path == "/invocations":
            self._send(405, b"use POST /invocations")
        else:
            self._send(404, (f"no such path {path}").encode())

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/invocations":
            self._send(404, (f"no such path {path}").encode())
            return
        try:
            body = self._read_body()
        except (ValueError, OSError) as exc:
            self.close_connection = True
            self._send(400, (f"cannot read request body: {exc}").encode())
            return
        if body is None:
            self.close_connection = True
            self._send(413, b"request body exceeds the 6 MB InvokeEndpoint payload limit")
            return
        content_type = self.headers.get("Content-Type") or "application/json"
        accept = self.headers.get("Accept")
        if not accept or _media(accept) in ("*/*", ""):
            accept = self.default_accept
        try:
            out, out_type = self._invoke(body, content_type, accept)
            self._send(200, out, out_type)
        except Exception as exc:  # map like the inference toolkit
            status = status_for_exception(exc)
            if status == 500:
                traceback.print_exc(file=sys.stderr)
            message = str(exc) or type(exc).__name__
            self._send(status, message.encode("utf-8", "replace"))

    def _invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """input_fn -> predict_fn -> output_fn; returns the response body and its content type."""
        data = self.module.input_fn(body, content_type)
        prediction = self.module.predict_fn(data, self.model)
        result = self.module.output_fn(prediction, accept)
        if isinstance(result, tuple):
            out, out_type = result[0], result[1]
        else:
            out, out_type = result, accept
        if isinstance(out, str):
            out = out.encode("utf-8")
        elif not isinstance(out, (bytes, bytearray)):
            out = json.dumps(out).encode("utf-8")
        return bytes(out), out_type or accept


def make_handler(module: ModuleType, model: Any, default_accept: str) -> type[InvocationsHandler]:
    """Build the request handler class bound to a loaded program and its model.

    Args:
        module: the user program from :func:`load_program`.
        model: what its ``model_fn(model_dir)`` returned.
        default_accept: the Accept used when the request has none or ``*/*``.
    """
    return type(
        "Handler",
        (InvocationsHandler,),
        {"module": module, "model": model, "default_accept": default_accept},
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code (0 clean stop, 2 model/bind failure)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--program", default="inference.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", default=None)
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process is gone (the twin was killed without a clean stop)",
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    try:
        module = load_program(args.code_dir, args.program)
        model = module.model_fn(args.model_dir)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        print(f"model_server: model loading failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    default_accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "application/json"
    try:
        server = ThreadingHTTPServer((args.host, args.port), make_handler(module, model, default_accept))
    except OSError as exc:
        print(f"model_server: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 2
    server.daemon_threads = True
    port = server.server_address[1]

    if args.parent_pid:

        def watch_parent() -> None:
            while os.getppid() == args.parent_pid:
                time.sleep(0.5)
            server.shutdown()

        threading.Thread(target=watch_parent, daemon=True).start()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.ready_file:
        write_ready_file(args.ready_file, port)
    print(f"model_server: model loaded in {time.monotonic() - started:.3f}s", flush=True)
    print(f"model_server listening on {args.host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    print("model_server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
