"""Warm Lambda worker bootstrap for the local twin (stdlib only).

This module is executed *by file path* (``python -u .../awslambda/worker.py``) by
:class:`sagepipe.twin.awslambda.runtime.WorkerPool`; it is the twin's stand-in for
the AWS Lambda Python runtime's ``bootstrap.py`` (awslambdaric).  It follows the
documented behaviour of the Lambda Python runtime:

* ``sys.path`` is ``[LAMBDA_TASK_ROOT, <layer dirs...>, <interpreter paths>]`` –
  the function's code dir shadows layers, which shadow the interpreter's
  site-packages (as ``/var/task`` precedes ``/opt/python`` precedes
  ``/var/runtime``).  The directory of this file is removed from ``sys.path``.
* The handler module is imported once (init phase); import failures are reported
  as ``Runtime.ImportModuleError`` / ``Runtime.UserCodeSyntaxError`` /
  ``Runtime.HandlerNotFound`` / ``Runtime.MalformedHandlerName`` exactly like the
  Python runtime.
* Each invocation gets a fresh context object and ``_X_AMZN_TRACE_ID``.
  A handler exception produces the runtime's error object
  ``{"errorMessage", "errorType", "requestId", "stackTrace"}``; the worker stays
  warm.  A non JSON-serialisable result produces ``Runtime.MarshalError``.

Control protocol (never on stdout/stderr, which carry only the handler's logs):
two pipes whose fd numbers arrive in ``_SAGEPIPE_TWIN_FDS="<req_r>,<resp_w>"``.
Frames are ``4-byte big-endian length + bytes``.  Every message is a JSON header
frame followed by one raw body frame:

* worker -> parent after init: ``{"type": "ready", "init_ms": float}`` + b"" or
  ``{"type": "init_error", "init_ms": float}`` + error-object JSON bytes (the
  worker then exits with status 1).
* parent -> worker: ``{"requestId", "deadlineMs" (epoch ms), "arn",
  "traceId"}`` + raw event bytes.
* worker -> parent: ``{"type": "result", "errored": bool, "maxRssKb": int}`` +
  payload JSON bytes.

Before each ``result`` frame the worker flushes and writes the end-of-invocation
marker ``\\x1eSAGEPIPE-END <requestId>\\x1e\\n`` on both fd 1 and fd 2 so the
parent can attribute log lines to the invocation.  EOF on the request pipe makes
the worker exit (so workers die with their parent).
"""

from __future__ import annotations

import decimal
import importlib
import json
import logging
import os
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

MARKER_PREFIX = b"\x1eSAGEPIPE-END "
_THIS_FILE = os.path.abspath(__file__)


# --------------------------------------------------------------------------- framing
def _read_exact(f: BinaryIO, n: int) -> bytes | None:
    data: bytes | None = f.read(n)
    if data is None or len(data) < n:
        return None
    return data


def read_frame(f: BinaryIO) -> bytes | None:
    """Read one length-prefixed frame from binary file ``f``; ``None`` on EOF."""
    head = _read_exact(f, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    if n == 0:
        return b""
    return _read_exact(f, n)


def write_frame(f: BinaryIO, data: bytes) -> None:
    """Write one length-prefixed frame to binary file ``f`` (no flush)."""
    f.write(struct.pack(">I", len(data)))
    if data:
        f.write(data)


# --------------------------------------------------------------------------- runtime bits
class LambdaContext:
    """Fake ``context`` object of the Lambda Python runtime.

    Attributes mirror the documented context object
    (https://docs.aws.amazon.com/lambda/latest/dg/python-context.html):
    ``function_name``, ``function_version`` ("$LATEST"), ``invoked_function_arn``,
    ``memory_limit_in_mb`` (int, MB), ``aws_request_id`` (uuid4 str),
    ``log_group_name``, ``log_stream_name``, ``identity`` / ``client_context``
    (None), and :meth:`get_remaining_time_in_millis`.
    """

    def __init__(self, request_id: str, deadline_ms: int, arn: str) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds (int, >= 0) left before the invocation's timeout kills it."""
        return max(int(self._deadline_ms - time.time() * 1000), 0)

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn}])"
        )


class _FaultError(Exception):
    def __init__(self, error_type: str, msg: str, trace: list[str] | None = None) -> None:
        super().__init__(msg)
        self.error_type = error_type
        self.msg = msg
        self.trace = trace or []


def make_error(message: str, error_type: str, stack: list[str] | None, request_id: str = "") -> dict[str, Any]:
    """The Lambda Python runtime's error object (awslambdaric ``make_error``)."""
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack or [],
    }


