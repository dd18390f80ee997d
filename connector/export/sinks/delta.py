"""Delta Lake destination (``--to delta://PATH``), through `deltalake` (delta-rs).

``pip install 'wandb-history-connector[delta]'``

A destination is a folder (local, or ``s3://bucket/prefix`` through ``delta+s3://bucket/prefix``)
holding one Delta table per exported table::

    PATH/history/_delta_log/...          wide rows (or history_long/ with --layout long)
    PATH/system_metrics/...              --include-system-metrics
    PATH/runs/...                        one row per run (RUNS_SCHEMA), merged at the end
    PATH/_wandb_export_state/...         a snapshot of the checkpoints (see below)
    PATH/.wandb-export.lock              local folders: one export at a time
    PATH/_wandb_export_lock/_delta_log/  object stores: the same, as a lease (see below)

**Exactly once.** Each chunk is **one Delta commit**: a ``MERGE`` on ``(entity, project, run_id,
_step)`` (``_timestamp`` for system metrics, plus ``key`` in the long layout; the chunk's columns
replace the target's, the other columns are kept — the DuckDB sink's ``ON CONFLICT DO UPDATE``), or a
plain append when no row of the chunk can exist yet. The chunk's new watermark is in **the same
commit**, in its ``commitInfo`` (``wandb.export``: the states and new column names). Delta has no
multi-table transaction, so ``_wandb_export_state`` is only a snapshot, rewritten every
`SNAPSHOT_EVERY` commits and at the end, recording the table versions it covers: opening the
destination reads the snapshot, then replays the ``wandb.export`` metadata of every commit made
after those versions. A crash (``kill -9``) anywhere leaves either the rows *and* their watermark,
or neither.

**Schema evolution**: a new key adds a column (``merge_schema``); a column never changes type
(values of another type go to ``_extra``, `connector.export.tables.conform`). Columns that differ
only in letter case from an existing one, or whose names Spark's Delta reader refuses (`` ,;{}()=``
and control characters), get the mapped name of `connector.core.columns.column_for_key`, recorded
in the snapshot's ``column_map``.

Reading: ``deltalake.DeltaTable("PATH/history").to_pyarrow_table()``, ``polars.read_delta``,
Spark, DuckDB's ``delta`` extension. Each chunk adds files: run ``DeltaTable.optimize.compact()``
from time to time.

**Full refresh** (`connector.export.sinks.lake`): the runs go to ``PATH/<table>__refresh``; each
live table is then replaced for exactly those runs by **one** ``write_deltalake(mode="overwrite",
predicate=<those runs>, schema_mode="merge")`` (the staged rows streamed in; a plain ``DELETE``
with that predicate when none were staged), carrying the new states; other runs' rows are never
rewritten away. Staging tables are dropped with their files afterwards.

**One export at a time.** A local folder is locked with ``.wandb-export.lock``. In an object store
(``delta+s3://``) an export holds the **lease** ``PATH/_wandb_export_lock``
(`connector.export.sinks.lease`): a data-free Delta table whose record is changed only by commits
conditioned on the version read, which delta-rs stores with an atomic put-if-absent. The lease lasts
60 s and is renewed every 15 s; it is released at the end (also after an error or Ctrl-C). Another
export meanwhile fails at once with `DestinationBusyError` (exit code 4, as for a locked folder). A
lease left by a killed export on the same machine (its pid is gone) is taken over at once, so a
resume after ``kill -9`` goes ahead; one held on another machine, once it expired. Read-only opens
(``--dry-run``) take no lease. Each commit checks first that the lease is still held and fresh.

S3 settings come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``,
``AWS_ALLOW_HTTP`` for a local server...), as delta-rs reads them, or from ``storage_options``
(delta-rs keys) when the sink is built from Python. ``AWS_S3_ALLOW_UNSAFE_RENAME`` is refused for
writing (`ConfigurationError`, exit code 2): it is delta-rs's documented opt-out of safe concurrent
writes (a commit by a plain, overwriting rename), and then two commits of one version (of the data
or of the lease) may both "succeed" and one is lost. It is not needed on S3 or on servers with
conditional writes (MinIO, moto...); for a store without them use delta-rs's DynamoDB locking
(``AWS_S3_LOCKING_PROVIDER=dynamodb``).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ...errors import ConfigurationError
from ..tables import RUN_COLUMNS, RUNS_TABLE, STATE_TABLE
from .lake import (
    DATA_TABLES,
    LOCK_FILE,
    META_KEY,
    REFRESH_SUFFIX,
    SNAPSHOT_EVERY,
    STATE_SCHEMA,
    UNSAFE_CHARS,
    CommitLog,
    LakeSink,
    check_stop,
    merge_keys,
    plain,
    safe_names,
    target_table,
)
from .lease import LEASE_TABLE, Lease

#: The delta-rs setting that lets it commit to S3 without an atomic put-if-absent.
UNSAFE_RENAME = "AWS_S3_ALLOW_UNSAFE_RENAME"


def need_deltalake() -> Any:
    """The `deltalake` module, or an ImportError naming the extra."""
    try:
        import deltalake
    except ImportError as exc:
        raise ImportError(
            "Delta destinations need deltalake: pip install 'wandb-history-connector[delta]'"
        ) from exc
    return deltalake


def is_remote(uri: str) -> bool:
    """True for ``scheme://`` URIs (object stores), False for local paths.

    >>> is_remote("s3://b/p"), is_remote("/tmp/x")
    (True, False)
    """
    return "://" in uri


def table_uri(root: str, table: str) -> str:
    """The URI of one table under the destination root.

    >>> table_uri("s3://b/wh/", "history"), table_uri("/tmp/wh", "runs")
    ('s3://b/wh/history', '/tmp/wh/runs')
    """
    return root.rstrip("/") + "/" + table


def runs_predicate(runs: Sequence[tuple[str, str, str]]) -> str:
    """A SQL predicate matching the rows of exactly `runs` ((entity, project, run_id) triples).

    >>> runs_predicate([("e", "p", "a"), ("e", "p", "b"), ("e", "q", "c")])
    "(entity = 'e' AND project = 'p' AND run_id IN ('a', 'b')) OR (entity = 'e' AND project = 'q' AND run_id IN ('c'))"
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for entity, project, run_id in runs:
        groups.setdefault((entity, project), []).append(run_id)
    return " OR ".join(
        f"(entity = {sql_literal(e)} AND project = {sql_literal(p)} AND run_id IN ({', '.join(map(sql_literal, ids))}))"
        for (e, p), ids in sorted(groups.items())
    )


