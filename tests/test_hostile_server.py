"""A hostile GraphQL server: every public read path fails typed, never hangs, never eats memory,
never returns a silently different row set.

The server (`_HostileServer`, real HTTP on 127.0.0.1) proxies every request to a real
`connector.emulator.Emulator` and corrupts the answer (or the request, or the way the answer is
sent) according to the first segment of the URL path: ``http://127.0.0.1:PORT/<mode>/graphql``, so
several modes can run at once against one server. `MODES` lists them with the error each must cause.

Each mode runs in its own child process (``python tests/test_hostile_server.py MODE ...``), which
runs these operations, each in a thread with a 30 s limit:

* ``scan_history``: ``list(Api(...).run(path).scan_history())`` (full rows, ``HistoryPage``);
* ``to_arrow``: ``run.scan().to_arrow()`` (full rows);
* ``to_arrow_processes``: the same with ``Api(processes=1)``: the pages decoded by a worker process;
* ``columns``: ``run.scan(columns=["loss", "train.acc"]).to_arrow()`` (``sampledHistory`` specs);
* ``runs``: the ids of ``api.runs("h/p")`` (the runs listing);
* ``export``: ``connector.export.export(path, tmp.duckdb, api=api, retry=<4 s deadline>)`` (the
  project instead of the run for ``runs-cursor-repeat``).

and reports, per operation, how it ended, against the rows the emulator really holds. The test then
asserts: no operation hung; every error is a `ConnectorError` (an export may instead report the run
failed, ``summary.ok`` False); an operation that succeeded returned exactly the true rows (an export
exactly the true steps and values); the error each mode must cause, naming the run; and the child's
peak RSS (``ru_maxrss``) grew by less than `RSS_GROWTH_CAP_MB` over its baseline. A child also runs
under ``RLIMIT_AS`` = 4 GiB with ``MALLOC_ARENA_MAX=2``, so that a runaway allocation ends in a
`MemoryError` (reported as an untyped error) rather than in the machine's memory; the address space
of an idle child is already ~1.6 GiB (thread stacks, DuckDB), which is why the cap is on RSS. The
children run four at a time (the whole file takes about 30-40 s).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import pickle
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = "h/p:runs=1,steps=3000,keys=6,seed=3"
PROJECT = "h/p"
COLUMNS = ["loss", "train.acc"]
OP_TIMEOUT = 30.0  # seconds per operation in the child
RSS_GROWTH_CAP_MB = 512  # peak RSS growth of a child over its baseline (imports and truth loaded)
ADDRESS_SPACE_LIMIT = 4 << 30  # RLIMIT_AS of a child: a guard (a runaway ends in MemoryError)
BODY_LIMIT = 32 << 20  # the children's Transport.max_body_bytes (pages here are ~250 kB)
PARALLEL = 4

FULL = ("scan_history", "to_arrow", "to_arrow_processes", "export")  # operations reading full rows (HistoryPage)
DATA = (*FULL, "columns")  # every operation reading history
RUN_LEVEL = (*DATA, "runs")  # every operation that loads the run

# mode -> (operations that must fail, the error class they must raise, words of its message)
MODES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "ok": ((), "", ""),
    "history-null": (DATA, "ProtocolError", "null"),
    "history-missing": (DATA, "ProtocolError", "field"),
    # the runs listing asks the light run fields (no historyKeys): listing ids does not read them
    "run-missing-fields": (DATA, "ProtocolError", "lacks the fields historyKeys"),
    "laststep-string": (DATA, "ProtocolError", "lastStep is a string"),
    "linecount-string": (RUN_LEVEL, "ProtocolError", "historyLineCount is a string"),
    "rows-not-json": (DATA, "ProtocolError", "not"),
    "row-not-object": (DATA, "ProtocolError", "not a JSON object"),
    "row-without-step": (DATA, "ProtocolError", "has no _step"),
    "step-string": (DATA, "ProtocolError", "not an integer step"),
    "step-float": (DATA, "ProtocolError", "not an integer step"),
    "step-bool": (DATA, "ProtocolError", "not an integer step"),
    "duplicate-steps": (DATA, "ProtocolError", "twice"),
    "rows-outside-window": (DATA, "ProtocolError", "outside the requested window"),
    "same-page-forever": (DATA, "ProtocolError", "outside the requested window"),
    "runs-cursor-repeat": (("runs", "export"), "ProtocolError", "cursor does not advance"),
    "slow-body": (FULL, "TransportError", "timed out"),
    "gzip-bomb": (FULL, "ProtocolError", "inflates past"),
    "deep-list": (DATA, "ProtocolError", "nests deeper"),
    "deep-dict": (DATA, "ProtocolError", "nests deeper"),
    "many-keys": (DATA, "ProtocolError", "more than 100000 keys"),
    "data-not-object": (DATA, "ProtocolError", "data: list"),
    "body-not-object": (DATA, "NotGraphQLError", "not a GraphQL answer"),
    "chunked-huge": (FULL, "ProtocolError", "runs past"),
    # controls: answers that are unusual but valid must give exactly the true rows
    "rows-unsorted": ((), "", ""),
    "gzip-ok": ((), "", ""),
    "chunked-ok": ((), "", ""),
}
# modes whose errors wrap another exception (a parse error, a row limit, the transport's own error),
# which must be kept as the cause
CAUSED = {"rows-not-json", "deep-list", "deep-dict", "many-keys", "data-not-object", "body-not-object", "gzip-bomb"}
FIRST = ("slow-body", "gzip-bomb", "many-keys", "chunked-huge", "runs-cursor-repeat")  # the slow ones start first

_OPERATION = re.compile(r"\bquery\s+([A-Za-z_]\w*)")
_DEEP_LIST = "[" * 100_000 + "]" * 100_000
_DEEP_DICT = '{"a":' * 1000 + "1" + "}" * 1000
_MANY_KEYS = ", ".join(f'"k{i:06d}": {i}' for i in range(200_000))  # 200k keys of one row
_ROW_MODES = {
    "rows-unsorted", "rows-not-json", "row-not-object", "row-without-step", "step-string", "step-float", "step-bool",
    "duplicate-steps", "deep-list", "deep-dict", "many-keys",
}  # fmt: skip


# -- the hostile server -------------------------------------------------------------------------
def _corrupt_rows(mode: str, rows: list[Any]) -> list[Any]:
    """Row objects corrupted as `mode` says (placeholders for what JSON encoders cannot write)."""
    if mode == "rows-unsorted":
        return rows[::-1]
    if mode not in _ROW_MODES or not rows:
        return rows
    mid = len(rows) // 2
    row = rows[mid]
    if mode == "duplicate-steps":
        return [rows[i - i % 2] for i in range(len(rows))]  # as many rows, every step twice
    if mode == "rows-not-json":
        rows[mid] = "__NOT_JSON__"
    elif mode == "row-not-object":
        rows[mid] = [1, 2]
    elif mode == "row-without-step":
        del row["_step"]
    elif mode == "step-string":
        row["_step"] = str(row["_step"])
    elif mode == "step-float":
        row["_step"] = float(row["_step"])
    elif mode == "step-bool":
        row["_step"] = True
    elif mode == "deep-list":
        row["deep"] = "__DEEP_LIST__"
    elif mode == "deep-dict":
        row["deep"] = "__DEEP_DICT__"
    elif mode == "many-keys":
        row["__MANY_KEYS__"] = 0
    return rows


def _fill(text: str, quote: str = '"') -> str:
    return (
        text.replace(f"{quote}__DEEP_LIST__{quote}", _DEEP_LIST)
        .replace(f"{quote}__DEEP_DICT__{quote}", _DEEP_DICT)
        .replace(f"{quote}__NOT_JSON__{quote}", "{not json")
        .replace(f"{quote}__MANY_KEYS__{quote}: 0", _MANY_KEYS)
    )


def _row_texts(mode: str, texts: list[str]) -> list[str]:
    rows = _corrupt_rows(mode, [json.loads(t) for t in texts])
    out = []
    for row in rows:
        if row == "__NOT_JSON__":
            out.append("{not json")
        else:
            out.append(_fill(json.dumps(row)))
    return out


def _shift_window(mode: str, lo: int, hi: int) -> tuple[int, int]:
    if mode == "rows-outside-window":
        return lo + 500, hi + 500
    return 0, hi - lo  # same-page-forever: always the first page


def _rewrite_request(mode: str, op: str, request: dict[str, Any]) -> dict[str, Any]:
    variables = request.get("variables") or {}
    if mode == "runs-cursor-repeat" and op == "Runs":
        variables["cursor"] = None
    if mode not in ("rows-outside-window", "same-page-forever"):
        return request
    if op == "HistoryPage":
        variables["minStep"], variables["maxStep"] = _shift_window(mode, variables["minStep"], variables["maxStep"])
    elif op in ("SampledHistoryPage", "RunSampledHistory"):
        specs = [variables["spec"]] if op == "SampledHistoryPage" else variables["specs"]
        out = []
        for text in specs:
            spec = json.loads(text)
            if "minStep" in spec:
                spec["minStep"], spec["maxStep"] = _shift_window(mode, spec["minStep"], spec["maxStep"])
            out.append(json.dumps(spec))
        if op == "SampledHistoryPage":
            variables["spec"] = out[0]
        else:
            variables["specs"] = out
    return request


def _corrupt_answer(mode: str, op: str, doc: Any) -> bytes:
    """The answer `doc` corrupted as `mode` says, as the bytes to send."""
    data = doc.get("data") if isinstance(doc, dict) else None
    project = data.get("project") if isinstance(data, dict) else None
    project = project if isinstance(project, dict) else {}
    run = project.get("run") if isinstance(project.get("run"), dict) else None
    listing = project.get("runs") if isinstance(project.get("runs"), dict) else None
    runs = ([run] if run is not None else []) + [e["node"] for e in (listing or {}).get("edges", []) if e.get("node")]
    history_op = op == "HistoryPage"
    sampled_op = op in ("SampledHistoryPage", "RunSampledHistory")
    for node in runs:
        if mode == "run-missing-fields":
            node.pop("historyKeys", None)
        elif mode == "laststep-string" and isinstance(node.get("historyKeys"), dict):
            node["historyKeys"]["lastStep"] = str(node["historyKeys"].get("lastStep"))
        elif mode == "linecount-string" and "historyLineCount" in node:
            node["historyLineCount"] = str(node["historyLineCount"])
    if mode == "runs-cursor-repeat" and listing is not None:  # the first page again and again
        listing["pageInfo"]["hasNextPage"] = True
    if (history_op or sampled_op) and run is not None:
        field = "history" if history_op else "sampledHistory"
        if mode == "history-null":
            run[field] = None
        elif mode == "history-empty" and history_op:
            run[field] = []
        elif mode == "history-missing":
            run.pop(field, None)
        elif mode == "data-not-object":
            doc["data"] = [1, 2, 3]
        elif mode == "body-not-object":
            doc = [1, 2, 3]
        elif history_op and isinstance(run.get(field), list):
            run[field] = _row_texts(mode, run[field])
        elif sampled_op and isinstance(run.get(field), list):
            run[field] = [_corrupt_rows(mode, lst) for lst in run[field]]
    return _fill(json.dumps(doc)).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HostileServer

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        mode = self.path.strip("/").split("/")[0]
        match = _OPERATION.search(request.get("query") or "")
        op = match[1] if match else ""
        request = _rewrite_request(mode, op, request)
        status, body = self.server.forward(request, self.headers.get("Authorization"))
        if status != 200:
            self._send(status, body)
            return
        body = _corrupt_answer(mode, op, json.loads(body))
        if op == "HistoryPage" and mode == "gzip-bomb":
            self._send(200, gzip.compress(body) + self.server.bomb(), {"Content-Encoding": "gzip"})
        elif op == "HistoryPage" and mode == "gzip-ok":
            self._send(200, gzip.compress(body), {"Content-Encoding": "gzip"})
        elif op == "HistoryPage" and mode == "slow-body":
            self._trickle(body)
        elif op == "HistoryPage" and mode in ("chunked-ok", "chunked-huge"):
            self._chunked(body + (b" " * (BODY_LIMIT + 1) if mode == "chunked-huge" else b""))
        else:
            self._send(200, body)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _chunked(self, body: bytes) -> None:
        """`body` with ``Transfer-Encoding: chunked`` (no Content-Length), 64 kB per chunk."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i in range(0, len(body), 1 << 16):
                part = body[i : i + (1 << 16)]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def _trickle(self, body: bytes) -> None:
        """One byte every 0.5 s, until the client hangs up (or two minutes pass)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        until = time.monotonic() + 120
        try:
            for i in range(len(body)):
                if time.monotonic() > until:
                    break
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self._bomb: bytes | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def forward(self, request: dict[str, Any], auth: str | None) -> tuple[int, bytes]:
        """The emulator's answer to `request` (status, body)."""
        req = urllib.request.Request(
            f"{self.upstream}/graphql",
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json", **({"Authorization": auth} if auth else {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def bomb(self) -> bytes:
        """Gzip members of 1 MiB of spaces each, 1 GiB in all (about 1 MB sent): valid JSON padding."""
        with self._lock:
            if self._bomb is None:
                self._bomb = gzip.compress(b" " * (1 << 20), 9) * 1024
            return self._bomb


# -- the child: runs the public operations against one mode -----------------------------------
def _error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "outcome": "error",
        "type": type(exc).__name__,
        "mro": [c.__name__ for c in type(exc).__mro__],
        "message": str(exc)[:600],
        "has_cause": exc.__cause__ is not None,
    }


