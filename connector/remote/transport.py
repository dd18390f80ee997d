"""GraphQL over HTTP: one `requests` session, explicit timeouts, bounded visible retries, typed errors.

* ``POST {base_url}/graphql`` with ``Authorization: Basic base64("api:" + key)``.
* The base URL is checked when the `Transport` is made: an ``http(s)://`` URL with a host, no
  whitespace (`ConfigurationError` naming the value otherwise).
* Retried: 429 (honouring ``Retry-After`` in seconds or as an HTTP date), 5xx except 501, connection
  errors, timeouts and truncated bodies (tenacity): exponential backoff with jitter, at most
  `max_attempts` attempts, never past `deadline` seconds (the last wait is cut so that the last
  attempt comes just before it; each attempt's timeouts are cut to what is left), then
  ``gave up after 30s and 6 attempts: connection refused to ...``. Each retry logs one WARNING line
  ``retrying 2/20 in 2.1s: <why> (<operation>)``.
* Not retried (raised at once): 401/403 (`AuthenticationError`), 404 (`NotFoundError`), the other 4xx
  (`RequestError`; 405 is an `EndpointError`), 501 (`EndpointError`), any 3xx (`RedirectError`:
  redirects are never followed, they would turn the POST into a GET), a 200 whose body is not a
  GraphQL JSON answer (`NotGraphQLError`: an HTML page, say) and an unverifiable TLS certificate.
  These misconfiguration errors are `ConfigurationError`s too.
* A 200 answer with GraphQL ``errors`` raises `ProtocolError` carrying the server's messages; so
  does one whose ``data`` is not a JSON object, or that nests deeper than the JSON parser allows.
* **Bounded attempts.** Every attempt has a wall-clock deadline, enforced by one shared watchdog
  thread that shuts the attempt's socket down when it passes: connect + read timeout from the start
  of the attempt and, once the request is sent, the read timeout for the status line, the headers
  and the *whole* body. (The socket's own read timeout bounds each ``recv`` only: a server sending
  one byte a second would otherwise hold an attempt open forever.) An attempt cut short is retried
  like any timeout ("timed out talking to ..."), within the overall `RetryPolicy.deadline`.
* **Bounded bodies.** An answer may hold at most `Transport.max_body_bytes` bytes (default
  `DEFAULT_MAX_BODY_BYTES`, 512 MiB) as sent *and* after decompression: a larger ``Content-Length``
  is refused before reading, a longer chunked body is cut off, and gzip/deflate bodies are inflated
  here, incrementally, never past the limit (``ProtocolError``: "answer from <url> inflates past N
  bytes"; not retried). Other content encodings are refused (only gzip is asked for).
* Each body whose length is declared is read in one call (``raw.read()``): reading in small chunks
  convoys on the GIL when several pages are in flight; a chunked body is read 1 MiB at a time.
* The API key never appears in reprs, logs or error messages, and goes only in ``Authorization`` to
  the GraphQL host.
* **Headers as the official public client sends them** (`request_headers`): ``User-Agent: W&B Public
  Client <SDK_VERSION> (wandb-history-connector <version>)`` (the service gates admin-capable access
  and some fields on the public client's User-Agent), ``Use-Admin-Privileges: true``,
  ``X-Wandb-Username`` / ``X-Wandb-User-Email`` from `WANDB_USERNAME` / `WANDB_USER_EMAIL` when set,
  ``Content-Type: application/json``, ``Accept-Encoding: gzip``.
* **RateLimit headers.** An answer (of any status) with ``RateLimit-Remaining`` at or below
  `RATE_LIMIT_FLOOR` and ``RateLimit-Reset`` (seconds, integer or not) holds the transport's *next*
  requests, in every thread, until the reset: each pause is at most `RATE_LIMIT_MAX_WAIT` seconds and
  never eats the last second of a request's `RetryPolicy.deadline`. Malformed values are ignored.
  Each pause logs one INFO line.

>>> t = Transport("http://127.0.0.1:9", "k" * 40)
>>> "k" * 40 in repr(t)
False
>>> Transport("not a url", None)
Traceback (most recent call last):
...
connector.errors.ConfigurationError: WANDB_BASE_URL 'not a url' is not a usable URL (it contains whitespace); expected e.g. https://api.wandb.ai or http://127.0.0.1:8080
"""

from __future__ import annotations

