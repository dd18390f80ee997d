"""W&B run history as a PySpark 4 Python data source, ``wandb_history``.

``pip install 'wandb-history-connector[spark]'`` (PySpark >= 4.0)

>>> import connector.spark  # doctest: +SKIP
>>> connector.spark.register(spark)  # doctest: +SKIP
>>> df = (spark.read.format("wandb_history").option("project", "acme/vision")
...       .option("keys", "loss,acc").option("max_step", "10000").load())  # doctest: +SKIP

Options (all strings, as Spark passes them):

==================  ===============================================================================
``project``         ``entity/project`` (its runs are listed once, when the query is planned)
``runs``            instead: run paths, comma-separated (``e/p/id1,e/p/id2``)
``filters``         MongoDB-style JSON run filters for ``project`` (``{"state": "finished"}``)
``keys``            comma-separated keys (or a JSON list); they select **columns** (a nested parent
                    selects its leaves) and never change which rows come back. Default: every key
``min_step``        first step (inclusive), default 0
``max_step``        end step (exclusive), default: each run's last step + 1
``base_url``        the W&B API (default ``WANDB_BASE_URL``, else ``https://api.wandb.ai``)
``partition_steps`` cut each run's range on multiples of this many steps (default: by rows)
``parallelism``     about this many partitions over all runs (default: ~50,000 rows each)
``page_size``       rows per API request (default 1000)
==================  ===============================================================================

**The API key is never an option** (options end up in query plans and logs): the driver and the
Python workers read ``WANDB_API_KEY`` (or ``~/.netrc``) from their environment, as `connector.Api`
does. On a cluster, give the executors that variable through your secret mechanism. An
``api_key`` option is refused.

Partitions are those of `connector.ray` (`connector.ray.plan_partitions`): one Spark input
partition per (run, step range), cut on multiples of a partition size. Each partition is read with
`connector.core.scan.HistoryScan` in columns mode and yields **Arrow record batches** (one per API page)
of the schema fixed when the query was planned: ``entity, project, run_id, _step``, one column per
key (``double``, ``boolean``, ``string``; JSON text for media, lists and mixed types), ``_extra``.
Keys whose kind differs between runs are JSON text; keys named like an identity column get the
`connector.core.columns.column_for_key` name. A PySpark 4.0 Python data source cannot receive
Spark's column pruning, so use ``keys`` to fetch less. Rate: each task has at most two requests
in flight, so the cluster's task slots × 2 bounds the requests in flight (PySpark has no shared
limiter like the Ray reader's actor; lower ``spark.task.cpus``-based concurrency to go gentler).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from ..core.scan import DEFAULT_PAGE_SIZE
from ..errors import ConfigurationError

NAME = "wandb_history"
SECRET_OPTIONS = ("api_key", "apikey", "wandb_api_key", "key", "token", "password")


def _need_pyspark() -> Any:
    try:
        import pyspark
        from pyspark.sql.datasource import DataSource  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "connector.spark needs PySpark 4: pip install 'wandb-history-connector[spark]'"
        ) from exc
    return pyspark


def parse_options(options: Mapping[str, str]) -> dict[str, Any]:
    """Check and convert the data source options (case-insensitive names).

    >>> parse_options({"project": "e/p", "keys": "loss, acc", "max_step": "100"})["keys"]
    ['loss', 'acc']
    >>> parse_options({"project": "e/p", "api_key": "x"})
    Traceback (most recent call last):
    ...
    connector.errors.ConfigurationError: option 'api_key' is refused: the API key comes from WANDB_API_KEY (or ~/.netrc) in the environment of the driver and the workers, never from an option
    """
    opts = {str(k).lower(): v for k, v in dict(options).items()}
    for name in opts:
        if name in SECRET_OPTIONS:
            raise ConfigurationError(
                f"option {name!r} is refused: the API key comes from WANDB_API_KEY (or ~/.netrc) in "
                "the environment of the driver and the workers, never from an option"
            )
    out: dict[str, Any] = {}
    project, runs = opts.get("project"), opts.get("runs") or opts.get("path")
    if bool(project) == bool(runs):
        raise ConfigurationError("wandb_history needs one of the options 'project' (entity/project) or 'runs'")
    out["source"] = project if project else [r.strip() for r in str(runs).split(",") if r.strip()]
    keys = opts.get("keys")
    if keys:
        text = str(keys).strip()
        out["keys"] = json.loads(text) if text.startswith("[") else [k.strip() for k in text.split(",") if k.strip()]
    else:
        out["keys"] = None
    out["filters"] = json.loads(opts["filters"]) if opts.get("filters") else None
    for name, default in (("min_step", 0), ("max_step", None), ("partition_steps", None), ("parallelism", None), ("page_size", DEFAULT_PAGE_SIZE)):
        value = opts.get(name)
        try:
            out[name] = int(value) if value not in (None, "") else default
        except ValueError:
            raise ConfigurationError(f"option {name!r} must be an integer, got {value!r}") from None
    out["base_url"] = opts.get("base_url") or None
    return out


def spark_type(arrow_type: pa.DataType) -> Any:
    """The Spark SQL type of an Arrow column type of the history schema."""
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType

    if pa.types.is_int64(arrow_type):
        return LongType()
    if pa.types.is_floating(arrow_type):
        return DoubleType()
    if pa.types.is_boolean(arrow_type):
        return BooleanType()
    return StringType()


def spark_schema(schema: pa.Schema) -> Any:
    """The `StructType` of an Arrow history schema."""
    from pyspark.sql.types import StructField, StructType

    return StructType([StructField(f.name, spark_type(f.type), f.nullable) for f in schema])


def _plan(options: Mapping[str, str]) -> Any:
    from ..api import Api
    from .ray import list_runs, plan_partitions

    opts = parse_options(options)
    api = Api(base_url=opts["base_url"])
    runs = list_runs(opts["source"], filters=opts["filters"], api=api)
    plan = plan_partitions(
        runs, keys=opts["keys"], min_step=opts["min_step"], max_step=opts["max_step"],
        partition_steps=opts["partition_steps"], parallelism=opts["parallelism"], page_size=opts["page_size"],
    )  # fmt: skip
    return plan, api.settings.base_url


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """`batch` with exactly `schema`'s columns (absent ones as nulls), in its order and types.

    >>> b = pa.record_batch({"_step": [1], "x": [2.0]})
    >>> conform_batch(b, pa.schema([("_step", pa.int64()), ("y", pa.string())])).to_pylist()
    [{'_step': 1, 'y': None}]
    """
    arrays = []
    for f in schema:
        if f.name in batch.schema.names:
            column = batch.column(f.name)
            arrays.append(column if column.type == f.type else column.cast(f.type))
        else:
            arrays.append(pa.nulls(batch.num_rows, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema]))


@functools.cache
def _classes() -> tuple[type, type, type]:
    _need_pyspark()
    from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

    class HistoryPartition(InputPartition):
        """One (run, step range) partition (`connector.ray.Partition`)."""

        def __init__(self, part: Any) -> None:
            super().__init__(part.path)
            self.part = part

    class WandbHistoryReader(DataSourceReader):
        """Plans partitions on the driver; reads one partition per task as Arrow batches."""

        def __init__(self, options: Mapping[str, str], schema: Any) -> None:
            self.options = dict(options)
            self.names = list(schema.fieldNames())
            self.plan, self.base_url = _plan(self.options)

        def partitions(self) -> list[Any]:
            return [HistoryPartition(p) for p in self.plan.partitions]

        def read(self, partition: Any) -> Iterator[pa.RecordBatch]:
            from .ray import Credentials, read_partition

            part = partition.part
            plan = self.plan
            target = plan.projected_schema(None)
            fields = {f.name: f for f in target}
            schema = pa.schema([fields.get(n, pa.field(n, pa.string())) for n in self.names])
            credentials = Credentials(self.base_url, os.environ.get("WANDB_API_KEY") or None)
            for batch in read_partition(part, plan, credentials, None):
                yield conform_batch(batch, schema)

    class WandbHistoryDataSource(DataSource):
        """``spark.read.format("wandb_history")`` (see `connector.spark`)."""

        @classmethod
        def name(cls) -> str:
            return NAME

        def schema(self) -> Any:
            plan, _ = _plan(self.options)
            return spark_schema(plan.schema)

        def reader(self, schema: Any) -> Any:
            return WandbHistoryReader(self.options, schema)

    return WandbHistoryDataSource, WandbHistoryReader, HistoryPartition


def data_source() -> type:
    """The `pyspark.sql.datasource.DataSource` class named ``wandb_history``."""
    return _classes()[0]


def register(spark: Any) -> Any:
    """Register ``wandb_history`` with a `SparkSession` (returns the session).

    >>> register(spark).read.format("wandb_history").option("project", "e/p").load()  # doctest: +SKIP
    """
    spark.dataSource.register(data_source())
    return spark


__all__ = ["NAME", "conform_batch", "data_source", "parse_options", "register", "spark_schema"]
