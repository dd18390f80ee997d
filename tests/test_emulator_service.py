"""The emulator is at least as unkind as the service: Parquet exports on a storage host with expiring
signed URLs, random downsampling below `samples`, request limits, stale line counts.

The truth is the synthetic generator; the first oracle of the Parquet files is the official SDK
0.31.0, which reads them through its own reader (wandb-core).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
import wandb  # noqa: F401  (a test dependency: its absence must fail, not skip)

from connector.emulator import Emulator, synthetic_runs
from connector.emulator.exports import export_files
from connector.emulator.service import Limits, ServiceModel
from connector.emulator.storage import StorageHost
from tests.compare import flat, row_diff, same_value

SPEC = "t/svc:runs=3,steps=2500,keys=12,seed=7"
RUN_QUERY = (
    "query Q($e: String!, $p: String!, $r: String!) { project(name: $p, entityName: $e) {"
    " run(name: $r) { state historyLineCount %s } } }"
)


def _post(emu: Emulator, query: str, variables: dict[str, Any]) -> requests.Response:
    auth = "Basic " + base64.b64encode(f"api:{emu.api_key}".encode()).decode()
    return requests.post(
        emu.base_url + "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": auth},
        timeout=30,
    )


def _run_field(emu: Emulator, path: str, selection: str) -> Any:
    e, p, r = path.split("/")
    answer = _post(emu, RUN_QUERY % selection, {"e": e, "p": p, "r": r})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["project"]["run"]


def _truth(emu: Emulator, path: str) -> list[dict[str, Any]]:
    data = emu.run(*path.split("/"))
    return data.rows(0, len(data.steps()))


@pytest.fixture(scope="module")
def realistic() -> Any:
    runs = synthetic_runs(SPEC)
    runs[2].meta.state = "running"
    with Emulator(runs, service=ServiceModel(rows_per_file=1000)) as emu:
        yield emu


def test_storage_host_ranges_etag_and_expiry() -> None:
    with StorageHost(url_ttl=1) as host:
        url = host.put("f.bin", b"abcdef")
        head = requests.head(url, timeout=5)
        assert head.status_code == 200 and head.headers["Content-Length"] == "6"
        etag = head.headers["ETag"]
        assert requests.get(url, headers={"Range": "bytes=-2"}, timeout=5).content == b"ef"
        assert requests.get(url, headers={"Range": "bytes=9-"}, timeout=5).status_code == 416
        assert requests.get(url, headers={"If-None-Match": etag}, timeout=5).status_code == 304
        host.put("f.bin", b"changed")
        assert requests.head(url, timeout=5).headers["ETag"] != etag
        forged = url.replace("Signature=", "Signature=0")
        assert requests.get(forged, timeout=5).status_code == 403
        time.sleep(2.2)  # valid 1 to 2 s (whole seconds)
        assert requests.get(url, timeout=5).status_code == 403
        assert host.counters()["denied"] == 2


def test_export_layouts_vary_between_files_and_keep_the_logged_values() -> None:
    runs = synthetic_runs("e/p:runs=2,steps=300,keys=12,seed=3")
    rows = runs[1].rows(0, 300)
    files = export_files(rows, rows_per_file=100, row_group_rows=40)
    assert [f.rows for f in files] == [100, 100, 100]
    tables = [pq.read_table(io.BytesIO(f.data)) for f in files]
    assert pa.types.is_struct(tables[0].schema.field("train").type)  # nested as a struct
    assert "train.loss" in tables[1].column_names and "train" not in tables[1].column_names
    assert pa.types.is_struct(tables[0].schema.field("hist").type)  # media as a struct
    assert tables[0].schema.field("_step").type == pa.int64()
    assert pq.ParquetFile(io.BytesIO(files[0].data)).metadata.num_row_groups == 3
    # a key logged as a number and as a string: JSON text in a binary column
    mixed = export_files([{"_step": 0, "m": 1.5}, {"_step": 1, "m": "x"}, {"_step": 2}])
    column = pq.read_table(io.BytesIO(mixed[0].data)).column("m")
    assert column.type == pa.binary() and column.to_pylist() == [b"1.5", b'"x"', None]
    # every value survives: steps and numbers (NaN, +-inf) of the plain columns
    flat = tables[1].to_pylist()
    for got, want in zip(flat, rows[100:200], strict=True):
        assert got["_step"] == want["_step"]
        assert same_value(got["grad_norm"], want["grad_norm"])
        assert same_value(got["train.loss"], want["train"]["loss"])


def test_parquet_history_answers_urls_and_the_live_boundary(realistic: Emulator) -> None:
    finished, _, running = realistic.paths()
    done = _run_field(realistic, finished, 'parquetHistory(liveKeys: ["_step"]) { parquetUrls liveData }')
    assert done["parquetHistory"]["liveData"] == []
    assert len(done["parquetHistory"]["parquetUrls"]) == 3  # 1000 + 1000 + 500 rows
    live = _run_field(realistic, running, 'parquetHistory(liveKeys: ["_step"]) { parquetUrls liveData }')
    truth = _truth(realistic, running)
    first_live = live["parquetHistory"]["liveData"][0]["_step"]
    exported = [
        step
        for url in live["parquetHistory"]["parquetUrls"]
        for step in pq.read_table(io.BytesIO(requests.get(url, timeout=10).content)).column("_step").to_pylist()
    ]
    steps = [r["_step"] for r in truth]
    assert exported == [s for s in steps if s < first_live] and exported and first_live in steps
    assert live["state"] == "running" and live["historyLineCount"] < len(truth)  # stale
    assert done["historyLineCount"] == 2500
    assert all("?" in url and "Signature=" in url for url in done["parquetHistory"]["parquetUrls"])


def test_random_sampling_returns_fewer_rows_than_samples(realistic: Emulator) -> None:
    path = realistic.paths()[0]
    sizes = set()
    for lo in range(0, 2000, 200):
        run = _run_field(realistic, path, f"history(minStep: {lo}, maxStep: {lo + 400}, samples: 100)")
        rows = [json.loads(text) for text in run["history"]]
        steps = [r["_step"] for r in rows]
        assert steps == sorted(steps) and all(lo <= s < lo + 400 for s in steps)
        sizes.add(len(rows))
    assert max(sizes) <= 100 and min(sizes) < 100  # below `samples`, and not always the same


def test_limits_are_refused_with_400(realistic: Emulator) -> None:
    e, p, r = realistic.paths()[0].split("/")
    too_many = _post(realistic, RUN_QUERY % "history(minStep: 0, maxStep: 10, samples: 10001)", {"e": e, "p": p, "r": r})
    assert too_many.status_code == 400
    assert "samples must be at most 10000" in too_many.json()["errors"][0]["message"]
    spec = json.dumps({"keys": ["loss"], "samples": 10})
    two = _post(
        realistic,
        RUN_QUERY % "sampledHistory(specs: [$s, $s])",
        {"e": e, "p": p, "r": r, "s": spec},
    )
    assert two.status_code in (400,), two.text
    runs = _post(
        realistic,
        "query R($e: String!, $p: String!) { project(name: $p, entityName: $e) { runs(first: 1001) { edges { node { name } } } } }",
        {"e": e, "p": p},
    )
    assert runs.status_code == 400 and "first must be at most 1000" in runs.text
    assert Limits().max_specs == 1


def test_the_official_sdk_reads_the_parquet_exports(realistic: Emulator, sdk_env: dict[str, str]) -> None:
    """The first oracle: wandb-core's own Parquet reader gets the generator's rows from our files."""
    script = r"""
