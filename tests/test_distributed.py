"""Ray Data and Spark readers over HTTP to the emulator: same rows as `Run.scan()` per run.

Ray runs a local cluster (``ray.init(num_cpus=2)``), Spark a local session; both skip (with the
reason) only when their optional dependency is not installed: ``pip install '.[ray]'`` /
``'.[spark]'`` (the ``test`` extra installs both).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_export_support import (  # noqa: E402
    assert_equals_scans,
    assert_none_left,
    interrupt_cli,
    interrupt_midway_then_resume,
    marked_env,
    processes_marked,
    same_value,
)

from connector.emulator import FaultSpec  # noqa: E402
from connector.export.tasks import KILL_ONCE_ENV  # noqa: E402
from connector.remote.transport import RetryPolicy  # noqa: E402
from tests.conftest import live_pages_service  # noqa: E402


def _canon(table: pa.Table) -> pa.Table:
    return table.sort_by([("entity", "ascending"), ("project", "ascending"), ("run_id", "ascending"), ("_step", "ascending")])


def assert_rows_equal_scans(table: pa.Table, api: Any, paths: list[str], **scan: Any) -> None:
    """Per run, `table`'s rows equal ``Run.scan(**scan).to_arrow()`` (NaN-aware), nothing more."""
    table = _canon(table)
    runs = {p: api.run(p) for p in paths}
    total = 0
    for path, run in runs.items():
        ref = run.scan(**scan).to_arrow()
        entity, project, run_id = path.split("/")
        mask = [(r["entity"], r["project"], r["run_id"]) == (entity, project, run_id)
                for r in table.select(["entity", "project", "run_id"]).to_pylist()]  # fmt: skip
        mine = table.filter(pa.array(mask))
        assert mine.num_rows == ref.num_rows, path
        total += mine.num_rows
        for name in ref.column_names:
            want, have = ref.column(name).to_pylist(), mine.column(name).to_pylist()
            bad = [i for i, (x, y) in enumerate(zip(have, want, strict=True)) if not same_value(x, y)]
            assert not bad, f"{path} {name} row {bad[0]}: {have[bad[0]]!r} != {want[bad[0]]!r}"
    assert total == table.num_rows


# -- Ray -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()


def _ray_table(ds: Any) -> pa.Table:
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    table = pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    return _canon(table) if "_step" in table.column_names and "entity" in table.column_names else table


