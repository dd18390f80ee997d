"""GraphQL over HTTP: one `requests` session, explicit timeouts, retries with tenacity, typed errors.

* ``POST {base_url}/graphql`` with ``Authorization: Basic base64("api:" + key)``.
* Retried: 429 (honouring ``Retry-After`` in seconds or as an HTTP date), 5xx except 501, connection
  errors, timeouts and truncated bodies; exponential backoff with jitter, at most `max_attempts`
  attempts and `deadline` seconds overall. Not retried: 400, 401, 403, 404 and the other 4xx.
* A 200 answer with GraphQL ``errors`` raises `ProtocolError` carrying the server's messages.
* Each body is read in one call (``raw.read()``): reading in small chunks convoys on the GIL when
  several pages are in flight.
* The API key never appears in reprs, logs or error messages.

>>> t = Transport("http://127.0.0.1:9", "k" * 40)
>>> "k" * 40 in repr(t)
False
"""

from __future__ import annotations

import base64
import copy
import email.utils
import logging
import random
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import requests
import tenacity
from requests.adapters import HTTPAdapter

from . import __version__
from .errors import (
    AuthenticationError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    ServerError,
    TransportError,
)

log = logging.getLogger("connector.transport")

_NO_RETRY = {400, 401, 403, 404, 409, 410, 413, 422, 501}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry. The defaults follow the official client (about 20 tries within minutes)."""

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
    def __init__(self, error: TransportError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


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


def _server_message(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
        messages = [e.get("message", "") for e in doc.get("errors", [])]
        if messages:
            return "; ".join(m for m in messages if m)
        if isinstance(doc.get("error"), str):
            return doc["error"]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        pass
    return body[:200].decode("utf-8", "replace").strip()


class Transport:
    """A GraphQL client for one W&B server and API key. Thread-safe; pooled keep-alive connections."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float | tuple[float, float] = (10.0, 60.0),
        retry: RetryPolicy | None = None,
        pool_size: int = 16,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.endpoint = f"{self.base_url}/graphql"
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._auth = (
            "Basic " + base64.b64encode(f"api:{api_key}".encode()).decode() if api_key else None
        )
        self._pool_size = pool_size
        self.gate: AttemptGate | None = None
        self._local = threading.local()
        self.stats = {"requests": 0, "retries": 0, "bytes": 0}
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r}, authenticated={self._auth is not None})"

    def with_gate(self, gate: AttemptGate) -> Transport:
        """A copy of this transport (same server, key, timeouts, retries) whose attempts pass `gate`."""
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
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self._pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(
                {
                    "User-Agent": f"wandb-history-connector/{__version__}",
                    "Content-Type": "application/json",
                    "Accept-Encoding": "gzip",
                }
            )
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
        policy = self.retry
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=tenacity.stop_after_attempt(policy.max_attempts)
            | tenacity.stop_after_delay(policy.deadline),
            wait=self._wait,
            reraise=True,
            before_sleep=self._before_sleep,
        )
        try:
            return retrying(self._attempt, body, operation_name)
        except _Retryable as exhausted:
            raise exhausted.error from None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.max_retry_after)
        base = self.retry.initial_wait * 2 ** (state.attempt_number - 1)
        return min(self.retry.max_wait, base) * (1 + 0.25 * random.random())

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        with self._stats_lock:
            self.stats["retries"] += 1
        exc = state.outcome.exception() if state.outcome else None
        log.info("retrying %s after: %s", self.endpoint, exc)

    def _attempt(self, body: bytes, operation_name: str) -> tuple[dict[str, Any], bytes]:
        gate = self.gate
        with gate.slot() if gate is not None else nullcontext():
            try:
                result = self._attempt_once(body, operation_name)
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

    def _attempt_once(self, body: bytes, operation_name: str) -> tuple[dict[str, Any], bytes]:
        label = operation_name or "GraphQL request"
        try:
            response = self._session().post(
                self.endpoint, data=body, timeout=self.timeout, stream=True
            )
            try:
                content = response.raw.read(decode_content=True)
            finally:
                response.close()
        except requests.exceptions.Timeout as exc:
            raise _Retryable(TransportError(f"{label}: timed out talking to {self.base_url}")) from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise _Retryable(
                TransportError(f"{label}: connection to {self.base_url} failed ({type(exc).__name__})")
            ) from exc
        except Exception as exc:  # urllib3 ProtocolError / IncompleteRead on truncated bodies
            raise _Retryable(
                TransportError(f"{label}: truncated answer from {self.base_url} ({type(exc).__name__})")
            ) from exc
        status = response.status_code
        with self._stats_lock:
            self.stats["requests"] += 1
            self.stats["bytes"] += len(content)
        if status != 200:
            self._raise_for_status(status, content, response.headers.get("Retry-After"), label)
        declared = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding")
        if declared.isdigit() and int(declared) != len(content) and not encoded:
            raise _Retryable(TransportError(f"{label}: truncated answer from {self.base_url}"))
        try:
            doc = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise _Retryable(
                ProtocolError(f"{label}: answer from {self.base_url} is not JSON", status=status)
            ) from exc
        if not isinstance(doc, dict):
            raise ProtocolError(f"{label}: answer from {self.base_url} is not a JSON object")
        if doc.get("errors"):
            raise ProtocolError(f"{label}: server error: {_server_message(content)}", status=200)
        if "data" not in doc:
            raise ProtocolError(f"{label}: answer from {self.base_url} has no 'data'")
        return doc["data"], content

    def _raise_for_status(self, status: int, content: bytes, retry_after: str | None, label: str) -> None:
        message = f"{label}: HTTP {status} from {self.base_url}"
        detail = _server_message(content)
        if detail:
            message += f": {detail}"
        if status in (401, 403):
            raise AuthenticationError(
                message + " (check WANDB_API_KEY / the api_key argument)", status=status
            )
        if status == 404:
            raise NotFoundError(message, status=status)
        if status in _NO_RETRY:
            raise TransportError(message, status=status)
        if status == 429:
            raise _Retryable(RateLimitedError(message, status=status), _retry_after_seconds(retry_after))
        raise _Retryable(ServerError(message, status=status), _retry_after_seconds(retry_after))