import base64
import copy
import email.utils
import functools
import heapq
import http.client
import itertools
import logging
import math
import os
import random
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

import orjson
import requests
import tenacity
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

from .._version import __version__
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    EndpointError,
    NotFoundError,
    NotGraphQLError,
    ProtocolError,
    RateLimitedError,
    RedirectError,
    RequestError,
    ServerError,
    TransportError,
)

log = logging.getLogger("connector.remote.transport")

#: The official SDK whose public client our requests mimic (its User-Agent prefix and headers).
SDK_VERSION = "0.31.0"
#: ``RateLimit-Remaining`` at or below this pauses the next requests until ``RateLimit-Reset``.
RATE_LIMIT_FLOOR = 0
#: The longest single pause for ``RateLimit-Reset`` (a longer reset is cut to this), in seconds.
RATE_LIMIT_MAX_WAIT = 60.0

#: The largest answer body accepted, as sent and after decompression (see the module docstring).
DEFAULT_MAX_BODY_BYTES = 512 * 1024 * 1024
_READ_CHUNK = 1024 * 1024  # reads of a body whose length is not declared

_ENDPOINT_STATUSES = {405, 501}  # the URL is there but is not a GraphQL endpoint
_OPERATION = re.compile(r"\b(?:query|mutation|subscription)\s+([A-Za-z_]\w*)")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_NETWORK_ERRORS = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry. The defaults follow the official client (about 20 tries within minutes).

    `deadline` bounds one request, retries and waits included: no wait starts that would end past it.
    """

    max_attempts: int = 20
    deadline: float = 300.0
    initial_wait: float = 1.0
    max_wait: float = 60.0
    max_retry_after: float = 120.0


class AttemptGate(Protocol):
    """Admission control around every HTTP attempt (retries included), e.g. an AIMD limiter.

    Backoff sleeps happen outside the gate.
    """

    def slot(self) -> AbstractContextManager[Any]: ...

    def on_throttle(self, retry_after: float | None) -> None: ...

    def on_success(self) -> None: ...


class _Retryable(Exception):
    """One failed attempt worth retrying: the typed error to raise if it is the last, and why."""

    def __init__(self, error: TransportError, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.retry_after = retry_after


def check_base_url(url: Any, api_key: str | None = None) -> str:
    """`url` without trailing slashes; `ConfigurationError` naming it unless it is an http(s) URL with a host.

    >>> check_base_url("http://127.0.0.1:8080/")
    'http://127.0.0.1:8080'
    >>> check_base_url("api.wandb.ai")
    Traceback (most recent call last):
    ...
    connector.errors.ConfigurationError: WANDB_BASE_URL 'api.wandb.ai' is not a usable URL (it needs http:// or https://); expected e.g. https://api.wandb.ai or http://127.0.0.1:8080
    """
    problem = None
    if not isinstance(url, str) or not url:
        problem = "it is empty"
    elif any(c.isspace() for c in url):
        problem = "it contains whitespace"
    else:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            problem = "it needs http:// or https://"
        elif not parts.hostname:
            problem = "it has no host"
        elif parts.query or parts.fragment or url.endswith(("?", "#")):
            problem = "it has a query or a fragment"
        else:
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
            except ValueError:
                problem = "its port is not a number in 0..65535"
    if problem:
        shown = repr(url)
        if api_key and api_key in shown:
            shown = shown.replace(api_key, "***")
        raise ConfigurationError(
            f"WANDB_BASE_URL {shown} is not a usable URL ({problem}); "
            "expected e.g. https://api.wandb.ai or http://127.0.0.1:8080"
        )
    assert isinstance(url, str)  # anything else set a problem above
    return url.rstrip("/")


def _without_password(url: str) -> str:
    """`url` with the password of its user info (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def request_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers of every GraphQL request except ``Authorization``: the official public client's,
    with our name added to its User-Agent; ``X-Wandb-Username`` / ``X-Wandb-User-Email`` from
    `WANDB_USERNAME` / `WANDB_USER_EMAIL` (of `environ`, default `os.environ`) when set.

    A value with a control character is a `ConfigurationError`; other non-ASCII text goes out as UTF-8.

    >>> h = request_headers({"WANDB_USERNAME": "ada"})
    >>> h["User-Agent"].startswith(f"W&B Public Client {SDK_VERSION} (wandb-history-connector ")
    True
    >>> h["Use-Admin-Privileges"], h["X-Wandb-Username"], "X-Wandb-User-Email" in h
    ('true', 'ada', False)
    """
    env = os.environ if environ is None else environ
    headers = {
        "User-Agent": f"W&B Public Client {SDK_VERSION} (wandb-history-connector {__version__})",
        "Use-Admin-Privileges": "true",
        "Content-Type": "application/json",
        "Accept-Encoding": "gzip",
    }
    for header, variable in (
        ("X-Wandb-Username", "WANDB_USERNAME"),
        ("X-Wandb-User-Email", "WANDB_USER_EMAIL"),
    ):
        value = env.get(variable)
        if not value:
            continue
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigurationError(f"{variable} holds a control character; it cannot be sent as {header}")
        # http.client sends header text as Latin-1: this puts the value's UTF-8 bytes on the wire
        headers[header] = value.encode("utf-8").decode("latin-1")
    return headers


def _number(value: str | None) -> float | None:
    """A finite number from header text, None for anything else."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def rate_limit_pause(remaining: str | None, reset: str | None) -> float | None:
    """Seconds to hold the next requests for, from ``RateLimit-Remaining`` and ``RateLimit-Reset``
    (seconds until the window resets); None when there is nothing to wait for or a value is malformed.

    >>> rate_limit_pause("0", "2.5"), rate_limit_pause("5", "2.5"), rate_limit_pause("0", "soon")
    (2.5, None, None)
    >>> rate_limit_pause("0", "3600")  # cut to RATE_LIMIT_MAX_WAIT
    60.0
    """
    left, seconds = _number(remaining), _number(reset)
    if left is None or seconds is None or left > RATE_LIMIT_FLOOR or seconds <= 0:
        return None
    return min(seconds, RATE_LIMIT_MAX_WAIT)


class _Pace:
    """When the next request may go, from the server's RateLimit headers; shared by every thread
    using one transport (and by its `Transport.with_gate` copies: one server, one key, one budget)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0  # time.monotonic() before which no request is sent

    def note(self, remaining: str | None, reset: str | None, label: str) -> None:
        """Take in one answer's RateLimit headers."""
        pause = rate_limit_pause(remaining, reset)
        if pause is None:
            return
        now = time.monotonic()
        with self._lock:
            paused = self._until > now
            self._until = max(self._until, now + pause)
        if not paused:  # one line per pause, not one per thread
            log.info(
                "rate limit reached (RateLimit-Remaining %s): holding requests for %s until the window "
                "resets (%s)", remaining.strip() if remaining else remaining, _seconds(pause), label,
            )  # fmt: skip

    def wait(self, budget: float) -> None:
        """Sleep until requests may go again, at most `budget` seconds."""
        end = time.monotonic() + budget
        while True:
            now = time.monotonic()
            with self._lock:
                delay = min(self._until, end) - now
            if delay <= 0:
                return
            time.sleep(delay)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _server_message(body: bytes) -> str:
    """The server's own words: GraphQL ``errors`` messages, an ``error`` string, an HTML title or text."""
    try:
        doc = orjson.loads(body)
        messages = [e.get("message", "") for e in doc.get("errors", [])]
        if messages:
            return _one_line("; ".join(m for m in messages if m), 1000)
        if isinstance(doc.get("error"), str):
            return _one_line(doc["error"])
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        pass
    if body.lstrip()[:1] == b"<":
        title = _TITLE.search(body[:4096])
        return f"an HTML page titled {_one_line(title[1].decode('utf-8', 'replace'))!r}" if title else "an HTML page"
    return _one_line(body[:400].decode("utf-8", "replace"))


@functools.lru_cache(maxsize=64)
def _operation_of(query: str) -> str:
    m = _OPERATION.search(query)
    return m[1] if m else "GraphQL request"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it wraps (causes, contexts, urllib3 reasons, exception arguments)."""
    stack: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        stack += [cur.__cause__, cur.__context__, getattr(cur, "reason", None)]
        stack += [a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)]


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"


class _Alarm:
    """The wall-clock deadline of one HTTP attempt and the socket to shut down when it passes."""

    __slots__ = ("deadline", "read", "sock", "fired", "done", "lock")

    def __init__(self, deadline: float, read: float) -> None:
        self.deadline = deadline
        self.read = read  # the budget from the moment the request is sent
        self.sock: Any = None
        self.fired = False
        self.done = False
        self.lock = threading.Lock()

    def attach(self, sock: Any, *, sent: bool = False) -> None:
        """The attempt's socket is known (and, with `sent`, the request is on the wire)."""
        if sock is None:
            return
        with self.lock:
            if self.done:
                return
            self.sock = sock
            fired = self.fired
            if sent and not fired:
                deadline = time.monotonic() + self.read
                if deadline < self.deadline:
                    self.deadline = deadline
                    _WATCHDOG.arm(self)
        if fired:
            _shutdown(sock)

    def fire(self) -> None:
        with self.lock:
            if self.done or self.fired or time.monotonic() < self.deadline:
                return
            self.fired = True
            sock = self.sock
        if sock is not None:
            _shutdown(sock)

    def disarm(self) -> bool:
        """End the attempt; True if the deadline had passed (its socket was shut down)."""
        with self.lock:
            self.done = True
            self.sock = None
            return self.fired


def _shutdown(sock: Any) -> None:
    """Wake a thread blocked reading `sock` (at the descriptor: this also ends a TLS read)."""
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)  # SSLTransport
    if not isinstance(raw, socket.socket):
        return
    try:
        socket.socket.shutdown(raw, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class _Watchdog:
    """One daemon thread firing the alarms of attempts past their deadline (started on first use)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Fresh state (also in a forked child, where the lock may be held by a thread now gone)."""
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, alarm: _Alarm) -> None:
        with self._cond:
            heapq.heappush(self._heap, (alarm.deadline, next(self._order), alarm))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(
                    target=self._run, name="wandb-history-watchdog", daemon=True
                )
                self._thread.start()
            if self._heap[0][2] is alarm:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            due: list[_Alarm] = []
            with self._cond:
                while not due:
                    now = time.monotonic()
                    heap = self._heap
                    while heap and (heap[0][2].done or heap[0][0] <= now):
                        alarm = heapq.heappop(heap)[2]
                        if not alarm.done:
                            due.append(alarm)
                    if not due:
                        self._cond.wait(heap[0][0] - now if heap else None)
            for alarm in due:
                alarm.fire()


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG._reset)
_CURRENT = threading.local()  # .alarm: the alarm of the attempt this thread is making


