"""Drop-in: the same user code runs against `wandb.Api` (0.31.0) and `connector.Api` on one emulator.

`PROBE` is one function of ordinary SDK-style user code; it runs in a subprocess with
``wandb.Api`` (the SDK starts its own wandb-core) and in process with ``connector.Api``. Its answers
are compared name by name. Where the connector deliberately differs (see `DIFFERENCES`), the test
pins both answers instead of comparing them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from connector import Api
from connector.errors import CommError, ConnectorError, NotFoundError, TransportError
from tests.compare import row_diff
from tests.wandb_files import sdk_env

PROBE = r'''
import json


def probe(Api, base, key, project):
    entity, name = project.split("/")
    api = Api({"base_url": base}, 60, key)  # the SDK's positional (overrides, timeout, api_key)
    out = {"viewer_entity": api.viewer.entity, "default_entity": api.default_entity}
    runs = api.runs(name, per_page=2, lazy=False, include_sweeps=False)  # the default entity
    out["runs_len"] = len(runs)
    out["runs_0"] = runs[0].id
    out["runs_slice"] = [r.id for r in runs[1:3]]
    out["runs_ids"] = [r.id for r in runs]
    out["runs_last"] = runs[-1].id  # after a full iteration (the SDK indexes what it has loaded)
    out["runs_kw"] = [r.id for r in api.runs(path=project, filters={}, order="+created_at",
                                             per_page=50, include_sweeps=True, lazy=True)]
    out["runs_page1"] = [r.id for r in api.runs(project, per_page=1)]
    out["by_run"] = {}
    for run_id in out["runs_ids"]:
        run = api.run(f"{project}/{run_id}")
        got = {}
        for attr in ("id", "name", "display_name", "state", "entity", "project", "path", "url",
                     "tags", "config", "rawconfig", "summary_metrics", "system_metrics", "notes",
                     "group", "job_type", "sweep_name", "read_only", "json_config",
                     "historyLineCount", "lastHistoryStep", "storage_id", "created_at",
                     "heartbeat_at", "metadata", "username"):
            got[attr] = getattr(run, attr)
        got["json_config"] = json.loads(got["json_config"])
        got["user"] = {"name": run.user.name, "username": run.user.username}
        loaded = run.load()
        # (not rawconfig: the SDK's load() re-derives it from the unwrapped config and loses _wandb)
        got["load"] = {k: loaded.get(k) for k in ("displayName", "state", "config", "tags")}
        got["next"] = next(run.scan_history())
        got["next2"] = [next(iter(run.scan_history(min_step=5))) for _ in range(2)]
        scan = run.scan_history()
        got["next_then_next"] = [next(scan)["_step"], next(scan)["_step"]]
        got["keys_empty"] = list(run.scan_history(keys=[], min_step=0, max_step=40))
        got["keys_none"] = list(run.scan_history(min_step=0, max_step=40))
        got["window_steps"] = [row["_step"] for row in run.scan_history(max_step=50)]
        got["scan_max_step"] = run.scan_history(max_step=50).max_step
        got["files"] = [[f.name, f.size, f.md5] for f in run.files()] + [len(run.files())]
        got["logged_artifacts"] = [[a.name, a.type, a.aliases] for a in run.logged_artifacts()]
        got["used_artifacts"] = [[a.name, a.version, a.digest] for a in run.used_artifacts()]
        out["by_run"][run_id] = got
    try:
        api.run(f"{project}/no-such-run")
        out["missing_run"] = None
    except Exception as exc:
        out["missing_run"] = [c.__name__ for c in type(exc).__mro__]
    return out
'''

SDK_MAIN = PROBE + r'''
import sys
import wandb

sys.stdout.write(json.dumps(probe(wandb.Api, *sys.argv[1:4])))
'''

#: Where the connector deliberately differs; each entry is pinned by a test below.
DIFFERENCES = {
    "scan_max_step": "the SDK's HistoryScan.max_step is the last step it can yield (49 for "
    "max_step=50); ours is the exclusive bound the scan was built with (50); rows agree",
    "missing_run": "the SDK raises wandb.errors.CommError; ours NotFoundError, a subclass of "
    "connector.errors.CommError (and of LookupError)",
}


def _ours(emulator: Any, project: str) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(compile(PROBE, "probe", "exec"), scope)  # noqa: S102 - our own test code
    out = scope["probe"](Api, emulator.base_url, emulator.api_key, project)
    return json.loads(json.dumps(out))  # the same JSON round trip as the SDK's answer


@pytest.fixture(scope="module")
def both(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    env = sdk_env(tmp_path_factory.mktemp("sdk-dropin"))
    env.pop("WANDB_MODE")  # online: the SDK reads the emulator
    project = "/".join(emulator.paths()[0].split("/")[:2])
    proc = subprocess.run(
        [sys.executable, "-c", SDK_MAIN, emulator.base_url, emulator.api_key, project],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), _ours(emulator, project)


def test_api_and_runs_indexing_match(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sdk, ours = both
    for name in ("viewer_entity", "default_entity", "runs_len", "runs_0", "runs_slice", "runs_ids",
                 "runs_last", "runs_kw", "runs_page1"):  # fmt: skip
        assert ours[name] == sdk[name], name
    assert len(ours["runs_ids"]) == 3 and ours["runs_slice"] == ours["runs_ids"][1:3]


RUN_NAMES = [
    "id", "name", "display_name", "state", "entity", "project", "path", "url", "tags", "config",
    "rawconfig", "summary_metrics", "system_metrics", "notes", "group", "job_type", "sweep_name",
    "read_only", "json_config", "historyLineCount", "lastHistoryStep", "storage_id", "created_at",
    "heartbeat_at", "metadata", "username", "user", "load", "next", "next2", "next_then_next",
    "keys_empty", "keys_none", "window_steps", "files", "logged_artifacts", "used_artifacts",
]  # fmt: skip


@pytest.mark.parametrize("name", RUN_NAMES)
def test_run_attribute_matches(both: tuple[dict[str, Any], dict[str, Any]], name: str) -> None:
    sdk, ours = both
    assert set(ours["by_run"]) == set(sdk["by_run"])
    for run_id, theirs in sdk["by_run"].items():
        mine = ours["by_run"][run_id]
        assert not row_diff({"v": mine[name]}, {"v": theirs[name]}), (run_id, name, mine[name], theirs[name])


def test_keys_empty_is_all_keys(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    runs = list(both[1]["by_run"].values())
    assert all(got["keys_empty"] == got["keys_none"] for got in runs)
    assert any(len(row) > 1 for got in runs for row in got["keys_empty"])  # not `_step` alone


def test_documented_differences(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sdk, ours = both
    for run_id, theirs in sdk["by_run"].items():
        mine = ours["by_run"][run_id]
        assert mine["window_steps"] == theirs["window_steps"]
        if theirs["window_steps"]:
            assert theirs["scan_max_step"] == 49 and mine["scan_max_step"] == 50
    assert ours["missing_run"][0] == "NotFoundError"
    assert {"CommError", "LookupError"} <= set(ours["missing_run"])
    assert sdk["missing_run"][0] == "CommError"


def test_comm_error_is_the_transport_base() -> None:
    assert issubclass(TransportError, CommError) and issubclass(NotFoundError, CommError)
    assert issubclass(CommError, ConnectorError)
    err = NotFoundError("run e/p/x not found")
    assert err.message == "run e/p/x not found" and err.exc is None and err.exit_code == 2
    assert TransportError("down").exit_code == 3 and CommError("x").exit_code == 3


def test_api_positional_forms(emulator: Any) -> None:
    sdk_form = Api({"base_url": emulator.base_url}, 30, emulator.api_key)
    assert sdk_form.settings.base_url.rstrip("/") == emulator.base_url.rstrip("/")
    assert sdk_form.api_key == emulator.api_key
    old_form = Api(emulator.api_key, emulator.base_url)
    assert old_form.settings.base_url.rstrip("/") == emulator.base_url.rstrip("/")
    assert old_form.viewer.entity == old_form.viewer()["entity"] == "test"
    with pytest.raises(ValueError):
        Api(["not", "a", "dict"])  # type: ignore[arg-type]  # the wrong type, on purpose


def test_runs_indexing_edges(api: Api, emulator: Any) -> None:
    project = "/".join(emulator.paths()[0].split("/")[:2])
    runs = api.runs(project, per_page=1)
    ids = [r.id for r in runs]
    fresh = api.runs(project, per_page=1)
    assert fresh[-1].id == ids[-1] and fresh[-3].id == ids[0]
    assert [r.id for r in api.runs(project)[::-1]] == ids[::-1]
    assert [r.id for r in api.runs(project)[1:]] == ids[1:]
    with pytest.raises(IndexError):
        api.runs(project)[3]
    with pytest.raises(TypeError):
        api.runs(project)["a"]  # type: ignore[index]  # the wrong index type, on purpose