import json, sys, wandb
base, key, *paths = sys.argv[1:]
api = wandb.Api(api_key=key, overrides={"base_url": base}, timeout=60)
out = {p: list(api.run(p).scan_history()) for p in paths}
sys.stdout.write(json.dumps(out))
"""
    realistic.reset_counters()
    # The finished runs: on the running one, 0.31.0 asks HistoryPage for the whole page that
    # straddles the live boundary and returns the exported rows of that page twice (its known bug).
    paths = realistic.paths()[:2]
    proc = subprocess.run(
        [sys.executable, "-c", script, realistic.base_url, realistic.api_key, *paths],
        env=sdk_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    for path in paths:
        truth = _truth(realistic, path)
        got = out[path]
        assert [r["_step"] for r in got] == [r["_step"] for r in truth]
        for a, b in zip(got, truth, strict=True):
            # its parquet rows fill None for keys not logged, and keep dotted names of flat files
            assert same_value(flat(a), flat(b)), (path, a["_step"], row_diff(flat(a), flat(b)))
    counters = realistic.counters()
    assert counters["storage"]["gets"] >= 3 * 2  # the files were read from the storage host
    assert "history" not in counters["by_field"]  # every row came from the files
    for request in realistic.storage.requests:
        assert "Authorization" not in request["headers"]
        assert realistic.api_key not in json.dumps(request)
