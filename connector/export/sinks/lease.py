"""The exclusive lease of a Delta destination in an object store (``delta+s3://...``): one export
at a time, like the lock file of a local folder, and safe after ``kill -9``.

An object store has no ``flock``, but delta-rs commits a Delta log entry with an atomic
**put-if-absent** (S3 conditional writes, ``If-None-Match: *``): of two commits of the same version
exactly one is stored. The lease is the tiny, data-free Delta table ``PREFIX/_wandb_export_lock``
whose table property ``wandb.export.lease`` holds the holder's record (a JSON object: ``owner``, a
uuid; ``host``; ``node``, the kernel boot id and pid namespace; ``pid``; ``acquired_at`` and
``expires_at``, Unix seconds). Every change of the record is **one metadata commit on the
version that was read**, with no retries: Delta fails a transaction when a concurrent commit changed
the metadata, so of two exports that read version *v*, one commits *v + 1* and the other fails
with ``CommitFailedError``.

- **Acquire**: read the record; when it is free, expired, or held by a dead process of this machine
  (same ``node``, no such ``pid``: the holder was killed, so a resume after ``kill -9`` goes ahead at
  once), commit our record; else raise `DestinationBusyError`. A lease held on another machine is
  taken over only after ``expires_at``.
- **Renew**: a heartbeat thread recommits the record every `HEARTBEAT` seconds, ``expires_at`` =
  now + `TTL`. A renewal that fails because another export committed meanwhile marks the lease
  **lost**; `Lease.check` (called before each commit of the sink) then raises, as it does when the
  last renewal is older than ``TTL - SAFETY`` seconds (a stalled process never writes on a lease that
  may have been taken over; shorter TTLs keep a quarter of it).
- **Release** at the end of the export (also after an error or Ctrl-C): commit a free record.

The lease table stays in the destination (only log files; they are checkpointed and expire after an
hour). Clocks of machines sharing a destination must agree within a few seconds.

>>> import tempfile
>>> uri = tempfile.mkdtemp() + "/_wandb_export_lock"
>>> first = Lease(uri).acquire()
>>> Lease(uri).acquire()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
connector.errors.DestinationBusyError: another export is writing into ...
>>> first.release(); Lease(uri).acquire().release()
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import DestinationBusyError

#: The lease's table under the destination root.
LEASE_TABLE = "_wandb_export_lock"
#: The table property holding the holder's record.
PROPERTY = "wandb.export.lease"
#: Seconds a lease lasts without renewal.
TTL = 60.0
#: Seconds between two renewals.
HEARTBEAT = 15.0
#: No commit once the lease is within this many seconds of its expiry.
SAFETY = 10.0
_TABLE_CONFIG = {"delta.checkpointInterval": "20", "delta.logRetentionDuration": "interval 1 hours"}


@dataclass(frozen=True)
class Holder:
    """The record of a lease: who holds it (``owner`` empty: nobody) and until when."""

    owner: str = ""
    host: str = ""
    node: str = ""
    pid: int = 0
    acquired_at: float = 0.0
    expires_at: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> Holder:
        """The record in a property value (free when missing or unreadable).

        >>> Holder.parse('{"owner": "u", "pid": 7, "other": 1}').pid, Holder.parse(None).owner
        (7, '')
        """
        try:
            obj = json.loads(text or "{}")
            return cls(**{k: obj[k] for k in cls.__dataclass_fields__ if k in obj})
        except (ValueError, TypeError):
            return cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def this_node() -> str:
    """What identifies this machine and pid namespace: two processes with the same node see each
    other's pids (Linux: the boot id and the pid namespace; elsewhere: the host name)."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(Path("/proc/self/ns/pid").readlink()))
    except OSError:
        pass
    return "/".join(parts)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this machine is running (a zombie is not).

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:1] != ["Z"]
    except OSError:
        return True


