"""The storage host: a second HTTP listener serving blobs on signed, expiring URLs.

It stands in for the object store behind W&B's signed URLs (the Parquet history exports). A URL is
``http://<host>:<port>/blobs/<name>?Expires=<unix seconds>&Signature=<hex>``; the signature is an
HMAC of the name and the expiry under a secret of this listener, so a URL cannot be forged or
extended. An expired or wrongly signed URL answers ``403``, an unknown blob ``404``.

``HEAD`` answers ``Content-Length``, ``ETag`` and ``Accept-Ranges``; ``GET`` answers the whole blob
or, with ``Range: bytes=a-b`` (also ``a-`` and ``-n``), ``206 Partial Content`` with
``Content-Range``; an unsatisfiable range answers ``416``. ``If-None-Match`` with the current ETag
answers ``304``. The host never asks for credentials: every request's headers are logged
(`StorageHost.requests`) so tests can show that no API key ever reached it.

>>> import requests
>>> with StorageHost() as host:
...     url = host.put("a.bin", b"0123456789")
...     r = requests.get(url, headers={"Range": "bytes=2-4"}, timeout=5)
...     r.status_code, r.content, r.headers["Content-Range"], host.counters()["range_gets"]
(206, b'234', 'bytes 2-4/10', 1)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_URL_TTL = 3600.0
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_LOG_LIMIT = 10_000


class StorageHost:
    """Blobs by name, served over HTTP on signed URLs that expire after `url_ttl` seconds."""

    def __init__(self, url_ttl: float = DEFAULT_URL_TTL) -> None:
        self.url_ttl = url_ttl
        self._secret = secrets.token_bytes(32)
        self._blobs: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: deque[dict[str, Any]] = deque(maxlen=_LOG_LIMIT)
        self._counts = {"heads": 0, "gets": 0, "range_gets": 0, "bytes": 0, "denied": 0, "not_modified": 0}

    # -- blobs ---------------------------------------------------------------------------------

    def put(self, name: str, data: bytes) -> str:
        """Store `data` as `name` (replacing it; the ETag follows the content) and sign a URL to it."""
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        with self._lock:
            self._blobs[name] = (data, etag)
        return self.url(name)

    def delete_prefix(self, prefix: str) -> None:
        """Forget every blob whose name starts with `prefix`."""
        with self._lock:
            for name in [n for n in self._blobs if n.startswith(prefix)]:
                del self._blobs[name]

    def url(self, name: str, ttl: float | None = None) -> str:
        """A signed URL to `name`, valid for `ttl` seconds (default: this host's `url_ttl`)."""
        expires = math.ceil(time.time() + (self.url_ttl if ttl is None else ttl))
        query = urllib.parse.urlencode({"Expires": expires, "Signature": self._sign(name, expires)})
        return f"{self.base_url}/blobs/{urllib.parse.quote(name)}?{query}"

    def _sign(self, name: str, expires: int) -> str:
        return hmac.new(self._secret, f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _lookup(self, path: str) -> tuple[int, str, tuple[bytes, str] | None]:
        """(status, reason, blob) for a request path with its query string."""
        parsed = urllib.parse.urlsplit(path)
        if not parsed.path.startswith("/blobs/"):
            return 404, "no such blob", None
        name = urllib.parse.unquote(parsed.path[len("/blobs/") :])
        query = urllib.parse.parse_qs(parsed.query)
        try:
            expires = int(query["Expires"][0])
            signature = query["Signature"][0]
        except (KeyError, ValueError, IndexError):
            return 403, "missing signature", None
        if not hmac.compare_digest(signature, self._sign(name, expires)):
            return 403, "signature does not match", None
        if time.time() > expires:
            return 403, "request has expired", None
        with self._lock:
            blob = self._blobs.get(name)
        if blob is None:
            return 404, "no such blob", None
        return 200, "OK", blob

    # -- counters ------------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def counters(self) -> dict[str, int]:
        """Requests served: ``heads``, ``gets``, ``range_gets``, ``bytes`` sent, ``denied`` (403),
        ``not_modified`` (304)."""
        with self._lock:
            return dict(self._counts)

    def reset_counters(self) -> None:
        """Zero the counters and clear the request log."""
        with self._lock:
            for key in self._counts:
                self._counts[key] = 0
            self.requests.clear()

    # -- server --------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> StorageHost:
        """Listen on `host`:`port` (0: any free port) in a background thread."""
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.storage = self  # type: ignore[attr-defined]  # the handler finds its host here
        self._thread = threading.Thread(target=self._server.serve_forever, name="storage-host", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StorageHost:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running listener."""
        if self._server is None:
            raise RuntimeError("the storage host is not started")
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET address
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _answer(self, status: int, headers: dict[str, str], body: bytes = b"", send_body: bool = True) -> None:
        self.send_response(status)
        length = headers.pop("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _serve(self, send_body: bool) -> None:
        host: StorageHost = self.server.storage  # type: ignore[attr-defined]  # set in start()
        host.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items())})
        status, reason, blob = host._lookup(self.path)
        if blob is None:
            if status == 403:
                host._count("denied")
            body = f"<Error><Code>{status}</Code><Message>{reason}</Message></Error>".encode()
            self._answer(status, {"Content-Type": "application/xml"}, body, send_body)
            return
        data, etag = blob
        common = {"ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if self.headers.get("If-None-Match") == etag:
            host._count("not_modified")
            self._answer(304, {"ETag": etag, "Content-Length": "0"}, b"", False)
            return
        if not send_body:
            host._count("heads")
            self._answer(200, {**common, "Content-Length": str(len(data))}, b"", False)
            return
        host._count("gets")
        wanted = self.headers.get("Range")
        if wanted is None:
            host._count("bytes", len(data))
            self._answer(200, common, data)
            return
        span = _byte_range(wanted, len(data))
        if span is None:
            self._answer(416, {**common, "Content-Range": f"bytes */{len(data)}"}, b"")
            return
        first, last = span
        host._count("range_gets")
        host._count("bytes", last - first + 1)
        headers = {**common, "Content-Range": f"bytes {first}-{last}/{len(data)}"}
        self._answer(206, headers, data[first : last + 1])

    def do_GET(self) -> None:  # noqa: N802
        self._serve(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(send_body=False)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte span a ``Range`` header asks of a blob of `size` bytes, or None.

    >>> _byte_range("bytes=0-0", 10), _byte_range("bytes=7-", 10), _byte_range("bytes=-3", 10)
    ((0, 0), (7, 9), (7, 9))
    >>> _byte_range("bytes=10-12", 10) is None, _byte_range("items=0-1", 10) is None
    (True, True)
    """
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    if match.group(1) == "":
        length = int(match.group(2))
        return (max(0, size - length), size - 1) if length and size else None
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else size - 1
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)
