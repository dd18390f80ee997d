"""The emulator's HTTP server and its in-process handle, `Emulator`.

HTTP endpoints (HTTP/1.1 keep-alive, ``TCP_NODELAY``, one daemon thread per connection):

``POST /graphql``
    The W&B GraphQL API subset (``schema.graphql``). Needs ``Authorization: Basic
    base64("api:" + key)``; a missing or wrong key gets HTTP 401 ``{"errors": [{"message": ...}]}``.
    Subject to the global ``latency`` and to faults (`connector.emulator.faults`).
``POST /sdk/otel/v1/<anything>``
    Telemetry sink of wandb-core: 200, empty body.
``GET /healthz``
    ``{"ok": true}``.

Control endpoints (no authentication; the server binds to loopback by default):

``GET /_emulator/counters``
    ``{"requests": n, "by_field": {field: {"requests", "bytes", "rows", "windows", "keys"}},
    "status": {"200": n, "429": n, "reset": n, "truncate": n, ...}}``. ``requests`` counts every
    ``POST /graphql``. Counted fields: ``viewer``, ``serverInfo``, ``runs``, ``runCount``,
    ``run`` (a ``project.run`` selection with any metadata field, e.g. the ``Run`` query),
    and each ``Run`` history field: ``history``, ``events``, ``sampledHistory``, ``parquetHistory``,
    ``historyKeys``. ``requests`` counts occurrences, ``rows`` rows returned, ``bytes`` the response
    body sizes of the requests that touched the field, ``windows`` ``[minStep, maxStep]`` as sent
    (one per ``history`` call / ``sampledHistory`` spec), ``keys`` the sorted distinct keys of
    ``sampledHistory`` specs and ``parquetHistory`` ``liveKeys``. Faulted requests count only in
    ``requests`` and ``status``. ``storage`` holds the storage host's counters (``heads``,
    ``gets``, ``range_gets``, ``bytes``, ``denied``, ``not_modified``). `Emulator.request_headers`
    logs the headers of each GraphQL request (``Authorization`` redacted) and
    `Emulator.storage.requests` those of each storage request.
``GET /_emulator/runs``
    ``{"runs": ["e/p/id", ...]}``.
``POST /_emulator/reset``
    Zero the counters.
``POST /_emulator/faults``
    Body: a `FaultSpec` as JSON (``{"rate": 0.2, "kinds": ["429"], "seed": 1, ...}``); ``{}`` turns
    faults off. Optional ``"latency": seconds`` sets the global latency.
``POST /_emulator/append``
    ``{"path": "e/p/id", "rows": [...]}`` (the body may hold bare ``NaN``/``Infinity``).
``POST /_emulator/state``
    ``{"path": "e/p/id", "state": "finished"}``.
``POST /_emulator/truncate``
    ``{"path": "e/p/id", "max_step": n}``: drop rows with ``_step >= n`` (a rewound run).

Control endpoints answer ``{"ok": true}`` or 400/404 with ``{"errors": [...]}``.

>>> from connector.emulator.synthetic import synthetic_runs
>>> with Emulator(synthetic_runs("e/p:runs=1,steps=10,keys=3")) as emu:
...     emu.base_url.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import socket
import struct
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from ..core.rundata import RunData
from .exports import ExportShelf
from .faults import FaultPlan, FaultSpec
from .graphql_app import GraphQLApp
from .resolvers import Counted
from .run_files import run_files
from .service import ServiceModel
from .storage import StorageHost
from .store import Store

DEFAULT_API_KEY = "local-" + "0123456789abcdef" * 2 + "01234567"  # 46 chars, accepted by the SDK
assert len(DEFAULT_API_KEY) == 46


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_field: dict[str, dict[str, Any]] = {}
        self.status: dict[str, int] = {}

    def record(self, status: str, counted: Counted | None, nbytes: int) -> None:
        with self.lock:
            self.status[status] = self.status.get(status, 0) + 1
            if counted is None:
                return
            for name, f in counted.fields.items():
                agg = self.by_field.setdefault(
                    name, {"requests": 0, "bytes": 0, "rows": 0, "windows": [], "keys": set()}
                )
                agg["requests"] += f["requests"]
                agg["rows"] += f["rows"]
                agg["bytes"] += nbytes
                agg["windows"].extend(f["windows"])
                agg["keys"].update(f["keys"])

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "by_field": {
                    name: {**f, "windows": list(f["windows"]), "keys": sorted(f["keys"])}
                    for name, f in self.by_field.items()
                },
                "status": dict(self.status),
            }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: Emulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: never log requests (they carry the Authorization header)

    # -- plumbing ------------------------------------------------------------------------------
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
        truncate: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self._reset()
            return
        self.wfile.write(body)

    def _reset(self) -> None:
        """Close the connection abruptly (TCP RST), answering nothing more."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, orjson.dumps(obj))

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"errors": [{"message": message}]})

    # -- routes --------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        emu = self.server.emulator
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._json(200, {"ok": True})
        elif path == "/_emulator/counters":
            self._json(200, emu.counters())
        elif path == "/_emulator/runs":
            self._json(200, {"runs": list(emu.store.runs)})
        elif path.startswith(("/files/", "/storage/")):
            self._run_file(path)
        else:
            self._error(404, f"no such endpoint: GET {path}")

    def _run_file(self, path: str) -> None:
        """``GET /files/<entity>/<project>/<run_id>/<name>`` (and ``/storage/...``): a run's file."""
        parts = [urllib.parse.unquote(p) for p in path.split("/")[2:]]
        served = self.server.emulator.store.get(*parts[:3]) if len(parts) == 4 else None
        found = [] if served is None else [
            f for f in run_files(served.meta, len(served.steps())) if f.name == parts[3]
        ]  # fmt: skip
        if not found:
            self._error(404, f"no such file: {path}")
            return
        self._send(200, found[0].content, content_type=found[0].mimetype)

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        body = self._body()
        if path == "/graphql":
            try:
                self._graphql(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            except Exception as exc:  # a bug in the emulator: answer it instead of hanging up
                self._error(500, f"emulator internal error: {type(exc).__name__}: {exc}")
        elif path.startswith("/sdk/otel/"):
            self._send(200, b"", content_type="application/x-protobuf")
        elif path.startswith("/_emulator/"):
            self._control(path.removeprefix("/_emulator/"), body)
        else:
            self._error(404, f"no such endpoint: POST {path}")

    def _graphql(self, body: bytes) -> None:
        emu = self.server.emulator
        emu.request_headers.append(
            {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in self.headers.items()}
        )
        with emu._counters.lock:
            emu._counters.requests += 1
        if emu.latency > 0:
            time.sleep(emu.latency)
        if not emu._authorized(self.headers.get("Authorization")):
            emu._counters.record("401", None, 0)
            self._error(
                401, "authentication failed: send Authorization: Basic base64('api:' + API key)"
            )
            return
        plan = emu._fault_plan
        fault = None
        if plan is not None and plan.applies_to(emu.app.static_fields(body)):
            fault = plan.draw()
        if fault in ("reset",):
            emu._counters.record("reset", None, 0)
            self._reset()
            return
        if fault is not None and fault.isdigit():
            spec = plan.spec  # type: ignore[union-attr]  # a fault is drawn only from a plan
            headers = [("Retry-After", f"{spec.retry_after:g}")] if fault == "429" else []
            emu._counters.record(fault, None, 0)
            self._send(
                int(fault),
                orjson.dumps({"errors": [{"message": f"emulated fault: HTTP {fault}"}]}),
                headers=headers,
            )
            return
        if fault == "slow":
            time.sleep(plan.spec.slow_seconds)  # type: ignore[union-attr]  # a fault is drawn only from a plan
        status, out, counted = emu.app.execute(body)
        if fault == "truncate":
            emu._counters.record("truncate", None, 0)
            self._send(status, out, truncate=True)
            return
        emu._counters.record(str(status), counted, len(out))
        self._send(status, out)

    def _control(self, name: str, body: bytes) -> None:
        emu = self.server.emulator
        try:
            obj = json.loads(body) if body.strip() else {}
            if not isinstance(obj, dict):
                raise ValueError("control body must be a JSON object")
            if name == "reset":
                emu.reset_counters()
            elif name == "faults":
                latency = obj.pop("latency", None)
                if latency is not None:
                    emu.latency = float(latency)
                emu.set_faults(FaultSpec.from_json(obj))
            elif name == "append":
                emu.append_rows(_need(obj, "path"), _need(obj, "rows"))
            elif name == "state":
                emu.set_state(_need(obj, "path"), _need(obj, "state"))
            elif name == "truncate":
                emu.truncate(_need(obj, "path"), int(_need(obj, "max_step")))
            else:
                self._error(404, f"no such control endpoint: /_emulator/{name}")
                return
        except KeyError as exc:
            self._error(404, str(exc.args[0]) if exc.args else "not found")
            return
        except (ValueError, TypeError) as exc:
            self._error(400, f"/_emulator/{name}: {exc}")
            return
        self._json(200, {"ok": True})


def _need(obj: dict[str, Any], key: str) -> Any:
    if key not in obj:
        raise ValueError(f"missing field {key!r}")
    return obj[key]


class Emulator:
    """An in-process W&B API emulator serving `RunData` objects over HTTP.

    >>> from connector.emulator.synthetic import synthetic_runs
    >>> emu = Emulator(synthetic_runs("e/p:runs=2,steps=100,keys=5")).start()
    >>> len(emu.api_key) >= 40, emu.run("e", "p", emu.paths()[0].split("/")[2]).meta.entity
    (True, 'e')
    >>> emu.stop()
    """

    def __init__(
        self,
        runs: Sequence[RunData] | Iterable[RunData] = (),
        *,
        api_key: str | None = None,
        faults: FaultSpec | None = None,
        latency: float = 0.0,
        answer_cache_bytes: int = 256 << 20,
        service: ServiceModel | None = None,
    ) -> None:
        self.api_key = api_key or DEFAULT_API_KEY
        self.service = ServiceModel() if service is None else service
        self.storage = StorageHost(url_ttl=self.service.parquet_url_ttl)
        self.request_headers: deque[dict[str, str]] = deque(maxlen=10_000)
        self._auth = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        self.store = Store()
        self.latency = latency
        self._fault_plan: FaultPlan | None = FaultPlan(faults) if faults else None
        self._counters = _Counters()
        self.app = GraphQLApp(
            self.store,
            self._viewer_entity,
            answer_cache_bytes=answer_cache_bytes,
            service=self.service,
            exports=ExportShelf(self.storage),
            base_url=lambda: self.base_url,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        for run in runs:
            self.add_run(run)

    def __repr__(self) -> str:  # never shows the key
        return f"Emulator(runs={len(self.store.runs)}, base_url={self.base_url if self._server else None!r})"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((host, port), _Handler)
        server.emulator = self
        if self.service.parquet_history != "none":
            self.storage.start(host)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="wandb-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.storage.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started: call .start() first")
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET address
        return f"http://{host}:{port}"

    # -- data ----------------------------------------------------------------------------------
    def add_run(self, run_data: RunData) -> None:
        """Serve one more run (replacing a run with the same path)."""
        self.store.add(run_data)

    def paths(self) -> list[str]:
        """The ``entity/project/run_id`` of every served run, in insertion order."""
        return list(self.store.runs)

    def run(self, entity: str, project: str, run_id: str) -> RunData:
        """The `RunData` served at ``entity/project/run_id`` (``KeyError`` when absent)."""
        return self.store.require(f"{entity}/{project}/{run_id}").data

    def append_rows(self, path: str, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows (steps above the last one) to the run at `path`."""
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError("rows must be a list of JSON objects")
        self.store.require(path).append(rows)
        self.store.bump()

    def set_state(self, path: str, state: str) -> None:
        """Set a run's state (``"running"``, ``"finished"``, ``"failed"``, ...)."""
        if not isinstance(state, str) or not state:
            raise ValueError(f"state must be a non-empty string, got {state!r}")
        self.store.require(path).meta.state = state
        self.store.bump()

    def truncate(self, path: str, max_step: int) -> None:
        """Drop the rows of a run with ``_step >= max_step``."""
        self.store.require(path).truncate(max_step)
        self.store.bump()

    def warm(self) -> None:
        """Pre-encode every row of every run (a benchmark then measures only serving)."""
        for served in list(self.store.runs.values()):
            served.warm()

    # -- knobs and metrics ---------------------------------------------------------------------
    def set_faults(self, faults: FaultSpec | None = None, **kwargs: Any) -> None:
        """Replace the fault spec (``None`` turns faults off); kwargs build a `FaultSpec`.

        >>> Emulator().set_faults(rate=0.5, kinds=("429",))
        """
        if kwargs:
            faults = FaultSpec(**kwargs)
        self._fault_plan = FaultPlan(faults) if faults is not None and faults.rate > 0 else None

    def counters(self) -> dict[str, Any]:
        """A snapshot of the request counters (shape documented in the module docstring)."""
        return {**self._counters.snapshot(), "storage": self.storage.counters()}

    def reset_counters(self) -> None:
        with self._counters.lock:
            self._counters.reset()
        self.storage.reset_counters()
        self.request_headers.clear()

    def _viewer_entity(self) -> str:
        for entity, _ in self.store.projects:
            return entity
        return "emulator"

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        if hmac.compare_digest(header.strip().encode(), self._auth.encode()):
            return True
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user_key = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, _, key = user_key.partition(":")
        return hmac.compare_digest(key.encode(), self.api_key.encode())