class Lease:
    """The lease at `uri` (the lease table's URI); see the module docstring. `display` names the
    destination in messages."""

    def __init__(
        self, uri: str, *, storage_options: dict[str, str] | None = None, display: str | None = None,
        ttl: float = TTL, heartbeat: float = HEARTBEAT,
    ) -> None:  # fmt: skip
        import deltalake

        self.deltalake = deltalake
        self.uri = uri
        self.storage_options = storage_options
        self.display = display or uri.rpartition("/")[0]
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.owner = uuid.uuid4().hex
        self.version: int | None = None  # the version holding our record
        self.acquired_at = 0.0
        self.expires_at = 0.0
        self.lost = False
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the record ------------------------------------------------------------------------------
    def read(self) -> tuple[int | None, Holder]:
        """The lease table's version (None: no table yet) and its record."""
        try:
            table = self.deltalake.DeltaTable(self.uri, storage_options=self.storage_options)
        except self.deltalake.exceptions.TableNotFoundError:
            return None, Holder()
        return table.version(), Holder.parse(table.metadata().configuration.get(PROPERTY))

    def _commit(self, version: int | None, holder: Holder) -> bool:
        """Commit `holder` as the version after `version` (None: create the table); False when
        another commit took that version first."""
        dl = self.deltalake
        props = dl.CommitProperties(max_commit_retries=0)
        try:
            if version is None:
                import pyarrow as pa

                dl.DeltaTable.create(
                    self.uri, pa.schema([pa.field("unused", pa.int32())]), mode="error",
                    configuration={**_TABLE_CONFIG, PROPERTY: holder.dump()}, raise_if_key_not_exists=False,
                    storage_options=self.storage_options, commit_properties=props,
                )  # fmt: skip
            else:
                table = dl.DeltaTable(self.uri, version=version, storage_options=self.storage_options)
                table.alter.set_table_properties({PROPERTY: holder.dump()}, raise_if_not_exists=False, commit_properties=props)
        except Exception:
            now, current = self.read()
            if now is not None and now != version and current.owner == holder.owner:
                return True  # our commit went through; only its answer was lost
            if now is not None and now != version:
                return False
            raise
        return True

    def _record(self) -> Holder:
        now = time.time()
        return Holder(self.owner, socket.gethostname(), this_node(), os.getpid(), self.acquired_at or now, now + self.ttl)

    def _free(self, holder: Holder) -> bool:
        if not holder.owner or holder.expires_at <= time.time():
            return True
        return holder.node == this_node() and holder.pid != os.getpid() and not pid_alive(holder.pid)

    # -- acquire, renew, release -----------------------------------------------------------------
    def acquire(self) -> Lease:
        """Take the lease (and start the heartbeat), or raise `DestinationBusyError`."""
        for _ in range(3):
            version, holder = self.read()
            if not self._free(holder):
                raise self._busy(holder)
            record = self._record()
            if self._commit(version, record):
                self.version = (version if version is not None else -1) + 1
                self.acquired_at, self.expires_at = record.acquired_at, record.expires_at
                self._thread = threading.Thread(target=self._beat, name="delta-lease", daemon=True)
                self._thread.start()
                return self
        raise self._busy(self.read()[1])

    def _busy(self, holder: Holder) -> DestinationBusyError:
        until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.expires_at))
        return DestinationBusyError(
            f"another export is writing into {self.display} (pid {holder.pid} on {holder.host} holds its "
            f"lease {LEASE_TABLE}, renewed every {self.heartbeat:g} s, until {until}); wait for it to finish"
        )

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - a store hiccup: the next beat retries; check() watches the expiry
                pass
            if self.lost:
                return

    def renew(self) -> None:
        """Push ``expires_at`` to now + TTL (one commit); a lease taken over meanwhile is lost."""
        with self._mutex:
            if self.lost or self.version is None:
                return
            record = self._record()
            if self._commit(self.version, record):
                self.version += 1
                self.expires_at = record.expires_at
            else:
                self.lost = True

    def check(self) -> None:
        """Raise `DestinationBusyError` unless this export still holds the lease safely."""
        if self.lost or time.time() > self.expires_at - min(SAFETY, self.ttl / 4):
            raise DestinationBusyError(
                f"{self.display}: this export lost its lease {LEASE_TABLE} (not renewed for {self.ttl:g} s, "
                "or taken over by another export); it stopped before its next commit"
            )

    def release(self) -> None:
        """Stop the heartbeat and free the lease (best effort: it expires anyway)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._mutex:
            if self.version is None or self.lost:
                return
            try:
                self._commit(self.version, Holder())
            except Exception:  # noqa: BLE001 - never mask the export's own error
                pass
            self.version = None


__all__ = ["HEARTBEAT", "LEASE_TABLE", "PROPERTY", "SAFETY", "TTL", "Holder", "Lease", "pid_alive", "this_node"]
