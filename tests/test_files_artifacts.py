"""A run's files and artifacts: `Run.files()`, `logged_artifacts()`, `used_artifacts()`,
the emulator fields behind them, and the `wandb_files` / `wandb_artifacts` tables.

The official SDK (0.31.0, in a subprocess, `PROBE`) and the connector (in process, the same `PROBE`)
read the shared emulator over real HTTP; their listings must agree attribute by attribute. The
DuckDB and Polars tables must hold exactly the Python listings' values, with typed columns.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
import requests

from connector import Api
from connector.duckdb import register, unregister
from connector.emulator.run_files import logged_artifacts, run_files, used_artifacts
from connector.errors import ConfigurationError, NotFoundError
from connector.polars import scan_artifacts, scan_files, scan_histories
from tests.wandb_files import sdk_env

PROBE = r'''
import json


def probe(Api, base, key, project):
    api = Api({"base_url": base}, 60, key)
    out = {}
    for run in api.runs(project):
        got = {}
        files = run.files(per_page=3)  # 4 files: two pages
        got["files_len"] = len(files)
        got["files"] = [
            {"name": f.name, "size": f.size, "sizeBytes": f.sizeBytes, "size_bytes": f.size_bytes,
             "mimetype": f.mimetype, "md5": f.md5, "updated_at": f.updated_at, "updatedAt": f.updatedAt,
             "url": f.url, "direct_url": f.direct_url, "id": f.id, "path_uri": f.path_uri, "repr": repr(f)}
            for f in files
        ]
        got["files_next"] = next(run.files(per_page=1)).name
        got["files_index"] = [run.files(per_page=1)[2].name, [f.name for f in run.files(per_page=1)[1:3]]]
        named = run.files(names=["output.log", "wandb-summary.json"])
        got["files_names"] = [[f.name for f in named], len(named)]
        got["files_pattern"] = [f.name for f in run.files(pattern="%.json")]
        got["file"] = [run.file("config.yaml").name, run.file("config.yaml").size]
        for mode in ("logged", "used"):
            arts = getattr(run, f"{mode}_artifacts")(per_page=1)
            got[f"{mode}_len"] = len(arts)
            got[mode] = [
                {"id": a.id, "name": a.name, "type": a.type, "version": a.version, "aliases": a.aliases,
                 "tags": a.tags, "digest": a.digest, "size": a.size, "file_count": a.file_count,
                 "created_at": a.created_at, "updated_at": a.updated_at, "description": a.description,
                 "metadata": a.metadata, "state": a.state, "commit_hash": a.commit_hash,
                 "history_step": a.history_step, "entity": a.entity, "project": a.project,
                 "qualified_name": a.qualified_name, "source_name": a.source_name,
                 "source_entity": a.source_entity, "source_project": a.source_project,
                 "source_version": a.source_version, "source_qualified_name": a.source_qualified_name,
                 "is_link": a.is_link, "ttl": None if a.ttl is None else a.ttl.total_seconds()}
                for a in arts
            ]
        arts = run.logged_artifacts(per_page=1)
        got["logged_last"] = [len(list(arts)), arts[-1].name]  # (the SDK indexes what it has loaded)
        out[run.id] = got
    return out
'''

SDK_MAIN = PROBE + r'''
import sys
import wandb

sys.stdout.write(json.dumps(probe(wandb.Api, *sys.argv[1:4])))
'''

FILE_NAMES = ["name", "size", "sizeBytes", "size_bytes", "mimetype", "md5", "updated_at", "updatedAt",
              "url", "direct_url", "id", "path_uri", "repr"]  # fmt: skip
ARTIFACT_NAMES = ["id", "name", "type", "version", "aliases", "tags", "digest", "size", "file_count",
                  "created_at", "updated_at", "description", "metadata", "state", "commit_hash",
                  "history_step", "entity", "project", "qualified_name", "source_name", "source_entity",
                  "source_project", "source_version", "source_qualified_name", "is_link", "ttl"]  # fmt: skip
LISTING_NAMES = ["files_len", "files_next", "files_index", "files_names", "files_pattern", "file",
                 "logged_len", "used_len", "logged_last"]  # fmt: skip


def _project(emulator: Any) -> str:
    return "/".join(emulator.paths()[0].split("/")[:2])


@pytest.fixture(scope="module")
def both(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    env = sdk_env(tmp_path_factory.mktemp("sdk-files"))
    env.pop("WANDB_MODE")  # online: the SDK reads the emulator
    project = _project(emulator)
    proc = subprocess.run(
        [sys.executable, "-c", SDK_MAIN, emulator.base_url, emulator.api_key, project],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    scope: dict[str, Any] = {}
    exec(compile(PROBE, "probe", "exec"), scope)  # noqa: S102 - our own test code
    ours = json.loads(json.dumps(scope["probe"](Api, emulator.base_url, emulator.api_key, project)))
    return json.loads(proc.stdout), ours


def test_the_sdk_reads_every_run_and_something_of_each_kind(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sdk, ours = both
    assert set(sdk) == set(ours) and len(sdk) == 3
    assert all(len(got["files"]) == got["files_len"] == 4 for got in sdk.values())
    assert all(got["logged_len"] >= 2 for got in sdk.values())
    assert sum(got["used_len"] for got in sdk.values()) >= 1
    assert any(a["aliases"] for got in sdk.values() for a in got["logged"])


@pytest.mark.parametrize("name", FILE_NAMES)
def test_file_attribute_matches_the_sdk(both: tuple[dict[str, Any], dict[str, Any]], name: str) -> None:
    sdk, ours = both
    for run_id, theirs in sdk.items():
        assert [f[name] for f in ours[run_id]["files"]] == [f[name] for f in theirs["files"]], run_id


@pytest.mark.parametrize("name", ARTIFACT_NAMES)
@pytest.mark.parametrize("mode", ["logged", "used"])
def test_artifact_attribute_matches_the_sdk(
    both: tuple[dict[str, Any], dict[str, Any]], mode: str, name: str
) -> None:
    sdk, ours = both
    for run_id, theirs in sdk.items():
        assert [a[name] for a in ours[run_id][mode]] == [a[name] for a in theirs[mode]], run_id


@pytest.mark.parametrize("name", LISTING_NAMES)
def test_listing_behaviour_matches_the_sdk(both: tuple[dict[str, Any], dict[str, Any]], name: str) -> None:
    sdk, ours = both
    for run_id, theirs in sdk.items():
        assert ours[run_id][name] == theirs[name], run_id


# -- the emulator's files are real bytes --------------------------------------------------------------


def test_file_urls_serve_bytes_of_the_listed_size_and_md5(api: Api, paths: list[str]) -> None:
    for f in api.run(paths[0]).files():
        for url in (f.url, f.direct_url):
            body = requests.get(url, timeout=10).content
            assert len(body) == f.size
            assert base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode() == f.md5
    assert requests.get(f.url + "-missing", timeout=10).status_code == 404


def test_listings_are_the_emulator_truth(emulator: Any, api: Api, paths: list[str]) -> None:
    for path in paths:
        data = emulator.run(*path.split("/"))
        run = api.run(path)
        expected = run_files(data.meta, len(data.steps()))
        assert [(f.name, f.size, f.md5) for f in run.files()] == [(f.name, f.size, f.md5) for f in expected]
        logged = logged_artifacts(data.meta, data.steps())
        assert [a.name for a in run.logged_artifacts()] == [a.name for a in logged]
        assert [a.name for a in run.used_artifacts()] == [a.name for a in used_artifacts(data.meta)]
        assert [a.digest for a in run.logged_artifacts()] == [a.digest for a in logged]


# -- paging, errors ----------------------------------------------------------------------------------


def test_pages_are_fetched_only_as_far_as_needed(make_emulator: Any) -> None:
    emu = make_emulator("e/p:runs=2,steps=50,keys=3,seed=5")
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    run = api.run(emu.paths()[0])
    emu.reset_counters()
    files = run.files(per_page=1)
    assert files[0].name == "config.yaml"
    assert emu.counters()["by_field"]["files"]["requests"] == 1
    assert len(files) == 4 and files.more and files.cursor
    assert [f.name for f in files] == [f.name for f in run.files(per_page=50)]
    assert emu.counters()["by_field"]["files"]["requests"] == 4 + 1  # each page once, then one page
    assert not files.more
    arts = run.logged_artifacts(per_page=1)
    assert [a.name for a in arts] == [a.name for a in run.logged_artifacts()]
    assert len(arts) == len(list(arts)) >= 2


def test_missing_run_and_local_run_and_bad_arguments(api: Api, emulator: Any, tmp_path: Path) -> None:
    from connector.core.rundata import MemoryRun, RunMeta
    from connector.resolve import resolve_run

    project = _project(emulator)
    ghost = api.run(emulator.paths()[0])
    ghost.ref = type(ghost.ref)(ghost.ref.entity, ghost.ref.project, "no-such-run")
    with pytest.raises(NotFoundError, match="no-such-run"):
        list(ghost.files())
    with pytest.raises(NotFoundError, match="no-such-run"):
        len(ghost.logged_artifacts())
    local = resolve_run(MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": 0}]))
    with pytest.raises(ConfigurationError, match="local file"):
        local.files()
    with pytest.raises(ConfigurationError):
        api.run(emulator.paths()[0]).files(names=["a"], pattern="%")
    with pytest.raises(ConfigurationError, match="per_page"):
        api.run(emulator.paths()[0]).used_artifacts(per_page=0)
    with pytest.raises(ConfigurationError, match="direction"):
        scan_artifacts(project, api=api, direction="inputs")
    with pytest.raises(ConfigurationError, match="local path"):
        scan_files(str(tmp_path), api=api)


# -- DuckDB and Polars tables --------------------------------------------------------------------------


def _file_rows(api: Api, paths: list[str]) -> list[tuple[Any, ...]]:
    from connector.engines.polars import utc_datetime

    rows = []
    for path in paths:
        run = api.run(path)
        for f in run.files():
            rows.append((*run.path, f.name, f.size, f.mimetype, f.md5, utc_datetime(f.updated_at), f.url,
                         f.direct_url, f.id))  # fmt: skip
    return rows


def _artifact_rows(api: Api, paths: list[str], modes: tuple[str, ...] = ("logged", "used")) -> list[tuple[Any, ...]]:
    from connector.engines.polars import utc_datetime

    rows = []
    for path in paths:
        run = api.run(path)
        for mode in modes:
            for a in getattr(run, f"{mode}_artifacts")():
                rows.append((*run.path, mode, a.id, a.name, a.collection_name, a.type, a.version, a.aliases, a.tags, a.digest,
                             a.size, a.file_count, a.state, a.description, a.metadata, a.commit_hash,
                             a.history_step, utc_datetime(a.created_at), utc_datetime(a.updated_at),
                             a.entity, a.project, a.url))  # fmt: skip
    return rows


@pytest.fixture
def con(api: Api) -> Any:
    connection = register(duckdb.connect(), api)
    yield connection
    unregister(connection)
    connection.close()


def _sorted(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=repr)


def test_wandb_files_equals_the_python_listing(con: Any, api: Api, emulator: Any, paths: list[str]) -> None:
    project = _project(emulator)
    got = con.sql(f"SELECT * FROM wandb_files('{project}')").fetchall()
    assert _sorted(got) == _sorted(_file_rows(api, paths))
    one = con.sql(f"SELECT run_id, name FROM wandb_files('{paths[1]}')").fetchall()
    assert one == [(paths[1].split("/")[2], f.name) for f in api.run(paths[1]).files()]
    types = {r[0]: r[1] for r in con.sql(f"DESCRIBE SELECT * FROM wandb_files('{project}')").fetchall()}
    assert types["size"] == "BIGINT" and types["updated_at"] == "TIMESTAMP" and types["run_id"] == "VARCHAR"


def test_wandb_artifacts_equals_the_python_listing(con: Any, api: Api, emulator: Any, paths: list[str]) -> None:
    project = _project(emulator)
    sql = f"SELECT * FROM wandb_artifacts('{project}')"
    got = [(*r[:16], json.loads(r[16]), *r[17:]) for r in con.sql(sql).fetchall()]
    assert _sorted(got) == _sorted(_artifact_rows(api, paths))
    types = {r[0]: r[1] for r in con.sql(f"DESCRIBE {sql}").fetchall()}
    assert types["aliases"] == "VARCHAR[]" and types["tags"] == "VARCHAR[]"
    assert types["size"] == types["file_count"] == types["history_step"] == "BIGINT"
    assert types["created_at"] == types["updated_at"] == "TIMESTAMP" and types["metadata"] == "JSON"
    for mode in ("logged", "used"):
        one = con.sql(f"SELECT run_id, name FROM wandb_artifacts('{paths[0]}', direction := '{mode}')").fetchall()
        assert one == [r[2:3] + r[5:6] for r in _artifact_rows(api, paths[:1], (mode,))]
    both = con.sql(f"SELECT count(*) FROM wandb_artifacts('{project}', direction := 'both')").fetchall()
    assert both == [(len(got),)]
    with pytest.raises(duckdb.Error, match="direction must be"):
        con.sql(f"SELECT * FROM wandb_artifacts('{project}', direction := 'inputs')").fetchall()


def test_direction_and_run_filters_skip_requests(make_emulator: Any) -> None:
    emu = make_emulator("e/p:runs=3,steps=50,keys=3,seed=5")
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    connection = register(duckdb.connect(), api)
    emu.reset_counters()
    connection.sql("SELECT count(*) FROM wandb_artifacts('e/p', direction := 'used')").fetchall()
    fields = emu.counters()["by_field"]
    assert "outputArtifacts" not in fields and fields["inputArtifacts"]["requests"] == 3
    run_id = emu.paths()[1].split("/")[2]
    emu.reset_counters()
    got = connection.sql(f"SELECT DISTINCT run_id FROM wandb_files('e/p') WHERE run_id = '{run_id}'").fetchall()
    assert got == [(run_id,)] and emu.counters()["by_field"]["files"]["requests"] == 1
    emu.reset_counters()
    lf = scan_artifacts("e/p", api=api).filter(pl.col("direction") == "logged")
    assert set(lf.collect()["direction"]) == {"logged"}
    assert "inputArtifacts" not in emu.counters()["by_field"]
    connection.close()


def test_polars_scans_equal_the_duckdb_tables(con: Any, api: Api, emulator: Any, paths: list[str]) -> None:
    project = _project(emulator)
    files = scan_files(project, api=api).collect()
    assert files.schema["size"] == pl.Int64 and files.schema["updated_at"] == pl.Datetime("us")
    assert _sorted(files.rows()) == _sorted(con.sql(f"SELECT * FROM wandb_files('{project}')").fetchall())
    arts = scan_artifacts(project, api=api).collect()
    assert arts.schema["aliases"] == pl.List(pl.String) and arts.schema["created_at"] == pl.Datetime("us")
    sql_rows = con.sql(f"SELECT * EXCLUDE (metadata), metadata::VARCHAR FROM wandb_artifacts('{project}')").fetchall()
    polars_rows = arts.select(pl.exclude("metadata"), pl.col("metadata")).rows()
    norm = [(*r[:-1], json.loads(r[-1])) for r in polars_rows]
    assert _sorted(norm) == _sorted([(*r[:-1], json.loads(r[-1])) for r in sql_rows])
    used = scan_artifacts(paths, api=api, direction="used").collect()
    assert used.height == len(_artifact_rows(api, paths, ("used",)))
    assert scan_files(api.run(paths[2]), api=api).collect()["run_id"].unique().to_list() == [paths[2].split("/")[2]]


# -- scan_histories over a local folder ----------------------------------------------------------------


def test_scan_histories_reads_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.wandb_files import produce

    produced = produce("basic", tmp_path / "work")
    folder = tmp_path / "project"
    (folder / "wandb").mkdir(parents=True)
    produced.run_dir.rename(folder / "wandb" / produced.run_dir.name)
    monkeypatch.chdir(folder)
    frame = scan_histories("./wandb").collect()
    run_id = produced.run_dir.name.rsplit("-", 1)[1]
    assert frame["run_id"].unique().to_list() == [run_id]
    assert frame["_step"].to_list() == [row["_step"] for row in produced.expected["rows"]]
    assert frame.columns[:4] == ["entity", "project", "run_id", "_step"]
    assert scan_histories("./wandb", filters={"state": "no-such-state"}).collect().height == 0