class _WatchedConnection:
    """Hands the socket to the current attempt's alarm when the request has been sent."""

    sock: socket.socket | None

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        alarm = getattr(_CURRENT, "alarm", None)
        if alarm is not None:
            alarm.attach(self.sock, sent=True)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]  # a mixin: the urllib3 connection after it in the MRO has getresponse


class _HTTPConnection(_WatchedConnection, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    """`HTTPAdapter` whose connections report their sockets to the attempt watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def _inflate(data: bytes, wbits: int, limit: int) -> bytes | None:
    """`data` decompressed (every gzip member), or None past `limit` bytes; `zlib.error` if corrupt,
    `EOFError` if cut short. Never holds more than `limit` + 1 inflated bytes."""
    parts: list[bytes] = []
    total = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        part = inflater.decompress(data, limit + 1 - total)
        total += len(part)
        if total > limit:
            return None
        parts.append(part)
        if not inflater.eof:
            raise EOFError("compressed answer cut short")
        data = inflater.unused_data
        if not data.strip(b"\0"):  # no further member (trailing NUL padding is tolerated)
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)



class Transport:
    """A GraphQL client for one W&B server and API key. Thread-safe; pooled keep-alive connections.

    `timeout` is ``(connect, read)`` seconds (one number sets both); the read timeout also bounds the
    wall-clock time from sending a request to the last byte of its answer. `max_body_bytes` bounds
    each answer, as sent and inflated (see the module docstring).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float | tuple[float, float] = (10.0, 60.0),
        retry: RetryPolicy | None = None,
        pool_size: int = 16,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.base_url = check_base_url(base_url, api_key)
        self.max_body_bytes = max_body_bytes
        self.endpoint = f"{self.base_url}/graphql"
        self._shown = _without_password(self.base_url)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._auth = (
            "Basic " + base64.b64encode(f"api:{api_key}".encode()).decode() if api_key else None
        )
        self.headers = request_headers()
        self.user_agent = self.headers["User-Agent"]
        self._pace = _Pace()
        self._pool_size = pool_size
        self.gate: AttemptGate | None = None
        self._local = threading.local()
        self.stats = {"requests": 0, "retries": 0, "bytes": 0}
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Transport(base_url={self._shown!r}, authenticated={self._auth is not None})"

    def with_gate(self, gate: AttemptGate) -> Transport:
        """A copy of this transport (same server, key, timeouts, retries, and the same RateLimit
        pauses) whose attempts pass `gate`."""
        new = copy.copy(self)
        new.gate = gate
        new._local = threading.local()
        new.stats = {"requests": 0, "retries": 0, "bytes": 0}
        new._stats_lock = threading.Lock()
        return new

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = _Adapter(pool_connections=1, pool_maxsize=self._pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(self.headers)
            if self._auth:
                session.headers["Authorization"] = self._auth
            self._local.session = session
        return session

    def execute(
        self, query: str, variables: dict[str, Any] | None = None, operation_name: str = ""
    ) -> dict[str, Any]:
        """Run one GraphQL document and return its ``data`` object."""
        return self.execute_raw(query, variables, operation_name)[0]

    def execute_raw(
        self, query: str, variables: dict[str, Any] | None = None, operation_name: str = ""
    ) -> tuple[dict[str, Any], bytes]:
        """Run one document; return its ``data`` object and the raw answer body."""
        body = orjson.dumps(
            {"query": query, "variables": variables or {}, "operationName": operation_name}
        )
        label = operation_name or _operation_of(query)
        policy = self.retry
        started = time.monotonic()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=tenacity.stop_after_attempt(policy.max_attempts) | tenacity.stop_after_delay(policy.deadline),
            wait=self._wait,
            before_sleep=lambda state: self._before_sleep(state, label),
            reraise=True,
        )

        def attempt() -> tuple[dict[str, Any], bytes]:
            # a RateLimit pause leaves the attempt at least a second of the deadline
            self._pace.wait(max(0.0, policy.deadline - (time.monotonic() - started) - 1.0))
            return self._attempt(body, label, self._attempt_timeout(started))

        try:
            return retrying(attempt)
        except _Retryable as failure:
            error = failure.error
            attempts = retrying.statistics.get("attempt_number", 1)
            tries = f"{attempts} attempt" + ("s" if attempts != 1 else "")
            raise type(error)(
                f"gave up after {_seconds(time.monotonic() - started)} and {tries}: {failure.reason} ({label})",
                status=error.status,
            ) from failure.__cause__

    def _before_sleep(self, state: tenacity.RetryCallState, label: str) -> None:
        failure = state.outcome.exception() if state.outcome else None
        reason = failure.reason if isinstance(failure, _Retryable) else str(failure)
        with self._stats_lock:
            self.stats["retries"] += 1
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "retrying %d/%d in %.1fs: %s (%s)",
            state.attempt_number + 1, self.retry.max_attempts, wait, reason, label,
        )  # fmt: skip

    def _attempt_timeout(self, started: float) -> tuple[float, float]:
        """This attempt's (connect, read) timeouts, cut to what is left of the deadline (at least 1s)."""
        if isinstance(self.timeout, tuple):
            connect, read = self.timeout
        else:
            connect = read = float(self.timeout)
        left = max(1.0, self.retry.deadline - (time.monotonic() - started))
        return min(connect, left), min(read, left)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Retry-After when the server gave one, else exponential backoff with jitter; never past
        the deadline (the last attempt comes just before it, so --timeout is used in full)."""
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Retryable) and failure.retry_after is not None:
            wait = min(failure.retry_after, self.retry.max_retry_after)
        else:
            base = self.retry.initial_wait * 2 ** (state.attempt_number - 1)
            wait = min(self.retry.max_wait, base) * (1 + 0.25 * random.random())
        elapsed = state.seconds_since_start or 0.0  # None only before the first attempt ends
        left = self.retry.deadline - elapsed - 0.05
        return max(0.0, min(wait, left))

    def _attempt(
        self, body: bytes, label: str, timeout: tuple[float, float]
    ) -> tuple[dict[str, Any], bytes]:
        gate = self.gate
        with gate.slot() if gate is not None else nullcontext():
            try:
                result = self._attempt_once(body, label, timeout)
            except _Retryable as exc:
                throttled = isinstance(exc.error, RateLimitedError) or (
                    isinstance(exc.error, ServerError) and exc.error.status == 503
                )
                if gate is not None and throttled:
                    gate.on_throttle(exc.retry_after)
                raise
        if gate is not None:
            gate.on_success()
        return result

    def _attempt_once(
        self, body: bytes, label: str, timeout: tuple[float, float]
    ) -> tuple[dict[str, Any], bytes]:
        connect, read = timeout
        limit = max(connect + read, 0.001)
        alarm = _Alarm(time.monotonic() + limit, read)
        _WATCHDOG.arm(alarm)
        _CURRENT.alarm = alarm
        try:
            response = self._session().post(
                self.endpoint, data=body, timeout=timeout, stream=True, allow_redirects=False
            )
            try:
                if alarm.sock is None:  # a connection class the hook does not cover (a proxy)
                    alarm.attach(getattr(getattr(response.raw, "connection", None), "sock", None))
                raw = self._read_body(response, label)
            finally:
                response.close()
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            raise ConfigurationError(f"WANDB_BASE_URL {self._shown} cannot be used: {exc}") from exc
        except _NETWORK_ERRORS as exc:
            if alarm.disarm():
                self._raise_too_slow(read, label, exc)
            self._raise_network_error(exc, label)
        finally:
            _CURRENT.alarm = None
            fired = alarm.disarm()
        if fired:
            self._raise_too_slow(read, label, None)
        status = response.status_code
        headers = response.headers
        self._pace.note(headers.get("RateLimit-Remaining"), headers.get("RateLimit-Reset"), label)
        content = self._decode_body(raw, response.headers.get("Content-Encoding"), label)
        with self._stats_lock:
            self.stats["requests"] += 1
            self.stats["bytes"] += len(content)
        if 300 <= status < 400:
            self._raise_redirect(status, response.headers.get("Location"), label)
        if status != 200:
            self._raise_for_status(status, content, response.headers.get("Retry-After"), label)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) != len(raw):
            reason = f"truncated answer from {self._shown}"
            raise _Retryable(TransportError(reason), reason)
        try:
            doc = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            if "depth limit" in str(exc):
                raise ProtocolError(
                    f"the answer from {self._shown} nests deeper than the JSON parser allows ({label})",
                    status=status,
                ) from exc
            kind = response.headers.get("Content-Type") or "no Content-Type"
            raise NotGraphQLError(
                f"the server at {self._shown} did not answer JSON (HTTP 200, {kind}, "
                f"{_server_message(content) or 'an empty body'}); is WANDB_BASE_URL the W&B API? ({label})",
                status=status,
            ) from None
        if not isinstance(doc, dict) or ("data" not in doc and not doc.get("errors")):
            raise NotGraphQLError(
                f"the server at {self._shown} answered JSON that is not a GraphQL answer (no 'data'); "
                f"is WANDB_BASE_URL the W&B API? ({label})",
                status=status,
            )
        if doc.get("errors"):
            raise ProtocolError(f"server error: {_server_message(content)} ({label})", status=200)
        data = doc["data"]
        if not isinstance(data, dict):
            kind = "null" if data is None else type(data).__name__
            raise ProtocolError(
                f"the answer from {self._shown} has data: {kind}, not a JSON object ({label})", status=200
            )
        return data, content

    def _raise_too_slow(self, read: float, label: str, exc: BaseException | None) -> NoReturn:
        reason = f"timed out talking to {self._shown} (no complete answer within {_seconds(read)})"
        raise _Retryable(TransportError(reason), reason) from exc

    def _read_body(self, response: requests.Response, label: str) -> bytes:
        """The body as sent (not decompressed), at most `max_body_bytes` long."""
        limit = self.max_body_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit():
            if int(declared) > limit:
                raise ProtocolError(
                    f"answer from {self._shown} is {int(declared)} bytes, past the limit of {limit} "
                    f"bytes ({label})"
                )
            return response.raw.read(decode_content=False)
        parts: list[bytes] = []
        total = 0
        while part := response.raw.read(_READ_CHUNK, decode_content=False):
            total += len(part)
            if total > limit:
                raise ProtocolError(f"answer from {self._shown} runs past {limit} bytes ({label})")
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _decode_body(self, raw: bytes, encoding: str | None, label: str) -> bytes:
        """`raw` with its content encodings undone, never inflating past `max_body_bytes`."""
        codings = [c.strip().lower() for c in (encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        content = raw
        for coding in reversed(codings):
            attempts: tuple[int, ...]
            if coding in ("gzip", "x-gzip"):
                attempts = (16 + zlib.MAX_WBITS,)
            elif coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
                attempts = (zlib.MAX_WBITS, -zlib.MAX_WBITS)
            else:
                raise ProtocolError(
                    f"answer from {self._shown} has Content-Encoding {coding!r}; only gzip was asked for "
                    f"({label})"
                )
            for i, wbits in enumerate(attempts):
                try:
                    inflated = _inflate(content, wbits, self.max_body_bytes)
                    break
                except (zlib.error, EOFError) as exc:
                    if i + 1 < len(attempts):
                        continue
                    reason = f"truncated answer from {self._shown} ({coding} body: {exc})"
                    raise _Retryable(TransportError(reason), reason) from exc
            if inflated is None:
                raise ProtocolError(
                    f"answer from {self._shown} inflates past {self.max_body_bytes} bytes ({label})"
                )
            content = inflated
        return content

    def _raise_network_error(self, exc: BaseException, label: str) -> NoReturn:
        """Classify a failed exchange: retried, except an unverifiable TLS certificate."""
        shown = self._shown
        causes = list(_causes(exc))

        def has(*types: type[BaseException]) -> bool:
            return any(isinstance(c, types) for c in causes)

        for cause in causes:
            if isinstance(cause, ssl.SSLCertVerificationError):
                why = _one_line(cause.verify_message or str(cause))
                raise EndpointError(
                    f"the TLS certificate of {shown} could not be verified ({why}); check "
                    f"WANDB_BASE_URL or REQUESTS_CA_BUNDLE ({label})"
                ) from exc
        if has(ConnectionRefusedError):
            reason = f"connection refused to {shown}"
        elif has(socket.gaierror, urllib3.exceptions.NameResolutionError):
            reason = f"cannot resolve the host of {shown}"
        elif has(ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            reason = f"connection reset by {shown}"
        elif has(urllib3.exceptions.NewConnectionError):  # before timeouts: it subclasses one
            errors = [c.strerror for c in causes if isinstance(c, OSError) and c.strerror]
            reason = f"cannot connect to {shown}" + (f" ({errors[0].lower()})" if errors else "")
        elif has(
            requests.exceptions.Timeout,
            urllib3.exceptions.ReadTimeoutError,
            urllib3.exceptions.ConnectTimeoutError,
            TimeoutError,
        ):
            reason = f"timed out talking to {shown}"
        elif has(
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.DecodeError,
            http.client.IncompleteRead,
            requests.exceptions.ChunkedEncodingError,
        ):
            reason = f"truncated answer from {shown}"
        else:
            reason = f"connection to {shown} failed ({type(exc).__name__})"
        raise _Retryable(TransportError(reason), reason) from exc

    def _raise_redirect(self, status: int, location: str | None, label: str) -> NoReturn:
        if not location:
            raise RedirectError(
                f"WANDB_BASE_URL {self._shown} answers HTTP {status} (a redirect without a Location) "
                f"to POST /graphql; use the final URL ({label})",
                status=status,
            )
        target = _without_password(urljoin(self.endpoint, location))
        hint = "use the final URL"
        if target.split("?", 1)[0].rstrip("/").endswith("/graphql"):
            hint += f": WANDB_BASE_URL={target.split('?', 1)[0].rstrip('/')[: -len('/graphql')]}"
        raise RedirectError(
            f"WANDB_BASE_URL {self._shown} redirects to {_one_line(target)} (HTTP {status} on POST "
            f"/graphql; redirects are not followed); {hint} ({label})",
            status=status,
        )

    def _raise_for_status(self, status: int, content: bytes, retry_after: str | None, label: str) -> None:
        message = f"HTTP {status} from {self._shown}"
        detail = _server_message(content)
        if detail:
            message += f": {detail}"
        if status in (401, 403):
            raise AuthenticationError(
                f"{message} ({label}); check WANDB_API_KEY / ~/.netrc / the api_key argument",
                status=status,
            )
        if status == 404:
            raise NotFoundError(f"{message} ({label})", status=status)
        if status in _ENDPOINT_STATUSES:
            raise EndpointError(
                f"{message}: {self._shown}/graphql does not take GraphQL POSTs; is WANDB_BASE_URL the "
                f"W&B API? ({label})",
                status=status,
            )
        if status == 429:
            raise _Retryable(
                RateLimitedError(message, status=status), message, _retry_after_seconds(retry_after)
            )
        if 400 <= status < 500:
            raise RequestError(f"{message} ({label})", status=status)
        raise _Retryable(ServerError(message, status=status), message, _retry_after_seconds(retry_after))
