"""The W&B API emulator over real loopback HTTP: every operation, its semantics, faults and counters."""

from __future__ import annotations

import base64
import json
import math
import time
from typing import Any

import pytest
import requests

from connector.core.rundata import MemoryRun, RunMeta
from connector.core.values import history_keys_from_rows
from connector.emulator import DEFAULT_API_KEY, Emulator, FaultSpec, SyntheticSpec, synthetic_runs
from connector.emulator.service import ServiceModel

RUN_QUERY = """#graphql
        query Run($project: String!, $entity: String!, $name: String!) {
            project(name: $project, entityName: $entity) {
                run(name: $name) {
                    projectId
                    ...RunFragment
                }
            }
        }
        fragment RunFragment on Run {
    id tags name displayName sweepName state config group jobType commit readOnly createdAt
    heartbeatAt description notes systemMetrics summaryMetrics historyLineCount
    user { name username }
    historyKeys
}"""
HISTORY_PAGE = """query HistoryPage ($entity: String!, $project: String!, $run: String!, $minStep: Int64!, $maxStep: Int64!, $pageSize: Int!) {
\tproject(name: $project, entityName: $entity) {
\t\trun(name: $run) {
\t\t\thistory(minStep: $minStep, maxStep: $maxStep, samples: $pageSize)
\t\t}
\t}
}"""
SAMPLED_PAGE = """query SampledHistoryPage ($entity: String!, $project: String!, $run: String!, $spec: JSONString!) {
\tproject(name: $project, entityName: $entity) { run(name: $run) { sampledHistory(specs: [$spec]) } }
}"""
RUNS_QUERY = """query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50, $order: String, $filters: JSONString) {
    project(name: $project, entityName: $entity) {
        internalId
        runCount(filters: $filters)
        readOnly
        runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
            edges { node { projectId name state displayName } cursor }
            pageInfo { endCursor hasNextPage }
        }
    }
}"""

# These tests pin the emulator's exact semantics (even downsampling, no limits, exact line counts,
# no Parquet exports); tests/test_emulator_service.py covers the realistic defaults.


@pytest.fixture(scope="module")
def emulator(api_key: str) -> Any:
    from tests.conftest import SHARED_SPEC

    with Emulator(synthetic_runs(SHARED_SPEC), api_key=api_key, service=ServiceModel.friendly()) as emu:
        yield emu


@pytest.fixture
def make_emulator(make_emulator: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("service", ServiceModel.friendly())
        return make_emulator(*args, **kwargs)

    return make


def post(
    emu: Any, query: str, variables: Any = None, op: Any = "", *, key: str | None = None
) -> requests.Response:
    body: dict[str, Any] = {"query": query}
    if variables is not ...:
        body["variables"] = variables
    if op is not ...:
        body["operationName"] = op
    return requests.post(
        emu.base_url + "/graphql", json=body, auth=("api", key or emu.api_key), timeout=10
    )


def data(emu: Any, query: str, variables: Any = None, op: Any = "") -> Any:
    r = post(emu, query, variables, op)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "errors" not in body, body
    return body["data"]


def strict_json(text: str) -> Any:
    def bad(token: str) -> Any:
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=bad)


def ids(emu: Any) -> list[tuple[str, str, str]]:
    return [tuple(p.split("/")) for p in emu.paths()]  # type: ignore[misc]  # a run path has three parts


