"""One AIMD limiter shared by every worker of an export: how many API requests may be in flight.

* The limit starts at ``--concurrency`` and **never exceeds it**.
* On a 429 (or a 503) the limit is halved (multiplicative decrease, floor 1) and every worker waits
  out a shared cool-down (the server's ``Retry-After`` when it sent one, else `cooldown`), at most
  once per `cooldown` window, so a burst of 429s from the requests already in flight counts once.
* After ``limit`` consecutive successes the limit grows by one (additive increase) up to the maximum.

The limiter is a `connector.remote.transport.AttemptGate`: ``transport.with_gate(limiter)`` makes every HTTP
attempt (retries included) take a slot; tenacity's backoff sleeps happen outside the slot.

>>> lim = AimdLimiter(4)
>>> with lim.slot():
...     lim.in_flight
1
>>> lim.on_throttle(0); lim.limit
2
>>> for _ in range(2): lim.on_success()
>>> lim.limit
3

When the slots are handed out to other processes (Ray workers, through one actor), a holder can die
without giving its slot back: `Leases` makes such a slot a lease that expires after `LEASE_S`, and
`ActorGate` is the gate of a worker whose slots come from such an actor (both in
`connector.remote.leases`, where the Ray reader finds them too).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..remote.leases import LEASE_S, ActorGate, Leases


class AimdLimiter:
    """Additive-increase / multiplicative-decrease concurrency limit (thread-safe)."""

    def __init__(self, maximum: int, *, cooldown: float = 0.5) -> None:
        if maximum < 1:
            raise ValueError(f"concurrency must be >= 1, got {maximum}")
        self.maximum = maximum
        self.limit = maximum
        self.cooldown = cooldown
        self.in_flight = 0
        self.peak_in_flight = 0
        self.min_limit = maximum
        self.throttles = 0
        self._successes = 0
        self._resume_at = 0.0
        self._last_cut = -1e9
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while True:
                wait = self._resume_at - time.monotonic()
                if wait <= 0 and self.in_flight < self.limit:
                    break
                self._cond.wait(timeout=wait if wait > 0 else 0.5)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def release(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def on_success(self) -> None:
        with self._cond:
            self._successes += 1
            if self._successes >= self.limit and self.limit < self.maximum:
                self.limit += 1
                self._successes = 0
                self._cond.notify_all()

    def on_throttle(self, retry_after: float | None = None) -> None:
        with self._cond:
            self.throttles += 1
            now = time.monotonic()
            self._successes = 0
            pause = self.cooldown if retry_after is None else min(retry_after, 60.0)
            self._resume_at = max(self._resume_at, now + pause)
            if now - self._last_cut >= self.cooldown:
                self.limit = max(1, self.limit // 2)
                self.min_limit = min(self.min_limit, self.limit)
                self._last_cut = now

    def stats(self) -> dict[str, int]:
        return {
            "max_concurrency": self.maximum,
            "min_concurrency": self.min_limit,
            "peak_in_flight": self.peak_in_flight,
            "throttles": self.throttles,
        }


__all__ = ["LEASE_S", "ActorGate", "AimdLimiter", "Leases"]