def test_ray_reads_a_project_like_the_scans(ray_cluster, api, paths, emulator):
    import connector.engines.ray
    import connector.ray

    ds = connector.ray.read_history("test/synthetic", api=api, partition_steps=1000)
    datasource = next(op.datasource for op in connector.engines.ray._logical_ops(ds) if hasattr(op, "datasource"))
    parts = datasource.plan.partitions
    assert len(parts) > len(paths)  # each run is cut in step ranges on multiples of 1000
    assert all(p.lo // 1000 == (p.hi - 1) // 1000 for p in parts)
    table = _ray_table(ds)
    assert table.column_names[:4] == ["entity", "project", "run_id", "_step"]
    assert table.column_names[-1] == "_extra"
    assert_equals_scans(table, api, paths)
    stats = connector.ray.limiter_stats(ds)
    assert stats is not None and 0 < stats["peak_in_flight"] <= connector.ray.DEFAULT_MAX_REQUESTS


def test_ray_keys_and_step_range(ray_cluster, api, paths):
    import connector.ray

    ds = connector.ray.read_history(
        "test/synthetic", keys=["loss", "train", "val_loss"], min_step=500, max_step=4200, api=api, parallelism=7
    )
    table = _ray_table(ds)
    assert [c for c in table.column_names if c not in ("entity", "project", "run_id")] == [
        "_step", "loss", "train.acc", "train.loss", "val_loss", "_extra",
    ]  # fmt: skip
    assert_rows_equal_scans(table, api, paths, columns=["loss", "train", "val_loss"], min_step=500, max_step=4200)


def test_ray_projection_is_pushed_into_the_tasks(ray_cluster, make_emulator, api_key):
    import connector.ray
    from connector import Api

    emu = make_emulator("e/p:runs=2,steps=400,keys=12,seed=5")
    api = Api(api_key=api_key, base_url=emu.base_url)
    ds = connector.ray.read_history("e/p", api=api, partition_steps=150)
    emu.reset_counters()
    table = _ray_table(ds.select_columns(["run_id", "_step", "loss"]))
    assert table.column_names == ["run_id", "_step", "loss"] and table.num_rows == 800
    fetched = {k for f in emu.counters()["by_field"].values() for k in f["keys"]}
    assert fetched <= {"loss", "_step"}, fetched
    ref = {(r["run_id"], r["_step"]): r["loss"] for p in emu.paths() for r in
           api.run(p).scan(["loss"]).to_arrow().append_column("run_id", pa.array([p.split("/")[2]] * 400)).to_pylist()}  # fmt: skip
    assert {(r["run_id"], r["_step"]): r["loss"] for r in table.to_pylist()} == ref


def test_ray_shares_one_rate_limit_under_429s(ray_cluster, make_emulator, api_key):
    import connector.ray
    from connector import Api

    clean = make_emulator("e/p:runs=3,steps=600,keys=6,seed=9")
    faulty = make_emulator(
        "e/p:runs=3,steps=600,keys=6,seed=9",
        faults=FaultSpec(rate=0.25, kinds=("429",), seed=4, retry_after=0.01, only_fields=("history",)),
        service=live_pages_service(),  # the 429s fall on live history pages
    )
    ds = connector.ray.read_history(
        "e/p", api=Api(api_key=api_key, base_url=faulty.base_url), partition_steps=200, max_requests=2,
        page_size=100, retry=RetryPolicy(max_attempts=30, deadline=60, initial_wait=0.01, max_wait=0.05),
    )
    table = _ray_table(ds)
    stats = connector.ray.limiter_stats(ds)
    assert stats["throttles"] > 0 and stats["peak_in_flight"] <= 2, stats
    assert faulty.counters()["status"].get("429", 0) > 0
    assert_equals_scans(table, Api(api_key=api_key, base_url=clean.base_url), clean.paths())


def test_ray_identity_named_keys_and_unknown_keys(ray_cluster, make_emulator, api_key):
    import connector.ray
    from connector import Api
    from connector.core.rundata import MemoryRun, RunMeta
    from connector.errors import ConfigurationError

    rows = [{"_step": i, "run_id": f"mine-{i}", "loss": i / 3} for i in range(30)]
    emu = make_emulator([MemoryRun(RunMeta("e", "p", "r1"), rows=rows)])
    api = Api(api_key=api_key, base_url=emu.base_url)
    table = _ray_table(connector.ray.read_history("e/p", api=api, partition_steps=7))
    mapped = [c for c in table.column_names if c.startswith("run_id~")]
    assert len(mapped) == 1 and table.column("run_id").to_pylist() == ["r1"] * 30
    assert sorted(table.column(mapped[0]).to_pylist()) == sorted(r["run_id"] for r in rows)
    with pytest.raises(ConfigurationError, match="did you mean 'loss'"):
        connector.ray.read_history("e/p", keys=["los"], api=api)


# -- Ray export (`wandb-history export --engine ray`) ------------------------------------------------


def _ray_export_module():
    import connector.export.ray_engine

    return connector.export.ray_engine


@pytest.mark.parametrize("kind", ["parquet", "duckdb"])
def test_ray_export_equals_the_single_process_export(ray_cluster, emulator, api, paths, kind, tmp_path):
    """The shared runs (one from step 1000, one with a 5000-step gap): same table, same watermarks,
    same chunks; the tasks' requests share the one limit of --concurrency."""
    from test_export_support import make_dest, read_history, snapshot

    from connector.export import export

    local = make_dest(kind, tmp_path, "local")
    dist = make_dest(kind, tmp_path, "ray")
    ref = export("test/synthetic", local, api=api, chunk_steps=700, concurrency=2)
    got = export("test/synthetic", dist, api=api, chunk_steps=700, concurrency=2, engine="ray")
    assert ref.ok and got.ok, got.failed
    assert (got.rows, got.chunks, got.runs_exported) == (ref.rows, ref.chunks, ref.runs_exported)
    assert got.rows > 0 and got.chunks > len(paths)
    assert snapshot(kind, dist) == snapshot(kind, local)  # rows (NaN-aware) and every watermark
    assert_equals_scans(read_history(kind, dist), api, paths)
    assert 0 < got.limiter["peak_in_flight"] <= 2 and got.limiter["requests"] > 0, got.limiter
    again = export("test/synthetic", dist, api=api, chunk_steps=700, concurrency=2, engine="ray")
    assert again.ok and again.rows == 0 and again.runs_up_to_date == len(paths)


def test_ray_export_survives_a_worker_killed_mid_task(ray_cluster, make_emulator, tmp_path, monkeypatch):
    """A task kills its own worker (SIGKILL) once, after fetching: Ray runs it again, and the
    destination holds every row once, as a clean single-process export."""
    from test_export_support import snapshot

    from connector import Api
    from connector.export import export

    emu = make_emulator("e/p:runs=3,steps=1500,keys=6,seed=13", service=live_pages_service())
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    flag = tmp_path / "kill-once"
    flag.write_text("1")
    monkeypatch.setenv(KILL_ONCE_ENV, str(flag))
    got = export("e/p", str(tmp_path / "ray.duckdb"), api=api, chunk_steps=400, engine="ray")
    assert not flag.exists()  # a worker did die mid-task
    monkeypatch.delenv(KILL_ONCE_ENV)
    assert got.ok, got.failed
    ref = export("e/p", str(tmp_path / "ref.duckdb"), api=api, chunk_steps=400)
    assert got.rows == ref.rows == 4500
    assert snapshot("duckdb", str(tmp_path / "ray.duckdb")) == snapshot("duckdb", str(tmp_path / "ref.duckdb"))


@pytest.mark.parametrize("kind", ["parquet", "duckdb"])
def test_ray_export_driver_kill_9_then_resume_equals_a_clean_export(ray_cluster, make_emulator, tmp_path, kind):
    """``wandb-history export --engine ray`` (a driver process on this cluster) killed with -9 once
    it has committed a chunk; the resume (first with Ray, then without) equals a clean export."""
    import signal
    import subprocess
    import time

    from test_export_support import ROOT, cli_env, make_dest, run_cli, snapshot

    from connector import Api
    from connector.emulator.demo_runs import demo_runs
    from connector.export import export

    emu = make_emulator(demo_runs(), service=live_pages_service())
    ref_dest = make_dest(kind, tmp_path, "ref")
    assert export("demo/mnist", ref_dest, api=Api(api_key=emu.api_key, base_url=emu.base_url), chunk_steps=700).ok
    reference = snapshot(kind, ref_dest)
    dest = make_dest(kind, tmp_path, "kill")
    args = ["demo/mnist", "--chunk-steps", "700", "--quiet", "--concurrency", "2", "--to", dest]
    env = cli_env(emu, RAY_ADDRESS=ray_cluster.get_runtime_context().gcs_address)
    emu.latency = 0.05
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", *args, "--engine", "ray", "--page-size", "100"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:  # ~95 history pages in all
        time.sleep(0.1)
        if emu.counters()["by_field"].get("history", {}).get("requests", 0) >= 65:
            break
    assert proc.poll() is None, f"the export ended before the kill: {proc.stderr.read()[-2000:]}"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    emu.latency = 0.0
    middle = snapshot(kind, dest)
    assert middle != reference and len(middle["history"]) > 1  # killed mid-way, after a commit
    proc = run_cli([*args, "--engine", "ray"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(kind, dest) == reference
    proc = run_cli(args, cli_env(emu))  # and a resume without Ray finds nothing left to do
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(kind, dest) == reference


def test_ray_export_reads_local_runs_on_the_driver(ray_cluster, tmp_path):
    """A run that only the driver has (here in memory; a .wandb file alike) is read by the driver
    itself: the same table as the local engine."""
    from test_export_support import snapshot

    from connector.core.rundata import MemoryRun, RunMeta
    from connector.export import export

    rows = [{"_step": i, "loss": float("nan") if i % 7 == 0 else i / 3} for i in range(0, 2500, 2)]
    run = MemoryRun(RunMeta("e", "p", "mem"), rows=rows)
    got = export([run], str(tmp_path / "ray.duckdb"), chunk_steps=500, engine="ray")
    ref = export([run], str(tmp_path / "ref.duckdb"), chunk_steps=500)
    assert got.ok and got.rows == ref.rows == 1250
    assert snapshot("duckdb", str(tmp_path / "ray.duckdb")) == snapshot("duckdb", str(tmp_path / "ref.duckdb"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's processes through /proc")
@pytest.mark.alone
def test_ray_export_ctrl_c_exits_130_leaves_nothing_running_and_resumes(make_emulator, tmp_path):
    """``wandb-history export --engine ray`` (its own local cluster) interrupted by Ctrl-C, first
    while Ray is starting, then mid-export: exit 130 with what was committed and the command that
    resumes, only whole chunks at the destination, no Ray process left; the resume equals a clean export."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")
    from connector import Api
    from connector.emulator.demo_runs import demo_runs
    from connector.export import export

    emu = make_emulator(demo_runs(), service=live_pages_service())
    ref = str(tmp_path / "ref.duckdb")
    assert export("demo/mnist", ref, api=Api(api_key=emu.api_key, base_url=emu.base_url), chunk_steps=700).ok
    dest = str(tmp_path / "sigint.duckdb")
    args = ["demo/mnist", "--to", dest, "--chunk-steps", "700", "--concurrency", "2", "--page-size", "100",
            "--engine", "ray"]  # fmt: skip
    env, marker = marked_env(emu)

    def ray_starting() -> bool:
        """The raylet is up and starting its agents: ray.init() has not returned yet."""
        return any("raylet" in p for p in processes_marked(marker))

    # 1. while ray.init() is starting the cluster's processes
    code, _, err = interrupt_cli(args, env, ray_starting)
    assert code == 130, err[-2000:]
    assert "interrupted before the export started; nothing was committed" in err, err[-2000:]
    assert_none_left(marker)
    assert not Path(dest).exists()

    # 2. mid-export, after commits; 3. the printed command resumes it
    interrupt_midway_then_resume(emu, args, env, marker, ref)


def test_ray_dry_run_prints_the_local_plan_without_starting_ray(emulator, tmp_path):
    """``--dry-run --engine ray`` prints the plan of ``--dry-run``, and no Ray process ever starts."""
    import subprocess
    import time

    import psutil
    from test_export_support import ROOT, run_cli

    pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")
    dest = str(tmp_path / "plan.duckdb")
    args = ["test/synthetic", "--to", dest, "--chunk-steps", "700", "--dry-run"]
    env, marker = marked_env(emulator)
    local = run_cli(args, env)
    assert local.returncode == 0, local.stderr[-2000:]
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", *args, "--engine", "ray"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: set[str] = set()
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            seen.update(child.name() for child in parent.children(recursive=True))
        except psutil.Error:
            pass
        time.sleep(0.02)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert out == local.stdout and out.startswith("plan: export to ")
    assert not seen, f"a dry run started processes: {sorted(seen)}"
    assert not processes_marked(marker) and not Path(dest).exists()


def test_request_limiter_reclaims_a_slot_its_holder_never_gave_back():
    """A holder that takes the only slot and dies (never releases) costs the slot for one lease."""
    import asyncio
    import time

    from connector.engines.ray import RequestLimiter

    async def scenario() -> tuple[float, dict[str, int], dict[str, int]]:
        lim = RequestLimiter(1, lease_s=0.3)
        lost = await lim.acquire()  # its holder dies here
        start = time.monotonic()
        second = await asyncio.wait_for(lim.acquire(), timeout=10)
        waited = time.monotonic() - start
        after_reclaim = await lim.stats()
        await lim.release(lost)  # a late release of the reclaimed lease frees nothing
        assert (await lim.stats())["in_flight"] == 1
        await lim.release(second)
        return waited, after_reclaim, await lim.stats()

    waited, after_reclaim, end = asyncio.run(scenario())
    assert 0.25 <= waited < 5, waited
    assert after_reclaim["in_flight"] == 1 and after_reclaim["reclaimed"] == 1, after_reclaim
    assert end["in_flight"] == 0 and end["limit"] == 1 and end["requests"] == 2, end


def test_ray_read_after_a_task_killed_holding_the_only_slot(ray_cluster, make_emulator, api_key):
    """A Ray task killed (SIGKILL) inside its slot of a `RequestLimiter` with one slot: the slot
    comes back after the lease, and a dataset read through that limiter returns every row."""
    import signal

    import connector.engines.ray as engine
    from connector import Api

    emu = make_emulator("e/p:runs=2,steps=300,keys=4,seed=7")
    api = Api(api_key=api_key, base_url=emu.base_url)
    limiter = engine._limiter_actor_class().remote(1, lease_s=1.0)

    def take_a_slot_and_die(actor: Any) -> None:
        with engine.ActorGate(actor).slot():
            os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(ray_cluster.exceptions.RayError):
        ray_cluster.get(ray_cluster.remote(max_retries=0)(take_a_slot_and_die).remote(limiter), timeout=60)
    assert ray_cluster.get(limiter.stats.remote())["in_flight"] == 1  # the dead task's slot
    lease = ray_cluster.get(limiter.acquire.remote(), timeout=30)  # without leases: never
    ray_cluster.get(limiter.release.remote(lease))
    runs = engine.list_runs("e/p", api=api)
    plan = engine.plan_partitions(runs, partition_steps=100)
    credentials = engine.Credentials(api.settings.base_url, api.settings.api_key)
    ds = ray_cluster.data.read_datasource(engine._datasource_class()(plan, credentials, limiter, 2))
    assert_equals_scans(_ray_table(ds), api, emu.paths())
    stats = ray_cluster.get(limiter.stats.remote())
    assert stats["reclaimed"] == 1 and stats["in_flight"] == 0 and stats["peak_in_flight"] == 1, stats


@pytest.mark.parametrize("dry_run", [False, True])
def test_engine_ray_without_ray_is_a_configuration_error(tmp_path, emulator, dry_run):
    """Ray absent (its import fails): one line naming the extra, exit 2, nothing written (a dry
    run too: it checks the engine, though it starts none)."""
    import subprocess

    from test_export_support import ROOT, cli_env

    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from connector.cli.app import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    dest = tmp_path / "d.duckdb"
    proc = subprocess.run(
        [sys.executable, "-c", code, "export", "test/synthetic", "--to", str(dest), "--engine", "ray",
         *(["--dry-run"] if dry_run else [])],
        cwd=ROOT, env=cli_env(emulator), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'wandb-history-connector[ray]'" in lines[0], proc.stderr
    assert not dest.exists()


# -- Spark ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_session(emulator: Any) -> Any:
    pytest.importorskip("pyspark", reason="PySpark is not installed: pip install '.[spark]'")
    from pyspark.sql import SparkSession

    # the Python workers inherit the environment: the API key never goes into an option
    saved = {k: os.environ.get(k) for k in ("WANDB_API_KEY", "PYSPARK_PYTHON")}
    os.environ["WANDB_API_KEY"] = emulator.api_key
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers need this venv (pyarrow, connector)
    spark = (
        SparkSession.builder.master("local[2]").appName("wandb-history-test")
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )  # fmt: skip
    import connector.spark

    connector.spark.register(spark)
    try:
        yield spark
    finally:
        spark.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_spark_reads_a_project_like_the_scans(spark_session, api, paths, emulator):
    df = (
        spark_session.read.format("wandb_history").option("project", "test/synthetic")
        .option("base_url", emulator.base_url).option("partition_steps", "1000").load()
    )  # fmt: skip
    assert df.rdd.getNumPartitions() > len(paths)
    table = _canon(df.toArrow())
    assert table.column_names[:4] == ["entity", "project", "run_id", "_step"]
    assert_equals_scans(table, api, paths)


def test_spark_keys_steps_and_run_filters(spark_session, api, paths, emulator):
    import json

    wanted = paths[:2]
    run_ids = [p.split("/")[2] for p in wanted]
    df = (
        spark_session.read.format("wandb_history").option("project", "test/synthetic")
        .option("base_url", emulator.base_url).option("keys", "loss,train")
        .option("filters", json.dumps({"name": {"$in": run_ids}}))
        .option("min_step", "100").option("max_step", "3000").load()
    )  # fmt: skip
    assert df.columns == ["entity", "project", "run_id", "_step", "loss", "train.acc", "train.loss", "_extra"]
    assert_rows_equal_scans(df.toArrow(), api, wanted, columns=["loss", "train"], min_step=100, max_step=3000)
    assert df.where("loss > 1.0").count() == sum(
        sum(1 for v in api.run(p).scan(["loss"], min_step=100, max_step=3000).to_arrow().column("loss").to_pylist() if v > 1.0)
        for p in wanted
    )  # fmt: skip


def test_spark_refuses_an_api_key_option(spark_session, emulator):
    with pytest.raises(Exception, match="WANDB_API_KEY"):
        spark_session.read.format("wandb_history").option("project", "test/synthetic").option(
            "api_key", "x"
        ).option("base_url", emulator.base_url).load().count()