def sql_literal(value: Any) -> str:
    """A SQL literal for a predicate.

    >>> sql_literal("it's"), sql_literal(3), sql_literal(1.5)
    ("'it''s'", '3', '1.5')
    """
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float):
        return repr(value)
    return str(int(value))


class DeltaSink(LakeSink):
    """Export into a folder of Delta tables (see the module docstring); the shared logic is
    `connector.export.sinks.lake.LakeSink`."""

    ENGINE = "Delta"

    def __init__(self, target: str, *, storage_options: dict[str, str] | None = None, **options: Any) -> None:
        """`options`: those of `LakeSink` (``layout``, ``full_refresh``, ``checkpoint``, ``read_only``)."""
        self.storage_options = storage_options
        self.lease: Lease | None = None
        try:
            super().__init__(target, **options)
        except BaseException:
            self._release()
            raise

    def _open(self, target: str) -> None:
        self.deltalake = need_deltalake()
        self.root = target.rstrip("/") or target
        if not is_remote(self.root):
            self._open_folder(Path(self.root), "a Delta destination is a folder of tables")
        elif not self.read_only:
            self._refuse_unsafe_rename()
            lease = Lease(table_uri(self.root, LEASE_TABLE), storage_options=self.storage_options, display=self.display)
            self.lease = lease.acquire()
        self._load()

    def _refuse_unsafe_rename(self) -> None:
        """Raise `ConfigurationError` when delta-rs would commit to S3 unsafely (the module docstring)."""
        given = [v for k, v in (self.storage_options or {}).items() if k.upper() == UNSAFE_RENAME]
        value = given[0] if given else os.environ.get(UNSAFE_RENAME, "")
        if value.strip().lower() in ("1", "true", "yes", "on"):
            raise ConfigurationError(
                f"{self.display}: {UNSAFE_RENAME}={value} opts delta-rs out of safe concurrent commits "
                "(no atomic put-if-absent), so two commits of one version can both succeed and one is lost (rows, "
                "watermarks, the destination's lease). S3 and servers with conditional writes (MinIO, "
                "moto) do not need it: unset it. For a store without them, use AWS_S3_LOCKING_PROVIDER=dynamodb"
            )

    def _release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    # -- tables ----------------------------------------------------------------------------------
    def _table(self, name: str) -> Any:
        """The `DeltaTable` `name`, or None when it does not exist yet."""
        uri = table_uri(self.root, name)
        if not is_remote(uri) and not (Path(uri) / "_delta_log").exists():
            return None
        try:
            return self.deltalake.DeltaTable(uri, storage_options=self.storage_options)
        except self.deltalake.exceptions.TableNotFoundError:
            return None

    def _types(self, name: str) -> dict[str, pa.DataType]:
        table = self._table(name)
        if table is None:
            return {}
        schema = pa.schema(table.schema().to_arrow())
        return {f.name: f.type for f in schema}

    def _version(self, name: str) -> int | None:
        table = self._table(name)
        return table.version() if table is not None else None

    def _commit_properties(self, doc: str) -> Any:
        """The properties of a commit carrying `doc`; every commit asks here, so the lease is
        checked here (a lost or stale lease stops the export before it commits)."""
        if self.lease is not None:
            self.lease.check()
        return self.deltalake.CommitProperties(custom_metadata={META_KEY: doc})

    # -- states ----------------------------------------------------------------------------------
    def _load(self) -> None:
        """Read the snapshot, then replay the commits made after it."""
        snapshot = self._table(STATE_TABLE)  # opened outside the guard: delta-rs's errors stay as they are
        try:
            self._rebuild(snapshot)
        except (ValueError, KeyError, TypeError) as exc:
            raise self._unreadable(exc) from None

    def _state_rows(self, snapshot: Any) -> list[dict[str, Any]]:
        return snapshot.to_pyarrow_table().to_pylist()

    def _snapshot_doc(self, snapshot: Any) -> str | None:
        history = snapshot.history(limit=1)
        return history[0].get(META_KEY) if history else None

    def _commits_since(self, table: Any, since: int) -> tuple[list[str], int]:
        current = table.version()
        docs: list[str] = []
        if current > since:
            commits = sorted(table.history(limit=current - since), key=lambda c: c.get("version", 0))
            docs = [c[META_KEY] for c in commits if int(c.get("version", -1)) > since and c.get(META_KEY)]
        return docs, current

    def _write_snapshot(self, rows: list[dict[str, Any]], doc: str, name: str = STATE_TABLE) -> None:
        self.deltalake.write_deltalake(
            table_uri(self.root, name), pa.Table.from_pylist(rows, schema=STATE_SCHEMA),
            mode="overwrite", schema_mode="overwrite", storage_options=self.storage_options,
            commit_properties=self._commit_properties(doc),
        )  # fmt: skip

    # -- runs ------------------------------------------------------------------------------------
    def _run_filter(self, key: tuple[str, str, str]) -> str:
        return " AND ".join(f"{c} = {sql_literal(v)}" for c, v in zip(RUN_COLUMNS, key, strict=True))

    def _delete(self, table: Any, where: str, doc: str) -> None:
        table.delete(where, commit_properties=self._commit_properties(doc))

    def _write_runs(self, rows: pa.Table, name: str = RUNS_TABLE) -> None:
        self._write(name, plain(rows), list(RUN_COLUMNS), False, CommitLog.document([]))

    # -- full refresh ----------------------------------------------------------------------------
    def _swap_table(self, name: str, runs: Sequence[tuple[str, str, str]], doc: str) -> bool:
        live = self._table(name)
        staged = self._table(name + REFRESH_SUFFIX)
        props = self._commit_properties(doc)
        predicate = runs_predicate(runs)
        if staged is not None:
            dataset = staged.to_pyarrow_dataset()
            if dataset.count_rows() == 0:
                staged = None
        if staged is None:
            if live is None:
                return False
            live.delete(predicate, commit_properties=props)  # no commit when no row matches
            return True
        reader = dataset.scanner(batch_size=65_536).to_reader()
        self.deltalake.write_deltalake(
            table_uri(self.root, name), reader, schema_mode="merge", storage_options=self.storage_options,
            commit_properties=props,
            **({"mode": "append"} if live is None else {"mode": "overwrite", "predicate": predicate}),
        )  # fmt: skip
        return True

    def _drop(self, name: str) -> None:
        uri = table_uri(self.root, name)
        if self.lease is not None:
            self.lease.check()
        if not is_remote(uri):
            shutil.rmtree(uri, ignore_errors=True)
            return
        import pyarrow.fs as pafs
        from deltalake.fs import DeltaStorageHandler

        fs = pafs.PyFileSystem(DeltaStorageHandler(self.root, self.storage_options))
        if fs.get_file_info(name).type != pafs.FileType.NotFound or fs.get_file_info(
            pafs.FileSelector(name, allow_not_found=True)
        ):
            fs.delete_dir(name)

    # -- chunks ----------------------------------------------------------------------------------
    def _commit_chunk(self, name: str, data: pa.Table, keys: list[str], append: bool, doc: str, stop: threading.Event | None) -> bool:
        check_stop(stop)
        if not data.num_rows:
            return False
        self._write(name, data, keys, append, doc)
        return True

    def _write(self, name: str, data: pa.Table, keys: list[str], append: bool, doc: str) -> None:
        uri = table_uri(self.root, name)
        table = self._table(name)
        props = self._commit_properties(doc)
        if table is None or append:
            self.deltalake.write_deltalake(
                uri, data, mode="append", schema_mode="merge", storage_options=self.storage_options,
                commit_properties=props,
            )  # fmt: skip
            return
        on = [f"t.`{k}` = s.`{k}`" for k in keys]
        if len(keys) > len(RUN_COLUMNS):  # one run's chunk: literals let the merge skip files
            import pyarrow.compute as pc

            run = data.slice(0, 1).select(list(RUN_COLUMNS)).to_pylist()[0]
            on += [f"t.`{c}` = {sql_literal(run[c])}" for c in RUN_COLUMNS]
            order = keys[len(RUN_COLUMNS)]
            column = data.column(order)
            on.append(f"t.`{order}` >= {sql_literal(pc.min(column).as_py())}")
            on.append(f"t.`{order}` <= {sql_literal(pc.max(column).as_py())}")
        (
            table.merge(
                data, " AND ".join(on), source_alias="s", target_alias="t", merge_schema=True,
                commit_properties=props,
            )  # fmt: skip
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )


__all__ = [
    "DeltaSink", "CommitLog", "need_deltalake", "runs_predicate", "safe_names", "sql_literal", "table_uri",
    # shared with the Iceberg sink, defined in connector.export.sinks.lake (kept importable from here)
    "DATA_TABLES", "LOCK_FILE", "META_KEY", "SNAPSHOT_EVERY", "STATE_SCHEMA", "UNSAFE_CHARS",
    "merge_keys", "plain", "target_table",
]  # fmt: skip