def _fault_from_exc(exc: BaseException, request_id: str = "") -> dict[str, Any]:
    frames: list[traceback.FrameSummary] = list(traceback.extract_tb(exc.__traceback__))
    # Drop the bootstrap's own frames, like awslambdaric's build_fault_result.
    for i, fr in enumerate(frames):
        if os.path.abspath(fr.filename) != _THIS_FILE:
            frames = frames[i:]
            break
    else:
        frames = []
    return make_error(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def _log_error(err: dict[str, Any]) -> None:
    """Print an error the way the runtime logs it: ``[ERROR] Type: msg`` + trace."""
    lines = [f"[ERROR] {err['errorType']}: {err['errorMessage']}"]
    if err.get("stackTrace"):
        lines.append("Traceback (most recent call last):")
        lines.extend(s.rstrip("\n") for s in err["stackTrace"])
    sys.stderr.write("\n".join(lines) + "\n")


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:  # noqa: D401 - json hook
        if isinstance(o, decimal.Decimal):
            if o == o.to_integral_value():
                return int(o)
            return float(o)
        return super().default(o)


def _marshal(result: Any) -> bytes:
    return json.dumps(result, cls=_Encoder, ensure_ascii=False).encode("utf-8")


_current_request_id = ""


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _current_request_id
        return True


def _install_root_logging() -> None:
    """Root logger handler with the Lambda Python runtime's text format."""
    handler = logging.StreamHandler(sys.stdout)
    fmt = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    fmt.converter = time.gmtime
    handler.setFormatter(fmt)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    if level:
        root.setLevel(level.upper())


def _load_handler(handler: str) -> Callable[[Any, Any], Any]:
    """Import ``module.func`` like awslambdaric ``_get_handler``; raise _FaultError."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise _FaultError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}") from None
    if modname.split(".")[0] in sys.builtin_module_names:
        raise _FaultError("Runtime.BuiltInModuleConflict", f"Cannot use built-in module {modname} as a handler module")
    try:
        mod = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise _FaultError("Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}") from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        raise _FaultError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}", trace) from None
    try:
        func: Callable[[Any, Any], Any] = getattr(mod, fname)
        return func
    except AttributeError:
        raise _FaultError("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'") from None


def _end_markers(request_id: str) -> None:
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        sys.stderr.flush()
    except Exception:
        pass
    marker = MARKER_PREFIX + request_id.encode() + b"\x1e\n"
    for fd in (1, 2):
        try:
            os.write(fd, marker)
        except OSError:
            pass


def main() -> int:
    """Worker entry point: init the handler, then serve invocations until EOF."""
    global _current_request_id
    fds = os.environ.pop("_SAGEPIPE_TWIN_FDS")
    layers = os.environ.pop("_SAGEPIPE_TWIN_LAYERS", "")
    req_fd, resp_fd = (int(x) for x in fds.split(","))
    os.set_inheritable(req_fd, False)
    os.set_inheritable(resp_fd, False)
    req = os.fdopen(req_fd, "rb")
    resp = os.fdopen(resp_fd, "wb")

    # sys.path like Lambda: task root, then layers, then the interpreter's paths.
    here = os.path.dirname(_THIS_FILE)
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    front = [task_root] + [p for p in layers.split(os.pathsep) if p]
    sys.path[:] = front + [p for p in sys.path if p not in front]

    _install_root_logging()
    t0 = time.perf_counter()
    err: dict[str, Any] | None
    try:
        handler = _load_handler(os.environ.get("_HANDLER", ""))
    except _FaultError as f:
        err = make_error(f.msg, f.error_type, f.trace)
    except Exception as e:  # module raised at import time
        err = _fault_from_exc(e)
    else:
        err = None
    init_ms = (time.perf_counter() - t0) * 1000.0
    if err is not None:
        _log_error(err)
        _end_markers("init")
        write_frame(resp, json.dumps({"type": "init_error", "init_ms": init_ms}).encode())
        write_frame(resp, json.dumps(err).encode())
        resp.flush()
        return 1
    _end_markers("init")  # the runtime frames init output before START (a pipe may deliver it late)
    write_frame(resp, json.dumps({"type": "ready", "init_ms": init_ms}).encode())
    write_frame(resp, b"")
    resp.flush()

    while True:
        head = read_frame(req)
        if head is None:
            return 0
        body = read_frame(req)
        if body is None:
            return 0
        meta = json.loads(head)
        rid = meta["requestId"]
        _current_request_id = rid
        os.environ["_X_AMZN_TRACE_ID"] = meta.get("traceId", "")
        ctx = LambdaContext(rid, int(meta["deadlineMs"]), meta.get("arn", ""))
        errored = False
        try:
            try:
                event = json.loads(body) if body.strip() else {}
            except ValueError as e:
                raise _FaultError("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}") from None
            result = handler(event, ctx)
            try:
                payload = _marshal(result)
            except (TypeError, ValueError) as e:
                raise _FaultError("Runtime.MarshalError", f"Unable to marshal response: {e}") from None
        except _FaultError as f:
            errored = True
            err = make_error(f.msg, f.error_type, f.trace, rid)
            _log_error(err)
            payload = json.dumps(err).encode()
        except Exception as e:
            errored = True
            err = _fault_from_exc(e, rid)
            _log_error(err)
            payload = json.dumps(err).encode()
        _end_markers(rid)
        rss = peak_rss_kb()
        write_frame(resp, json.dumps({"type": "result", "errored": errored, "maxRssKb": rss}).encode())
        write_frame(resp, payload)
        resp.flush()


def peak_rss_kb() -> int:
    """This worker's peak resident memory in KiB, what Lambda's REPORT ``Max Memory Used`` reports: ``VmHWM``
    of ``/proc/self/status`` (the high-water mark of this process's own address space). Not ``ru_maxrss``:
    Linux keeps the peak of the process that forked the worker across exec, so it reported the twin's
    size. Falls back to ``ru_maxrss`` where /proc is absent; 0 if neither can be read."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except Exception:  # noqa: BLE001 - no figure is better than a failed invocation
        return 0


if __name__ == "__main__":
    sys.exit(main())