def same(a: Any, b: Any) -> bool:
    """NaN-aware equality, 1 == 1.0."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def history(
    emu: Any, e: str, p: str, r: str, lo: int, hi: int, samples: int = 100000
) -> list[dict]:
    d = data(
        emu,
        HISTORY_PAGE,
        {"entity": e, "project": p, "run": r, "minStep": lo, "maxStep": hi, "pageSize": samples},
        "HistoryPage",
    )
    return [json.loads(s) for s in d["project"]["run"]["history"]]


def sampled(emu: Any, e: str, p: str, r: str, spec: dict) -> list[dict]:
    d = data(
        emu,
        SAMPLED_PAGE,
        {"entity": e, "project": p, "run": r, "spec": json.dumps(spec)},
        "SampledHistoryPage",
    )
    return d["project"]["run"]["sampledHistory"][0]


# -- viewer, documents, auth --------------------------------------------------------------------


def test_viewer_variants_and_document_shapes(emulator: Any) -> None:
    viewer_genqlient = "query Viewer {\n\tviewer {\n\t\tid\n\t\tentity\n\t\tusername\n\t\temail\n\t\tflags\n\t\tteams {\n\t\t\tedges {\n\t\t\t\tnode {\n\t\t\t\t\tname\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t}\n}"
    v = data(emulator, viewer_genqlient, None, "Viewer")["viewer"]
    assert v["entity"] == "test" and v["teams"]["edges"][0]["node"]["name"] == "test"
    assert data(emulator, "{ viewer { id } }", ..., ...)["viewer"]["id"]
    assert (
        data(emulator, "query GetDefaultEntity {\n  viewer {\n    id\n    entity\n  }\n}", {}, "")[
            "viewer"
        ]["entity"]
        == "test"
    )
    get_viewer = """query GetViewer { viewer { ...UserFragment } }
    fragment ApiKeyFragment on ApiKey { id name description }
    fragment UserFragment on User { id name username email admin flags entity deletedAt
      apiKeys { edges { node { ...ApiKeyFragment } } } teams { edges { node { name } } } }"""
    u = data(emulator, get_viewer, {}, "GetViewer")["viewer"]
    assert u["name"] and u["admin"] is False and emulator.api_key not in json.dumps(u)
    probe = 'query ProbeRunInput { RunType: __type(name: "Run") { fields { name } } ProjectType: __type(name: "Project") { fields { name } } }'
    d = data(emulator, probe)
    assert {"projectId", "sampledHistory"} <= {f["name"] for f in d["RunType"]["fields"]}
    assert "internalId" in {f["name"] for f in d["ProjectType"]["fields"]}


def test_auth_and_bad_requests(emulator: Any) -> None:
    r = post(emulator, "{ viewer { id } }", key="wrong-" + "x" * 40)
    assert r.status_code == 401 and r.json()["errors"][0]["message"]
    r = requests.post(
        emulator.base_url + "/graphql", json={"query": "{ viewer { id } }"}, timeout=5
    )
    assert r.status_code == 401
    r = post(emulator, "{ viewer { nope } }")
    assert r.status_code == 400 and "nope" in r.json()["errors"][0]["message"]
    r = post(emulator, "{ viewer { id ")
    assert r.status_code == 400
    assert Emulator().api_key == DEFAULT_API_KEY and len(DEFAULT_API_KEY) >= 40
    assert requests.get(emulator.base_url + "/healthz", timeout=5).json() == {"ok": True}
    assert (
        requests.post(
            emulator.base_url + "/sdk/otel/v1/metrics", data=b"\x00", timeout=5
        ).status_code
        == 200
    )


# -- Run --------------------------------------------------------------------------------------


def test_run_fragment(emulator: Any) -> None:
    e, p, r = ids(emulator)[1]
    run = data(emulator, RUN_QUERY, {"entity": e, "project": p, "name": r})["project"]["run"]
    assert int(run["projectId"]) >= 1
    assert base64.b64decode(run["id"]).decode() == f"Run:v1:{r}:{p}:{e}"
    assert (
        run["name"] == r and run["state"] == "finished" and run["tags"] == ["synthetic", "group-1"]
    )
    config = json.loads(run["config"])
    assert config["lr"] == {"value": 0.002, "desc": None}
    truth = emulator.run(e, p, r)
    assert run["historyLineCount"] == 2500
    assert run["historyKeys"]["lastStep"] == 1000 + 2499 == truth.history_keys()["lastStep"]
    assert json.loads(run["summaryMetrics"])["_step"] == 3499
    assert run["user"]["name"]
    missing = data(emulator, RUN_QUERY, {"entity": e, "project": p, "name": "nope1234"})
    assert missing == {"project": {"run": None}}
    assert data(emulator, RUN_QUERY, {"entity": e, "project": "nope", "name": r}) == {
        "project": None
    }


# -- history ----------------------------------------------------------------------------------


def test_history_window_is_max_exclusive_and_matches_generator(emulator: Any) -> None:
    e, p, r = ids(emulator)[0]
    truth = emulator.run(e, p, r)
    rows = history(emulator, e, p, r, 10, 20)
    assert [x["_step"] for x in rows] == list(range(10, 20))
    assert all(same(a, truth.row(10 + i)) for i, a in enumerate(rows))
    nan_row = history(emulator, e, p, r, 17, 18)[0]
    assert math.isnan(nan_row["grad_norm"])
    raw = post(
        emulator,
        HISTORY_PAGE,
        {"entity": e, "project": p, "run": r, "minStep": 0, "maxStep": 1000, "pageSize": 1000},
    ).text
    assert '\\"grad_norm\\":NaN' in raw and "Infinity" in raw  # bare tokens inside the row strings
    # run 1 starts at step 1000; run 2 has a gap of 5000 steps after row 1250
    e1, p1, r1 = ids(emulator)[1]
    assert history(emulator, e1, p1, r1, 0, 1000) == []
    assert history(emulator, e1, p1, r1, 0, 1001)[0]["_step"] == 1000
    e2, p2, r2 = ids(emulator)[2]
    assert [x["_step"] for x in history(emulator, e2, p2, r2, 1248, 6252)] == [
        1248,
        1249,
        6250,
        6251,
    ]


def test_history_downsampling_is_bounded_and_deterministic(emulator: Any) -> None:
    e, p, r = ids(emulator)[0]
    a = history(emulator, e, p, r, 0, 100, samples=7)
    b = history(emulator, e, p, r, 0, 100, samples=7)
    assert len(a) == 7 and [x["_step"] for x in a] == [x["_step"] for x in b]
    assert a[0]["_step"] == 0 and a[-1]["_step"] == 99
    full = data(
        emulator,
        "query RunFullHistory($project: String!, $entity: String!, $name: String!, $samples: Int) { project(name: $project, entityName: $entity) { run(name: $name) { history(samples: $samples) } } }",
        {"entity": e, "project": p, "name": r, "samples": 500},
    )
    assert len(full["project"]["run"]["history"]) == 500
    for n in range(0, 30):
        for s in range(0, 12):
            picks = list(ServiceModel.friendly().sample_positions(n, s))
            assert len(picks) == min(n, s) and picks == sorted(set(picks))
            if picks and s > 1:
                assert picks[0] == 0 and picks[-1] == n - 1


def test_events_and_parquet_history(emulator: Any, make_emulator: Any) -> None:
    e, p, r = ids(emulator)[1]
    q = 'query($e: String, $p: String!, $r: String!) { project(name: $p, entityName: $e) { run(name: $r) { events(samples: 5) parquetHistory(liveKeys: ["_step"]) { parquetUrls liveData } } } }'
    run = data(emulator, q, {"e": e, "p": p, "r": r})["project"]["run"]
    assert len(run["events"]) == 5 and json.loads(run["events"][0])["_wandb"] is True
    assert run["parquetHistory"] == {"parquetUrls": [], "liveData": [{"_step": 1000}]}
    empty = make_emulator([MemoryRun(RunMeta("e", "p", "empty001"))])
    run = data(empty, q, {"e": "e", "p": "p", "r": "empty001"})["project"]["run"]
    assert run["parquetHistory"]["liveData"] == [] and run["events"] == []


# -- sampledHistory ---------------------------------------------------------------------------


def test_sampled_history_inclusive_all_keys_projection_and_strict_json(emulator: Any) -> None:
    e, p, r = ids(emulator)[0]
    rows = sampled(
        emulator,
        e,
        p,
        r,
        {"keys": ["_step", "loss", "_step"], "minStep": 10, "maxStep": 20, "samples": 100},
    )
    assert [x["_step"] for x in rows] == list(range(10, 21))  # maxStep inclusive
    assert all(set(x) == {"_step", "loss"} for x in rows)
    nan = sampled(
        emulator,
        e,
        p,
        r,
        {"keys": ["grad_norm", "loss_scale"], "minStep": 5, "maxStep": 17, "samples": 100},
    )
    assert nan[0]["loss_scale"] == "Infinity" and nan[-1]["grad_norm"] == "NaN"
    raw = post(
        emulator,
        SAMPLED_PAGE,
        {
            "entity": e,
            "project": p,
            "run": r,
            "spec": json.dumps({"keys": ["grad_norm", "hist"], "samples": 5000}),
        },
    ).text
    strict_json(raw)  # the envelope stays strict JSON
    nested = sampled(
        emulator,
        e,
        p,
        r,
        {"keys": ["train", "train.loss", "hist"], "minStep": 0, "maxStep": 0, "samples": 1},
    )
    truth = emulator.run(e, p, r).row(0)
    assert nested == [
        {"train": truth["train"], "train.loss": truth["train"]["loss"], "hist": truth["hist"]}
    ]
    # all-keys rule with a sparse key (run 1 logs val_loss only on rows i % 10 == 9)
    e1, p1, r1 = ids(emulator)[1]
    sparse = sampled(
        emulator,
        e1,
        p1,
        r1,
        {"keys": ["_step", "val_loss"], "minStep": 1000, "maxStep": 1099, "samples": 1000},
    )
    assert [x["_step"] for x in sparse] == list(range(1009, 1100, 10))
    assert sampled(emulator, e1, p1, r1, {"keys": ["loss", "no_such_key"], "samples": 10}) == []
    down = sampled(emulator, e1, p1, r1, {"keys": ["_step", "loss"], "samples": 9})
    assert len(down) == 9 and down[0]["_step"] == 1000 and down[-1]["_step"] == 3499
    r_bad = post(
        emulator, SAMPLED_PAGE, {"entity": e, "project": p, "run": r, "spec": '{"keys": 3}'}
    )
    assert r_bad.status_code == 200 and "keys" in r_bad.json()["errors"][0]["message"]


# -- runs listing -----------------------------------------------------------------------------


def test_runs_filters_order_pagination(emulator: Any) -> None:
    e, p, _ = ids(emulator)[0]
    all_ids = [r for _, _, r in ids(emulator)]

    def runs(filters: Any = None, order: Any = None, first: int = 50, cursor: Any = None) -> Any:
        v = {
            "entity": e,
            "project": p,
            "filters": json.dumps(filters or {}),
            "order": order,
            "perPage": first,
            "cursor": cursor,
        }
        return data(emulator, RUNS_QUERY, v)["project"]

    proj = runs()
    assert proj["runCount"] == 3 and [x["node"]["name"] for x in proj["runs"]["edges"]] == all_ids
    assert int(proj["internalId"]) >= 1
    assert [x["node"]["name"] for x in runs(order="-created_at")["runs"]["edges"]] == all_ids[::-1]
    assert runs({"config.run_index": {"$gte": 1}})["runCount"] == 2
    assert runs({"config.optimizer.value": "sgd"})["runCount"] == 1
    assert runs({"$or": [{"tags": "group-1"}, {"displayName": {"$regex": "-3$"}}]})["runCount"] == 2
    assert runs({"summary_metrics._step": {"$gt": 3000}})["runCount"] == 2
    assert runs({"state": {"$in": ["running", "failed"]}})["runCount"] == 0
    assert runs({"$and": [{"state": "finished"}, {"name": {"$nin": all_ids[:1]}}]})["runCount"] == 2
    assert runs({"config.nope": {"$exists": False}})["runCount"] == 3
    page1 = runs(first=2)["runs"]
    assert page1["pageInfo"]["hasNextPage"] and len(page1["edges"]) == 2
    page2 = runs(first=2, cursor=page1["pageInfo"]["endCursor"])["runs"]
    assert [x["node"]["name"] for x in page1["edges"] + page2["edges"]] == all_ids
    assert not page2["pageInfo"]["hasNextPage"]
    bad = post(
        emulator, RUNS_QUERY, {"entity": e, "project": p, "filters": '{"state": {"$bogus": 1}}'}
    )
    assert "$bogus" in bad.json()["errors"][0]["message"]


# -- counters and control endpoints -----------------------------------------------------------


def test_counters_are_exact_per_field(make_emulator: Any) -> None:
    emu = make_emulator()
    e, p, r = ids(emu)[0]
    requests.post(emu.base_url + "/_emulator/reset", timeout=5)
    data(emu, RUN_QUERY, {"entity": e, "project": p, "name": r})
    history(emu, e, p, r, 0, 100)
    history(emu, e, p, r, 0, 100)  # cached answer: still counted
    sampled(emu, e, p, r, {"keys": ["_step", "acc"], "minStep": 5, "maxStep": 9, "samples": 10})
    post(emu, "{ viewer { id } }", key="bad-" + "k" * 40)
    c = requests.get(emu.base_url + "/_emulator/counters", timeout=5).json()
    assert c["requests"] == 5 and c["status"] == {"200": 4, "401": 1}
    f = c["by_field"]
    assert f["run"]["requests"] == 1 and f["historyKeys"]["requests"] == 1
    assert f["history"] == {
        "requests": 2,
        "rows": 200,
        "windows": [[0, 100], [0, 100]],
        "keys": [],
        "bytes": f["history"]["bytes"],
    }
    assert f["history"]["bytes"] > 2 * 100 * 100
    assert f["sampledHistory"]["rows"] == 5 and f["sampledHistory"]["windows"] == [[5, 9]]
    assert f["sampledHistory"]["keys"] == ["_step", "acc"]
    assert set(f) == {"run", "historyKeys", "history", "sampledHistory"}
    emu.reset_counters()
    zero_storage = {"heads": 0, "gets": 0, "range_gets": 0, "bytes": 0, "denied": 0, "not_modified": 0}
    assert emu.counters() == {"requests": 0, "by_field": {}, "status": {}, "storage": zero_storage}


def test_append_state_truncate_endpoints(make_emulator: Any) -> None:
    emu = make_emulator()
    e, p, r = ids(emu)[0]
    path = f"{e}/{p}/{r}"
    assert len(history(emu, e, p, r, 0, 10**9)) == 300
    rows_text = '[{"_step": 300, "loss": NaN, "new_key": 1}, {"_step": 305, "loss": 0.5}]'
    body = '{"path": ' + json.dumps(path) + ', "rows": ' + rows_text + "}"
    assert requests.post(emu.base_url + "/_emulator/append", data=body, timeout=5).json() == {
        "ok": True
    }
    tail = history(emu, e, p, r, 299, 10**9)
    assert [x["_step"] for x in tail] == [299, 300, 305] and math.isnan(tail[1]["loss"])
    run = data(emu, RUN_QUERY, {"entity": e, "project": p, "name": r})["project"]["run"]
    assert (
        run["historyKeys"]["lastStep"] == 305
        and run["historyKeys"]["keys"]["new_key"]["typeCounts"][0]["count"] == 1
    )
    bad = requests.post(
        emu.base_url + "/_emulator/append", json={"path": path, "rows": [{"_step": 1}]}, timeout=5
    )
    assert bad.status_code == 400
    assert requests.post(
        emu.base_url + "/_emulator/state", json={"path": path, "state": "running"}, timeout=5
    ).ok
    assert (
        data(emu, RUN_QUERY, {"entity": e, "project": p, "name": r})["project"]["run"]["state"]
        == "running"
    )
    assert requests.post(
        emu.base_url + "/_emulator/truncate", json={"path": path, "max_step": 150}, timeout=5
    ).ok
    assert history(emu, e, p, r, 0, 10**9)[-1]["_step"] == 149
    assert emu.run(e, p, r).history_keys()["lastStep"] == 149
    assert (
        requests.post(
            emu.base_url + "/_emulator/state", json={"path": "x/y/z", "state": "a"}, timeout=5
        ).status_code
        == 404
    )
    # a MemoryRun is appended to in place too
    emu.add_run(MemoryRun(RunMeta("e", "p", "mem00001"), rows=[{"_step": 0, "a": 1.0}]))
    emu.append_rows("e/p/mem00001", [{"_step": 1, "a": 2.0}])
    assert [x["a"] for x in history(emu, "e", "p", "mem00001", 0, 5)] == [1.0, 2.0]


# -- faults -----------------------------------------------------------------------------------


def _outcomes(emu: Any, n: int) -> list[str]:
    out = []
    for _ in range(n):
        try:
            with requests.Session() as s:
                r = s.post(
                    emu.base_url + "/graphql",
                    json={"query": "{ viewer { id } }"},
                    auth=("api", emu.api_key),
                    timeout=5,
                )
                r.json()
                out.append(str(r.status_code))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, ValueError):
            out.append("broken")
    return out


def test_faults_rate_kinds_and_determinism(make_emulator: Any) -> None:
    spec = FaultSpec(rate=0.3, kinds=("429", "500", "503"), seed=5, retry_after=0.01)
    a, b = make_emulator(faults=spec), make_emulator(faults=spec)
    oa, ob = _outcomes(a, 200), _outcomes(b, 200)
    assert oa == ob
    failed = sum(o != "200" for o in oa)
    assert 40 <= failed <= 80, failed
    assert {"429", "500", "503"} <= set(oa)
    c = a.counters()
    assert c["requests"] == 200 and sum(c["status"].values()) == 200
    a.set_faults(rate=1.0, kinds=("429",), retry_after=0.5)
    r = post(a, "{ viewer { id } }")
    assert r.status_code == 429 and r.headers["Retry-After"] == "0.5"
    a.set_faults(rate=1.0, kinds=("reset",))
    assert _outcomes(a, 3) == ["broken"] * 3
    a.set_faults(rate=1.0, kinds=("truncate",))
    assert _outcomes(a, 3) == ["broken"] * 3
    a.set_faults(rate=1.0, kinds=("slow",), slow_seconds=0.05)
    assert _outcomes(a, 2) == ["200", "200"]
    # only_fields: viewer passes, history fails; and the HTTP control endpoint
    r = requests.post(
        a.base_url + "/_emulator/faults",
        json={"rate": 1.0, "kinds": ["500"], "only_fields": ["history"]},
        timeout=5,
    )
    assert r.ok
    e, p, run = ids(a)[0]
    assert post(a, "{ viewer { id } }").status_code == 200
    assert (
        post(
            a,
            HISTORY_PAGE,
            {"entity": e, "project": p, "run": run, "minStep": 0, "maxStep": 5, "pageSize": 5},
        ).status_code
        == 500
    )
    requests.post(a.base_url + "/_emulator/faults", json={}, timeout=5)
    assert _outcomes(a, 5) == ["200"] * 5
    with pytest.raises(ValueError):
        FaultSpec(rate=2.0)
    requests.post(a.base_url + "/_emulator/faults", json={"latency": 0.2}, timeout=5)
    t0 = time.perf_counter()
    assert post(a, "{ viewer { id } }").status_code == 200
    assert time.perf_counter() - t0 >= 0.2
    a.latency = 0.0


# -- synthetic generator ----------------------------------------------------------------------


def test_synthetic_determinism_and_shape() -> None:
    spec = SyntheticSpec.parse("e/p:runs=4,steps=400,keys=24,seed=11")
    a, b = synthetic_runs(spec), synthetic_runs(spec)
    assert [r.meta.run_id for r in a] == [r.meta.run_id for r in b]
    assert all(
        len(r.meta.run_id) == 8
        and r.meta.run_id.isalnum()
        and r.meta.run_id.islower()
        or r.meta.run_id.isdigit()
        for r in a
    )
    assert [r.meta.run_id for r in synthetic_runs("e/p:runs=4,steps=400,keys=24,seed=12")] != [
        r.meta.run_id for r in a
    ]
    for ra, rb in zip(a, b, strict=True):
        window = ra.rows(0, 400)
        assert same(window, rb.rows(0, 400))
        assert all(same(ra.row(i), window[i]) for i in (0, 17, 99, 250, 399))
        assert same(ra.rows(123, 130), window[123:130])  # pure function of the row index
        assert same(ra.history_keys(), history_keys_from_rows(window))
    r0 = a[0].row(0)
    assert len(r0) == 27 and "metric_24" in r0 and isinstance(r0["epoch"], int)
    assert r0["hist"]["_type"] == "histogram" and set(r0["train"]) == {"loss", "acc"}
    assert isinstance(r0["phase"], str) and r0["loss_scale"] == 65536.0
    assert list(a[1].steps()[:2]) == [1000, 1001] and list(a[2].steps()[199:201]) == [199, 5200]
    assert all("val_loss" not in a[1].row(i) for i in range(9)) and "val_loss" in a[1].row(9)
    assert len(synthetic_runs("e/p:runs=1,steps=3,keys=20")[0].row(0)) == 23
    with pytest.raises(ValueError):
        SyntheticSpec.parse("e/p:runs=x")


def test_demo_project() -> None:
    from connector.emulator.demo_runs import demo_runs

    runs = demo_runs()
    assert [(r.meta.entity, r.meta.project) for r in runs] == [("demo", "mnist")] * 3
    assert [r.meta.state for r in runs] == ["finished", "running", "failed"]
    assert [len(r.steps()) for r in runs] == [3000, 2500, 4000]
    assert runs[0].meta.config["dataset"] == "mnist" and runs[0].meta.summary["_step"] == 2999
