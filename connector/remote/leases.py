"""Request slots handed to other processes as **leases**: a holder that dies (a killed Ray worker)
never gives its slot back, so a slot is a lease that expires and returns to the pool.

`Leases` keeps the leases of one limiter; `ActorGate` is the `connector.remote.transport.AttemptGate`
of a worker whose slots come from a Ray actor holding such a limiter (the exporter's
`connector.export.ray_engine.SharedLimiter`, the Ray reader's `connector.engines.ray.RequestLimiter`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Seconds after which a slot not given back (its holder died mid-request) returns to the pool;
#: above the transport's longest attempt (connect 10 s + read 60 s).
LEASE_S = 180.0


class Leases:
    """The slots handed out by a limiter, as leases that expire (thread-safe).

    A holder killed while it holds a slot (a Ray worker that dies mid-request) never gives it back;
    `expire` counts every lease older than `lease_s` as given back, so lost holders never shrink
    a limit for good. A lease given back after it expired is ignored (its slot was already reclaimed).

    >>> leases = Leases(lease_s=10.0)
    >>> a = leases.take(now=0.0); b = leases.take(now=5.0)
    >>> leases.give_back(a), leases.give_back(a)
    (True, False)
    >>> leases.expire(now=15.0), len(leases), leases.give_back(b)
    (1, 0, False)
    """

    def __init__(self, lease_s: float = LEASE_S) -> None:
        self.lease_s = lease_s
        self.taken = self.reclaimed = 0
        self._until: dict[int, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._until)

    def take(self, now: float | None = None) -> int:
        """A new lease (its id), expiring `lease_s` seconds from `now` (default: the monotonic clock)."""
        start = time.monotonic() if now is None else now
        with self._lock:
            self.taken += 1
            self._until[self.taken] = start + self.lease_s
            return self.taken

    def give_back(self, lease: int) -> bool:
        """Whether `lease` was still held (then its slot is free again)."""
        with self._lock:
            return self._until.pop(lease, None) is not None

    def expire(self, now: float | None = None) -> int:
        """Drop the leases past their time; return how many (their slots are free again)."""
        at = time.monotonic() if now is None else now
        with self._lock:
            lost = [k for k, until in self._until.items() if until <= at]
            for k in lost:
                del self._until[k]
            self.reclaimed += len(lost)
            return len(lost)


class ActorGate:
    """A `connector.remote.transport.AttemptGate` whose slots are leases from a Ray actor with
    ``acquire() -> lease``, ``release(lease)``, ``on_success()`` and ``on_throttle(retry_after)``
    (`connector.export.ray_engine.SharedLimiter`, `connector.engines.ray.RequestLimiter`)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    @contextmanager
    def slot(self) -> Iterator[None]:
        import ray

        lease = ray.get(self.actor.acquire.remote())
        try:
            yield
        finally:
            self.actor.release.remote(lease)

    def on_throttle(self, retry_after: float | None) -> None:
        self.actor.on_throttle.remote(retry_after)

    def on_success(self) -> None:
        self.actor.on_success.remote()


__all__ = ["LEASE_S", "ActorGate", "Leases"]
