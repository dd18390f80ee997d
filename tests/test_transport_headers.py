"""What goes on the wire: the public client's headers, RateLimit pacing, the light runs listing.

Headers and pacing are seen by a real HTTP server on 127.0.0.1 (`_Recorder`: it records every
request and answers each as the test tells it); the listing runs against the emulator, whose
counters say which fields every request asked for.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import duckdb
import pytest
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
    parse,
    validate,
)

import connector.remote.transport as transport_module
from connector import Api
from connector._version import __version__
from connector.emulator.graphql_app import load_schema
from connector.engines.duckdb import register, unregister
from connector.errors import ConfigurationError
from connector.remote.queries import LISTING_OMITS, document
from connector.remote.transport import SDK_VERSION, RetryPolicy, Transport

KEY = "sEcReT" * 7  # 42 characters
QUERY = "query Viewer($n: Int) { viewer { id } }"
FAST = RetryPolicy(max_attempts=5, deadline=20, initial_wait=0.01, max_wait=0.01)

# -- a loopback server that records what it is sent -----------------------------------------------


@dataclass
class Seen:
    """One request as the server saw it, and when its answer went out."""

    arrived: float
    path: str
    headers: dict[str, str]
    body: bytes
    answered: float = 0.0
    sent_headers: dict[str, str] = field(default_factory=dict)


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: Callable[[int, float], tuple[int, dict[str, str]]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer  # (request index, arrival time) -> (status, extra headers)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Recorder

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        arrived = time.monotonic()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = Seen(arrived, self.path, dict(self.headers.items()), body)
        with self.server.lock:
            index = len(self.server.seen)
            self.server.seen.append(seen)
            status, extra = self.server.answer(index, arrived)
        doc: dict[str, Any] = {"data": {"viewer": {"id": "1"}}} if status == 200 else {"errors": [{"message": "slow down"}]}
        out = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        seen.answered, seen.sent_headers = time.monotonic(), extra
        self.wfile.write(out)


@pytest.fixture
def serve() -> Iterator[Callable[..., _Recorder]]:
    servers: list[_Recorder] = []

    def start(answer: Callable[[int, float], tuple[int, dict[str, str]]] = lambda i, t: (200, {})) -> _Recorder:
        server = _Recorder(answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def no_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_USERNAME", raising=False)
    monkeypatch.delenv("WANDB_USER_EMAIL", raising=False)


# -- headers ------------------------------------------------------------------------------------


def test_headers_are_the_public_clients_with_our_name(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_USERNAME", "ada")
    monkeypatch.setenv("WANDB_USER_EMAIL", "ada@example.com")
    server = serve()
    Transport(server.url, KEY, retry=FAST).execute(QUERY, {"n": 1})
    (seen,) = server.seen
    h = seen.headers
    assert h["User-Agent"] == f"W&B Public Client 0.31.0 (wandb-history-connector {__version__})"
    assert h["Use-Admin-Privileges"] == "true"
    assert h["X-Wandb-Username"] == "ada" and h["X-Wandb-User-Email"] == "ada@example.com"
    assert h["Content-Type"] == "application/json" and h["Accept-Encoding"] == "gzip"
    assert h["Authorization"] == "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    assert seen.path == "/graphql"


def test_the_user_agent_keeps_the_pinned_sdks_prefix() -> None:
    # the service recognises the public client by this prefix (the SDK sends "W&B Public Client <v>")
    assert importlib.metadata.version("wandb") == SDK_VERSION
    assert Transport("http://127.0.0.1:9", None).user_agent.startswith(f"W&B Public Client {SDK_VERSION} (")


def test_user_headers_are_left_out_when_unset(serve: Any, no_user: None) -> None:
    server = serve()
    Transport(server.url, KEY, retry=FAST).execute(QUERY)
    names = {name.lower() for name in server.seen[0].headers}
    assert "x-wandb-username" not in names and "x-wandb-user-email" not in names
    assert "use-admin-privileges" in names


def test_a_non_ascii_user_name_goes_out_as_utf8(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_USERNAME", "José Ñúñez")
    server = serve()
    Transport(server.url, KEY, retry=FAST).execute(QUERY)
    raw = server.seen[0].headers["X-Wandb-Username"].encode("latin-1")  # http.server reads Latin-1
    assert raw.decode("utf-8") == "José Ñúñez"


def test_a_control_character_in_a_user_header_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_USER_EMAIL", "ada@example.com\r\nX-Evil: 1")
    with pytest.raises(ConfigurationError, match="WANDB_USER_EMAIL"):
        Transport("http://127.0.0.1:9", KEY)


def test_the_key_goes_only_in_authorization(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_USERNAME", "ada")
    server = serve()
    api = Api(api_key=KEY, base_url=server.url, retry=FAST)
    api.transport.execute(QUERY, {"n": 2})
    api.viewer  # noqa: B018 - a request through the Api
    encoded = base64.b64encode(f"api:{KEY}".encode()).decode()
    assert len(server.seen) == 2
    for seen in server.seen:
        assert seen.headers["Use-Admin-Privileges"] == "true" and seen.headers["X-Wandb-Username"] == "ada"
        for name, value in seen.headers.items():
            if name.lower() != "authorization":
                assert KEY not in value and encoded not in value, name
        assert KEY.encode() not in seen.body and encoded.encode() not in seen.body
        assert KEY not in seen.path


# -- RateLimit ----------------------------------------------------------------------------------


def _window(limit: int, seconds: float, integer_reset: bool = False) -> Callable[[int, float], tuple[int, dict[str, str]]]:
    """`limit` requests per window of `seconds`, told in RateLimit headers; one more is a 429."""
    state = {"start": -math.inf, "count": 0}

    def answer(index: int, now: float) -> tuple[int, dict[str, str]]:
        if now >= state["start"] + seconds:
            state["start"], state["count"] = now, 0
        state["count"] += 1
        reset = state["start"] + seconds - now
        shown = str(math.ceil(reset)) if integer_reset else f"{reset:.3f}"
        headers = {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(max(0, limit - state["count"])),
                   "RateLimit-Reset": shown}  # fmt: skip
        if state["count"] > limit:
            return 429, {**headers, "Retry-After": shown}
        return 200, headers

    return answer


@pytest.mark.parametrize(("seconds", "integer_reset"), [(0.4, False), (1, True)])
def test_requests_wait_for_the_reset_when_none_remain(serve: Any, seconds: float, integer_reset: bool) -> None:
    server = serve(_window(2, seconds, integer_reset))
    transport = Transport(server.url, KEY, retry=FAST)
    for _ in range(6):
        transport.execute(QUERY)
    seen = server.seen
    assert len(seen) == 6 and transport.stats["retries"] == 0  # never a 429
    for before, after in zip(seen, seen[1:], strict=False):
        if before.sent_headers["RateLimit-Remaining"] == "0":
            reset = float(before.sent_headers["RateLimit-Reset"])
            assert after.arrived >= before.answered + reset - 0.02
    assert seen[-1].arrived - seen[0].arrived >= 2 * seconds - 0.05  # three windows


def test_the_pause_holds_every_thread(serve: Any) -> None:
    server = serve(lambda i, t: (200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "0.5"} if i == 0 else {}))
    transport = Transport(server.url, KEY, retry=FAST)
    transport.execute(QUERY)
    with ThreadPoolExecutor(3) as pool:  # each thread has its own session and connection
        list(pool.map(lambda _: transport.execute(QUERY), range(3)))
    first, *others = server.seen
    assert len(others) == 3
    assert all(s.arrived >= first.answered + 0.5 - 0.02 for s in others)
    assert max(s.arrived for s in others) - first.answered < 0.5 + 2.0  # and then they all go


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"RateLimit-Remaining": "5", "RateLimit-Reset": "10"},  # requests remain
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "soon"},
        {"RateLimit-Remaining": "none", "RateLimit-Reset": "10"},
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "nan"},
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "-10"},
        {"RateLimit-Remaining": "0"},
        {"RateLimit-Reset": "10"},
    ],
)
def test_no_pause_without_usable_headers(serve: Any, headers: dict[str, str]) -> None:
    usable = {"RateLimit-Remaining": "0", "RateLimit-Reset": "0.4"}
    server = serve(lambda i, t: (200, headers if i < 4 else usable))
    transport = Transport(server.url, KEY, retry=FAST)
    started = time.monotonic()
    for _ in range(4):
        transport.execute(QUERY)
    assert time.monotonic() - started < 5.0  # a pause would be 10 s
    transport.execute(QUERY)  # answered with usable headers: the next request waits
    transport.execute(QUERY)
    assert server.seen[5].arrived >= server.seen[4].answered + 0.4 - 0.02


def test_a_pause_is_capped_and_logged(serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.setattr(transport_module, "RATE_LIMIT_MAX_WAIT", 0.3)
    server = serve(lambda i, t: (200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "3600"}))
    transport = Transport(server.url, KEY, retry=FAST)
    caplog.set_level(logging.INFO, logger="connector.remote.transport")
    started = time.monotonic()
    for _ in range(3):
        transport.execute(QUERY)
    assert 0.6 - 0.05 <= time.monotonic() - started < 10.0  # uncapped: an hour (the deadline: 19 s)
    lines = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]
    assert lines and all(r.levelno == logging.INFO for r in caplog.records if "rate limit" in r.getMessage())
    assert "RateLimit-Remaining 0" in lines[0] and "0.3s" in lines[0] and KEY not in caplog.text


def test_a_pause_never_outlasts_the_request_deadline(serve: Any) -> None:
    server = serve(lambda i, t: (200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "3600"}))
    transport = Transport(server.url, KEY, retry=RetryPolicy(max_attempts=2, deadline=1.5))
    transport.execute(QUERY)
    started = time.monotonic()
    transport.execute(QUERY)  # held for what the deadline leaves (0.5 s), not for an hour
    assert 0.4 <= time.monotonic() - started < 5.0  # RATE_LIMIT_MAX_WAIT alone would allow 60 s


# -- the light runs listing ---------------------------------------------------------------------


def _node_fields(text: str) -> set[str]:
    """The fields the runs listing asks of each run (``edges { node { ... } }``, spreads resolved)."""
    doc = parse(text)
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    op = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))

    def select(node: Any, path: list[str]) -> Any:
        for name in path:
            node = next(s for s in node.selection_set.selections if isinstance(s, FieldNode) and s.name.value == name)
        return node

    node = select(op, ["project", "runs", "edges", "node"])
    out: set[str] = set()
    for sel in node.selection_set.selections:
        if isinstance(sel, FragmentSpreadNode):
            out.update(s.name.value for s in fragments[sel.name.value].selection_set.selections)  # type: ignore[attr-defined]
        else:
            out.add(sel.name.value)
    return out


def test_the_runs_listing_asks_no_heavy_field() -> None:
    assert {"config", "summaryMetrics", "systemMetrics", "historyKeys"} <= set(LISTING_OMITS)
    light, full = _node_fields(document("runs")), _node_fields(document("runs", full=True))
    assert not light & set(LISTING_OMITS)
    assert {"name", "state", "displayName", "tags", "createdAt", "historyLineCount", "projectId"} <= light
    assert full == light | set(LISTING_OMITS)
    for text in (document("runs"), document("runs", full=True)):
        assert validate(load_schema(), parse(text)) == []


def _fields(emu: Any) -> dict[str, int]:
    return {name: f["requests"] for name, f in emu.counters()["by_field"].items()}


def _sent_documents(api: Api) -> list[str]:
    """Every document `api` sends from now on (a spy on its transport)."""
    sent: list[str] = []
    execute_raw = api.transport.execute_raw

    def spy(query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return execute_raw(query, *args, **kwargs)

    api.transport.execute_raw = spy  # type: ignore[method-assign]
    return sent


def test_listing_ids_reads_no_heavy_field(make_emulator: Any) -> None:
    emu = make_emulator("e/p:runs=3,steps=40,keys=4,seed=3")
    api = Api(api_key=emu.api_key, base_url=emu.base_url, retry=FAST)
    sent = _sent_documents(api)
    emu.reset_counters()
    runs = list(api.runs("e/p", per_page=2))
    meta = [(r.id, r.name, r.state, r.tags, r.created_at, r.history_line_count, r.sweep_name) for r in runs]
    assert sorted(m[0] for m in meta) == sorted(p.split("/")[2] for p in emu.paths())
    assert all(m[5] == len(emu.run(*p.split("/")).steps()) for m, p in zip(meta, [r.ref.path for r in runs], strict=True))
    assert "run" not in _fields(emu) and "historyKeys" not in _fields(emu)
    assert sent and all("summaryMetrics" not in text and "historyKeys" not in text for text in sent)


def test_heavy_fields_are_fetched_once_on_first_use(make_emulator: Any) -> None:
    emu = make_emulator("e/p:runs=3,steps=40,keys=4,seed=3")
    api = Api(api_key=emu.api_key, base_url=emu.base_url, retry=FAST)
    runs = list(api.runs("e/p"))
    emu.reset_counters()
    run = runs[0]
    truth = emu.run(*run.ref.path.split("/"))
    with ThreadPoolExecutor(8) as pool:  # eight threads at once still cost one request
        configs = list(pool.map(lambda _: run.config, range(8)))
    assert _fields(emu) == {"run": 1, "historyKeys": 1}
    assert all(c is configs[0] for c in configs)
    assert run.config == {k: v for k, v in truth.meta.config.items() if k not in ("_wandb", "wandb_version")}
    assert run.summary == truth.meta.summary and run.summary_metrics is run.summary
    assert isinstance(run.system_metrics, dict) and isinstance(run.rawconfig, dict) and run.json_config
    assert run.history_keys["lastStep"] == truth.history_keys()["lastStep"] == run.to_dict()["last_step"]
    assert run.load()["summaryMetrics"] == truth.meta.summary and run.systemMetrics is not None
    assert _fields(emu) == {"run": 1, "historyKeys": 1}  # everything since came from the cache
    assert runs[1].to_dict()["summary"] == emu.run(*runs[1].ref.path.split("/")).meta.summary
    assert _fields(emu) == {"run": 2, "historyKeys": 2}  # the other run: its own one request


def test_readers_of_every_run_list_every_field_at_once(make_emulator: Any) -> None:
    """``lazy=False`` and ``wandb_runs()`` read every run's summary without a request per run; the
    default listing would cost one each."""
    emu = make_emulator("e/p:runs=3,steps=40,keys=4,seed=3")
    api = Api(api_key=emu.api_key, base_url=emu.base_url, retry=FAST)
    truth = {p.split("/")[2]: emu.run(*p.split("/")).meta.summary for p in emu.paths()}
    emu.reset_counters()
    lazy = list(iter(api.runs("e/p")))  # iter: list() would ask len() first, a page more
    assert {r.id: r.summary for r in lazy} == truth and _fields(emu)["run"] == 3
    emu.reset_counters()
    full = list(iter(api.runs("e/p", lazy=False)))
    assert {r.id: r.to_dict()["summary"] for r in full} == truth
    assert "run" not in _fields(emu) and _fields(emu)["historyKeys"] == 3  # asked in the listing
    con = register(duckdb.connect(), api)
    try:
        emu.reset_counters()
        rows = con.sql("SELECT run_id, summary, last_step FROM wandb_runs('e/p') ORDER BY run_id").fetchall()
    finally:
        unregister(con)
        con.close()
    assert [r[0] for r in rows] == sorted(p.split("/")[2] for p in emu.paths())
    assert all(r[2] == emu.run("e", "p", r[0]).history_keys()["lastStep"] for r in rows)
    assert "run" not in _fields(emu)