def _child(mode: str, url: str, api_key: str, path: str, truth_file: str, tmp: str) -> dict[str, Any]:
    import resource

    if os.environ.get("HOSTILE_NO_RLIMIT") != "1":
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    import duckdb

    import connector.export
    from connector import Api
    from connector.remote.transport import RetryPolicy
    from tests.compare import assert_same_rows

    with open(truth_file, "rb") as f:
        truth = pickle.load(f)
    retry = RetryPolicy(max_attempts=3, deadline=4.0, initial_wait=0.01, max_wait=0.05)
    api = Api(api_key=api_key, base_url=f"{url}/{mode}", timeout=2.0, retry=retry)
    api.transport.max_body_bytes = BODY_LIMIT
    source = PROJECT if mode == "runs-cursor-repeat" else path

    def same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
        try:
            assert_same_rows(got, want)
        except AssertionError:
            return False
        return True

    def scan_history() -> dict[str, Any]:
        rows = list(api.run(path).scan_history())
        return {"rows": len(rows), "same": same_rows(rows, truth["rows"])}

    def to_arrow() -> dict[str, Any]:
        table = api.run(path).scan().to_arrow()
        same = table.schema == truth["table"].schema and same_rows(table.to_pylist(), truth["table"].to_pylist())
        return {"rows": table.num_rows, "same": same}

    def to_arrow_processes() -> dict[str, Any]:  # the pages decoded by a worker process
        papi = Api(api_key=api_key, base_url=f"{url}/{mode}", timeout=2.0, retry=retry, processes=1)
        papi.transport.max_body_bytes = BODY_LIMIT
        try:
            table = papi.run(path).scan().to_arrow()
        finally:
            papi.close()
        same = table.schema == truth["table"].schema and same_rows(table.to_pylist(), truth["table"].to_pylist())
        return {"rows": table.num_rows, "same": same}

    def columns() -> dict[str, Any]:
        table = api.run(path).scan(columns=COLUMNS).to_arrow()
        same = table.schema == truth["columns"].schema and same_rows(table.to_pylist(), truth["columns"].to_pylist())
        return {"rows": table.num_rows, "same": same}

    def runs() -> dict[str, Any]:
        ids = [r.id for r in api.runs(PROJECT)]
        return {"rows": len(ids), "same": ids == [path.split("/")[2]]}

    def export() -> dict[str, Any]:
        db = str(Path(tmp) / f"{mode}.duckdb")
        summary = connector.export.export(source, db, api=api, retry=retry)
        out: dict[str, Any] = {"rows": summary.rows, "summary_ok": summary.ok, "failed": dict(summary.failed)}
        if summary.ok:
            con = duckdb.connect(db, read_only=True)
            try:
                steps, loss = con.execute("SELECT list(_step ORDER BY _step), sum(loss) FROM history").fetchone()
                out["same"] = steps == truth["steps"] and abs((loss or 0) - truth["loss_sum"]) < 1e-6
            except duckdb.Error as exc:  # no table, no loss column: not the true rows
                out["same"], out["why"] = False, str(exc)[:200]
            finally:
                con.close()
        else:
            out["outcome"] = "failed"
            out["message"] = "; ".join(summary.failed.values())[:600]
        return out

    report: dict[str, Any] = {}
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, op in (("scan_history", scan_history), ("to_arrow", to_arrow),
                     ("to_arrow_processes", to_arrow_processes), ("columns", columns),
                     ("runs", runs), ("export", export)):  # fmt: skip
        box: dict[str, Any] = {}

        def work(op: Any = op, box: dict[str, Any] = box) -> None:
            try:
                box.update({"outcome": "ok", **op()})
            except BaseException as exc:  # noqa: BLE001 - the report says what it was
                box.update(_error_info(exc))

        started = time.monotonic()
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        thread.join(OP_TIMEOUT)
        if thread.is_alive():
            box = {"outcome": "hang"}
        box["seconds"] = round(time.monotonic() - started, 2)
        report[name] = box
    report["rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    status = Path("/proc/self/status").read_text().splitlines()
    report["vm_peak_mb"] = next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmPeak"))
    return report


# -- the test -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[dict[str, Any]]:
    """The emulator, the hostile server in front of it, and the true rows (pickled for children)."""
    from connector import Api
    from connector.emulator import Emulator, synthetic_runs
    from connector.emulator.service import ServiceModel

    emu = Emulator(synthetic_runs(SPEC), api_key=api_key, service=ServiceModel(parquet_history="none")).start()
    server = _HostileServer(emu.base_url)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        path = emu.paths()[0]
        run = Api(api_key=api_key, base_url=emu.base_url).run(path)
        rows = list(run.scan_history())
        truth = {
            "rows": rows,
            "table": run.scan().to_arrow(),
            "columns": run.scan(columns=COLUMNS).to_arrow(),
            "steps": [r["_step"] for r in rows],
            "loss_sum": sum(r["loss"] for r in rows),
        }
        tmp = tmp_path_factory.mktemp("hostile")
        truth_file = tmp / "truth.pickle"
        truth_file.write_bytes(pickle.dumps(truth))
        yield {"url": server.base_url, "path": path, "truth_file": str(truth_file), "tmp": str(tmp),
               "api_key": api_key, "lines": len(rows)}  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        emu.stop()


def _run_child(mode: str, h: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), MALLOC_ARENA_MAX="2")
    for name in [n for n in env if n.startswith("WANDB_")]:
        del env[name]
    args = [mode, h["url"], h["api_key"], h["path"], h["truth_file"], h["tmp"]]
    proc = subprocess.run(
        [sys.executable, str(Path(__file__)), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=5 * OP_TIMEOUT + 60,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"child for {mode} failed ({proc.returncode}): {proc.stderr[-3000:]}"
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, hostile: dict[str, Any]) -> Iterator[dict[str, Future[dict[str, Any]]]]:
    """One child per selected mode, `PARALLEL` at a time, started at once; a future per mode."""
    selected = {
        item.callspec.params["mode"]
        for item in request.session.items
        if getattr(item, "module", None) is sys.modules[__name__]
        and "mode" in getattr(getattr(item, "callspec", None), "params", {})
    }
    order = [m for m in FIRST if m in selected] + sorted(selected - set(FIRST))
    pool = ThreadPoolExecutor(PARALLEL)
    try:
        yield {mode: pool.submit(_run_child, mode, hostile) for mode in order}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _problems(mode: str, op: str, r: dict[str, Any], run_path: str) -> list[str]:
    """What is wrong with how operation `op` ended under `mode` (nothing when all is well)."""
    from connector import errors

    must_fail, error_class, words = MODES[mode]
    outcome = r["outcome"]
    if outcome == "hang":
        return [f"{op}: still running after {OP_TIMEOUT:.0f}s"]
    if outcome == "error":
        mro = r["mro"]
    elif outcome == "failed":  # an export that reported the run failed: "Type: message"
        kind = getattr(errors, r["message"].split(":", 1)[0], None)
        mro = [c.__name__ for c in kind.__mro__] if isinstance(kind, type) else []
    if outcome != "ok" and "ConnectorError" not in mro:
        return [f"{op}: untyped error {r.get('type', '')}: {r['message'][:300]}"]
    if outcome == "ok" and not r.get("same"):
        return [f"{op}: ended ok with a different row set ({r.get('rows')} rows)"]
    if op not in must_fail:
        return [] if outcome == "ok" else [f"{op}: failed though {mode} does not touch it: {r['message'][:300]}"]
    if outcome == "ok":
        return [f"{op}: ended ok although the server broke the protocol"]
    if error_class not in mro or words not in r["message"]:
        return [f"{op}: expected {error_class} saying {words!r}, got {mro[0]}: {r['message'][:300]}"]
    names_run = op != "runs" and mode != "runs-cursor-repeat" and error_class != "TransportError"
    if names_run and run_path not in r["message"]:
        return [f"{op}: the error does not name the run {run_path}: {r['message'][:300]}"]
    if outcome == "error" and mode in CAUSED and not r["has_cause"]:
        return [f"{op}: the error does not carry its cause: {r['message'][:300]}"]
    if mode == "slow-body" and r["seconds"] > 15:
        return [f"{op}: took {r['seconds']}s to give up (attempts of 2s, a 4s retry deadline)"]
    return []


@pytest.mark.parametrize("mode", list(MODES))
def test_hostile_server_mode(mode: str, outcomes: dict[str, Future[dict[str, Any]]], hostile: dict[str, Any]) -> None:
    report = outcomes[mode].result()
    print(json.dumps(report, indent=1))  # shown when the test fails
    problems = []
    for op in ("scan_history", "to_arrow", "to_arrow_processes", "columns", "runs", "export"):
        problems += _problems(mode, op, report[op], hostile["path"])
    if report["rss_growth_mb"] > RSS_GROWTH_CAP_MB:
        problems.append(f"peak RSS grew by {report['rss_growth_mb']:.0f} MB (cap {RSS_GROWTH_CAP_MB} MB)")
    assert not problems, f"mode {mode}:\n  " + "\n  ".join(problems)


def test_full_scan_short_of_the_line_count_warns(hostile: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """historyLineCount is a hint: a full scan that reads far fewer rows warns, naming both numbers."""
    from connector import Api
    from connector.remote.transport import RetryPolicy

    fast = RetryPolicy(max_attempts=2, deadline=5, initial_wait=0.01, max_wait=0.01)
    caplog.set_level(logging.WARNING, logger="connector.core.scan")
    empty = Api(api_key=hostile["api_key"], base_url=f"{hostile['url']}/history-empty", retry=fast)
    assert list(empty.run(hostile["path"]).scan_history()) == []
    assert f"run {hostile['path']}: a full scan read 0 rows but the run reports historyLineCount 3000" in caplog.text
    caplog.clear()
    ok = Api(api_key=hostile["api_key"], base_url=f"{hostile['url']}/ok", retry=fast).run(hostile["path"])
    assert len(list(ok.scan_history())) == 3000 and len(list(ok.scan_history(min_step=10))) == 2990
    assert "historyLineCount" not in caplog.text



def test_export_short_of_the_line_count_is_reported(hostile: dict[str, Any], tmp_path: Path) -> None:
    """Stumble: a server answering empty history pages made export exit 0 with 0 rows, silently."""
    from connector import Api
    from connector.export import export
    from connector.remote.transport import RetryPolicy

    fast = RetryPolicy(max_attempts=2, deadline=5, initial_wait=0.01, max_wait=0.01)
    empty = Api(api_key=hostile["api_key"], base_url=f"{hostile['url']}/history-empty", retry=fast)
    summary = export(hostile["path"], str(tmp_path / "e.duckdb"), api=empty)
    assert summary.rows == 0
    assert summary.warnings == {hostile["path"]: "exported 0 rows but the server reports historyLineCount 3000"}
    ok = Api(api_key=hostile["api_key"], base_url=f"{hostile['url']}/ok", retry=fast)
    good = export(hostile["path"], str(tmp_path / "ok.duckdb"), api=ok)
    assert good.rows == 3000 and good.warnings == {}

if __name__ == "__main__":  # a child: python tests/test_hostile_server.py MODE URL KEY PATH TRUTH TMP
    sys.path.insert(0, str(ROOT))
    result = _child(*sys.argv[1:7])
    print(json.dumps(result), flush=True)
    os._exit(0)
