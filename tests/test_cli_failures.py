"""Honest, fast failures of the transport and the command line (real HTTP on 127.0.0.1, real processes).

Each test reproduces a stumble users hit: a closed port that printed nothing for minutes, redirects,
HTML pages and 405s retried for minutes and reported as server errors, a malformed base URL noticed
only after the retries, and `serve` options that ended in tracebacks.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import connector.cli.app as cli
from connector.errors import (
    EXIT_CODES,
    ConfigurationError,
    DestinationBusyError,
    DestinationError,
    EndpointError,
    NotGraphQLError,
    ProtocolError,
    RedirectError,
    TransportError,
)
from connector.remote.transport import RetryPolicy, Transport

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "cli-failures-" + "0123456789" * 4
VIEWER = "query Viewer { viewer { id entity } }"


def _closed_port() -> int:
    """A loopback port that was just free: bound, then closed, so connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(base_url: str | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ, WANDB_API_KEY=API_KEY, **extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("WANDB_BASE_URL", None)
    if base_url is not None:
        env["WANDB_BASE_URL"] = base_url
    return env


def _cli(args: list[str], env: dict[str, str], *, timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "connector.cli", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return proc, time.monotonic() - started


def _one_error_line(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """The single stderr line of a failed command (asserting that it is one line, no traceback)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"wandb-history {command}: error: "), lines[0]
    assert API_KEY not in proc.stderr
    return lines[0]


# -- a loopback server that is not the W&B API ------------------------------------------------------
class _NotWandb(BaseHTTPRequestHandler):
    """Answers every request the way `server.mode` says, counting them."""

    server: _FakeServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        srv = self.server
        with srv.lock:
            srv.count += 1
            n = srv.count
        mode = srv.mode
        if mode in ("301", "302"):
            self._send(int(mode), b"moved", "text/plain", Location="https://elsewhere.example/api/graphql")
        elif mode == "html":
            page = b"<!doctype html><html><head><title>Sign in</title></head><body>login</body></html>"
            self._send(200, page, "text/html")
        elif mode == "badjson":
            self._send(200, b'{"data": {"viewer": ', "application/json")
        elif mode == "405":
            self._send(405, b"<html><title>405 Method Not Allowed</title></html>", "text/html", Allow="GET")
        elif mode == "truncate-once" and n == 1:
            body = b'{"data": {"viewer": {"id": "1", "entity": "e"}}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self._send(200, b'{"data": {"viewer": {"id": "1", "entity": "e"}}}', "application/json")

    def _send(self, status: int, body: bytes, kind: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    mode = "ok"
    count = 0

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _NotWandb)
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def not_wandb() -> Iterator[_FakeServer]:
    server = _FakeServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


MISCONFIGURED = [
    ("301", RedirectError, "redirects to https://elsewhere.example/api/graphql"),
    ("302", RedirectError, "WANDB_BASE_URL=https://elsewhere.example/api"),
    ("html", NotGraphQLError, "did not answer JSON"),
    ("badjson", NotGraphQLError, "did not answer JSON"),
    ("405", EndpointError, "HTTP 405"),
]


@pytest.mark.parametrize("mode,error,words", MISCONFIGURED)
def test_transport_raises_misconfiguration_at_once(not_wandb: _FakeServer, mode: str, error: type, words: str) -> None:
    not_wandb.mode = mode
    transport = Transport(not_wandb.base_url, API_KEY)  # the default policy: a retry would wait >= 1s
    started = time.monotonic()
    with pytest.raises(error) as info:
        transport.execute(VIEWER)
    assert time.monotonic() - started < 1.0
    assert not_wandb.count == 1  # not retried, and a redirect is not followed
    assert isinstance(info.value, ConfigurationError) and info.value.exit_code == 2
    assert words in str(info.value) and API_KEY not in str(info.value)
    assert transport.stats["retries"] == 0


@pytest.mark.parametrize("mode,error,words", MISCONFIGURED)
def test_cli_exits_2_at_once_naming_the_cause(not_wandb: _FakeServer, tmp_path: Path, mode: str, error: type, words: str) -> None:
    not_wandb.mode = mode
    proc, elapsed = _cli(["export", "e/p", "--to", str(tmp_path / "x.duckdb")], _env(not_wandb.base_url), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert elapsed < 5.0
    assert words in _one_error_line(proc, "export")
    assert not_wandb.count == 1


def test_truncated_bodies_are_still_retried(not_wandb: _FakeServer, caplog: Any) -> None:
    not_wandb.mode = "truncate-once"
    transport = Transport(not_wandb.base_url, API_KEY, retry=RetryPolicy(initial_wait=0.01, max_wait=0.01))
    caplog.set_level(logging.WARNING, logger="connector.remote.transport")
    assert transport.execute(VIEWER) == {"viewer": {"id": "1", "entity": "e"}}
    assert not_wandb.count == 2 and transport.stats["retries"] == 1
    assert "retrying 2/20 in" in caplog.text and "truncated answer" in caplog.text


def test_a_graphql_answer_still_works(not_wandb: _FakeServer) -> None:
    not_wandb.mode = "ok"
    data = Transport(not_wandb.base_url, API_KEY).execute(VIEWER)
    assert data["viewer"]["entity"] == "e"
    assert issubclass(NotGraphQLError, ProtocolError)  # callers catching ProtocolError still do


# -- a base URL that is not a URL -----------------------------------------------------------------
@pytest.mark.parametrize("bad", ["not a url", "api.wandb.ai", "http://", "ftp://host", "http://host:99999"])
def test_malformed_base_url_is_refused_when_the_transport_is_made(bad: str) -> None:
    from connector import Api

    with pytest.raises(ConfigurationError, match="WANDB_BASE_URL .* is not a usable URL"):
        Transport(bad, API_KEY)
    with pytest.raises(ConfigurationError, match="is not a usable URL") as info:
        Api(api_key=API_KEY, base_url=bad)
    assert repr(bad.rstrip("/")) in str(info.value)


def test_cli_malformed_base_url_exits_2_at_once(tmp_path: Path) -> None:
    proc, elapsed = _cli(["export", "e/p", "--to", str(tmp_path / "x.duckdb")], _env("not a url"), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert elapsed < 5.0
    assert "'not a url'" in _one_error_line(proc, "export")


# -- an unreachable server ------------------------------------------------------------------------
def test_closed_port_shows_retries_and_exits_3_within_the_timeout(tmp_path: Path) -> None:
    dest = tmp_path / "x.duckdb"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", "e/p", "--to", str(dest), "--timeout", "8"],
        env=_env(f"http://127.0.0.1:{_closed_port()}"), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.monotonic() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=8 + 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    elapsed = time.monotonic() - started
    text = "\n".join(line for _, line in lines)
    retries = [t for t, line in lines if "retrying" in line]
    assert retries and retries[0] < 10, text
    assert code == 3, text
    assert elapsed < 8 + 15
    assert "Traceback" not in text and API_KEY not in text
    last = [line for _, line in lines if line.strip()][-1]
    assert last.startswith("wandb-history export: error: gave up after "), last
    assert "attempts: connection refused to http://127.0.0.1:" in last
    assert not Path(dest).exists()


def test_quiet_does_not_hide_retries(tmp_path: Path) -> None:
    proc, elapsed = _cli(
        ["export", "e/p", "--to", str(tmp_path / "x.duckdb"), "--quiet", "--timeout", "3"],
        _env(f"http://127.0.0.1:{_closed_port()}"),
    )
    assert proc.returncode == 3, proc.stderr
    assert "wandb-history: retrying 2/20 in " in proc.stderr
    assert elapsed < 3 + 10


def test_transport_deadline_is_a_real_bound(caplog: Any) -> None:
    port = _closed_port()
    transport = Transport(f"http://127.0.0.1:{port}", API_KEY, retry=RetryPolicy(deadline=2.0, initial_wait=0.2))
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"gave up after \S+s and \d+ attempts: connection refused to") as info:
        transport.execute(VIEWER)
    assert time.monotonic() - started <= 2.0 + 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all(w.startswith("retrying ") and w.endswith("(Viewer)") for w in warnings)
    assert warnings[0].startswith("retrying 2/20 in ")
    assert transport.stats["retries"] == len(warnings)
    attempts = int(str(info.value).split(" attempts")[0].rsplit(" ", 1)[1])
    assert attempts == len(warnings) + 1 and info.value.exit_code == 3
    assert API_KEY not in caplog.text and API_KEY not in str(info.value)


def test_sql_unreachable_exits_3() -> None:
    proc, _ = _cli(
        ["sql", "SELECT * FROM wandb_history('e/p/r')", "--timeout", "2"],
        _env(f"http://127.0.0.1:{_closed_port()}"),
    )
    assert proc.returncode == 3, proc.stderr
    assert "connection refused" in proc.stderr.splitlines()[-1]


# -- serve ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,words",
    [
        (["--demo", "--port", "99999"], "--port must be in 0..65535"),
        (["--synthetic", "acme:runs=2"], "'acme' before ':' is not entity/project; expected entity/project:"),
        (["--synthetic", "e/p:runs=two"], "runs='two' is not an integer"),
        (["--demo", "--api-key", "short"], "at least 40 characters"),
        (["does/not/exist.wandb"], "cannot serve 'does/not/exist.wandb': no such file or directory"),
    ],
)
def test_serve_bad_options_exit_2_in_one_line(args: list[str], words: str) -> None:
    proc, _ = _cli(["serve", *args], _env(), timeout=20)
    assert proc.returncode == 2, proc.stderr
    assert words in _one_error_line(proc, "serve")
    assert "Serving" not in proc.stdout


def test_serve_address_in_use_exits_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc, _ = _cli(["serve", "--demo", "--port", str(busy.getsockname()[1])], _env(), timeout=20)
    assert proc.returncode == 2, proc.stderr
    assert "cannot listen on 127.0.0.1:" in _one_error_line(proc, "serve")


# -- --verbose, --help, internal errors ------------------------------------------------------------
@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_prints_the_traceback(where: str) -> None:
    args = ["serve", "--port", "99999"]
    args = ["-v", *args] if where == "before" else [*args, "--verbose"]
    proc, _ = _cli(args, _env(), timeout=20)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("wandb-history serve: error: --port must be")


def test_help_lists_the_exit_codes() -> None:
    for args in (["--help"], ["export", "--help"]):
        proc, _ = _cli(args, _env())
        assert proc.returncode == 0
        assert EXIT_CODES in proc.stdout
        for code in ("0", "1", "2", "3", "4", "70", "130"):
            assert f"\n  {code} " in proc.stdout
    proc, _ = _cli(["export", "--help"], _env())
    assert "--timeout SECONDS" in proc.stdout
    proc, _ = _cli(["sql", "--help"], _env())
    assert "--timeout SECONDS" in proc.stdout


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def test_unexpected_errors_are_internal_errors(monkeypatch: Any, capsys: Any, restore_logging: None) -> None:
    def add_boom(sub: Any) -> None:
        def boom(args: Any) -> int:
            raise RuntimeError("boom\nsecond line")

        sub.add_parser("boom").set_defaults(func=boom)

    monkeypatch.setattr(cli, "_adders", lambda: [add_boom])
    assert cli.main(["boom"]) == 70
    err = capsys.readouterr().err
    assert err == (
        "wandb-history boom: internal error: RuntimeError: boom second line "
        "(run with --verbose for the traceback)\n"
    )
    assert cli.main(["boom", "-v"]) == 70
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_exit_codes_of_the_error_classes() -> None:
    from connector import errors

    assert errors.AuthenticationError("x").exit_code == 2
    assert errors.NotFoundError("x").exit_code == 2
    assert errors.ServerError("x").exit_code == 3 and errors.RateLimitedError("x").exit_code == 3
    assert TransportError("x").exit_code == 3
    assert DestinationError("x").exit_code == 2 and isinstance(DestinationError("x"), ConfigurationError)
    assert DestinationBusyError("x").exit_code == 4
    assert errors.EXIT_INTERNAL == 70 and errors.EXIT_INTERRUPTED == 130
