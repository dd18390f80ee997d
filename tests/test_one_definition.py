"""One definition per concept: non-finite values, the default `Api`, defaults, `Api`'s public seams,
the per-chunk export loop, the long layout.

Each behaviour is pinned against an independent truth (literal expectations, a real DuckDB file written
by the exporter, the raw bytes of the emulator's answers); a few guards read the package's source with
`ast`, so that a second copy of a concept cannot come back unnoticed.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import struct
import sys
import types
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from connector import Api
from connector.core.rundata import MemoryRun, RunMeta
from connector.core.values import NONFINITE, strict_json_value

PACKAGE = Path(__file__).resolve().parent.parent / "connector"
NAN, INF = float("nan"), float("inf")


def sources() -> dict[str, ast.Module]:
    return {str(p.relative_to(PACKAGE.parent)): ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}


def docstring_nodes(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (also nested)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# -- 1. non-finite values ---------------------------------------------------------------------------


def test_strict_json_round_trip_of_nested_non_finite_values() -> None:
    value = {"a": [NAN, {"b": INF, "c": [-INF, 1.5]}], "t": (NAN, 2), "n": None, "s": "text", "x": 0.25}
    text = json.dumps(strict_json_value(value), allow_nan=False)  # strict JSON: no bare tokens
    assert json.loads(text) == {
        "a": ["NaN", {"b": "Infinity", "c": ["-Infinity", 1.5]}], "t": ["NaN", 2], "n": None, "s": "text", "x": 0.25,
    }  # fmt: skip

    def back(v: Any) -> Any:
        if isinstance(v, str):
            return NONFINITE.get(v, v)
        if isinstance(v, dict):
            return {k: back(x) for k, x in v.items()}
        if isinstance(v, list):
            return [back(x) for x in v]
        return v

    assert same(back(json.loads(text)), {**value, "t": [NAN, 2]})


def test_every_layer_spells_non_finite_values_alike(make_emulator: Any, tmp_path: Path) -> None:
    from connector.core.arrow import fit_value
    from connector.export import export
    from connector.local.records import _typed_json
    from connector.local.wire import I64
    from connector.remote.queries import document

    # local .wandb typed doubles: W&B's bare tokens
    def double(x: float) -> bytes | None:
        return _typed_json(6, I64, int.from_bytes(struct.pack("<d", x), "little"))

    assert [double(x) for x in (NAN, INF, -INF, 1.5)] == [b"NaN", b"Infinity", b"-Infinity", b"1.5"]
    # the Arrow policy reads the strings back as floats
    assert [fit_value("float", t)[1] for t in ("Infinity", "-Infinity")] == [INF, -INF]
    assert math.isnan(fit_value("float", "NaN")[1])

    rows = [{"_step": 0, "h": {"_type": "histogram", "values": [NAN, INF], "bins": [-INF, 0.0, 1.0]}, "x": -INF}]
    meta = RunMeta("e", "p", "r", config={"lr": NAN, "deep": {"v": [INF]}}, summary={"best": -INF})
    emu = make_emulator([MemoryRun(meta, rows=rows)])
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    # the emulator's sampledHistory envelope is strict JSON: tokens as strings, also nested
    spec = json.dumps({"keys": ["_step", "h", "x"], "samples": 10})
    data, raw = api.transport.execute_raw(
        document("sampled_history"), {"entity": "e", "project": "p", "name": "r", "specs": [spec]}
    )
    json.loads(raw, parse_constant=lambda token: pytest.fail(f"bare {token} in a strict JSON answer"))
    assert data["project"]["run"]["sampledHistory"] == [[
        {"_step": 0, "h": {"_type": "histogram", "values": ["NaN", "Infinity"], "bins": ["-Infinity", 0.0, 1.0]},
         "x": "-Infinity"},
    ]]  # fmt: skip
    # the exporter's runs table: config and summary as strict JSON
    db = tmp_path / "h.duckdb"
    assert export(["e/p/r"], str(db), api=api).ok
    with duckdb.connect(str(db)) as con:
        config, summary = con.sql("SELECT config, summary FROM runs").fetchall()[0]
    assert json.loads(config) == {"deep": {"v": ["Infinity"]}, "lr": "NaN"}
    assert json.loads(summary)["best"] == "-Infinity"


def test_the_non_finite_tokens_are_spelled_only_in_core_values() -> None:
    tokens = {"NaN", "Infinity", "-Infinity", b"NaN", b"Infinity", b"-Infinity"}
    found = []
    for name, tree in sources().items():
        if name == "connector/core/values.py":
            continue
        docs = docstring_nodes(tree)
        found += [
            f"{name}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in tokens and id(node) not in docs
        ]  # fmt: skip
    assert found == [], "use connector.core.values.NONFINITE / nonfinite_token / strict_json_value"


# -- 2. the default Api, 4. Api's public seams -------------------------------------------------------


def test_default_api_and_lazy_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.api import LazyApi, default_api
    from connector.remote.transport import RetryPolicy

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    given = Api(api_key="g" * 40, base_url="http://127.0.0.1:8")
    assert default_api(given) is given
    made = default_api(retry=RetryPolicy(deadline=7.0))
    assert made.settings.base_url == "http://127.0.0.1:9" and made.transport.retry.deadline == 7.0
    lazy = LazyApi(adapt=lambda a: a.with_transport(a.transport.with_gate(None)))
    assert not lazy.made
    first = lazy()
    assert lazy.made and lazy() is first and first.settings.base_url == "http://127.0.0.1:9"


def test_limited_api_gates_a_copy_and_leaves_the_given_api_alone() -> None:
    from connector.export.limiter import AimdLimiter
    from connector.export.runner import limited_api
    from connector.remote.transport import RetryPolicy

    given = Api(api_key="g" * 40, base_url="http://127.0.0.1:8")
    transport, limiter, retry = given.transport, AimdLimiter(2), RetryPolicy(deadline=3.0)
    factory = limited_api(given, limiter, retry)
    gated = factory()
    assert factory() is gated and gated is not given
    assert given.transport is transport and transport.gate is None and transport.retry is not retry
    assert gated.transport.gate is limiter and gated.transport.retry is retry
    assert gated.settings is given.settings


def test_api_ref_is_public() -> None:
    api = Api(api_key="k" * 40, base_url="http://127.0.0.1:9", entity="me", project="proj")
    assert (api.ref("r1").entity, api.ref("r1").project, api.ref("r1").run_id) == ("me", "proj", "r1")
    assert api.ref("https://wandb.ai/e/p/runs/abc").path == "e/p/abc"


def test_no_second_way_to_make_an_api_or_swap_its_transport() -> None:
    bad = []
    for name, tree in sources().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("Api", "_Api")
                and not node.args
                and not node.keywords
                and name != "connector/api.py"
            ):
                bad.append(f"{name}:{node.lineno}: Api() (use connector.api.default_api)")
            if isinstance(node, ast.Attribute) and node.attr == "_ref":
                bad.append(f"{name}:{node.lineno}: ._ref (use Api.ref)")
            if name != "connector/api.py" and isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "transport" and not (isinstance(t.value, ast.Name) and t.value.id == "self")
                for t in node.targets
            ):  # fmt: skip
                bad.append(f"{name}:{node.lineno}: .transport = (use Api.with_transport)")
    assert bad == []


# -- 3. defaults ---------------------------------------------------------------------------------------


def _export_args(*argv: str) -> Any:
    import argparse

    from connector.cli.export import add_parser

    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    return sub.choices["export"].parse_args(["e/p", "--to", "x.duckdb", *argv])


def test_export_cli_defaults_are_export_options_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.cli.export import _options
    from connector.export.plan import ExportOptions

    fields = {f.name: f for f in dataclasses.fields(ExportOptions)}
    options = _options(_export_args())
    assert options == {name: fields[name].default if name not in ("run_states", "run_ids") else () for name in options}
    assert ExportOptions(**options) == ExportOptions()
    # one definition: a changed ExportOptions default is the command line's default too
    monkeypatch.setattr(fields["running_lag"], "default", 7)
    monkeypatch.setattr(fields["page_size"], "default", 123)
    options = _options(_export_args())
    assert (options["running_lag"], options["page_size"]) == (7, 123)
    assert _options(_export_args("--page-size", "5"))["page_size"] == 5


def test_sub_commands_share_one_timeout_default() -> None:
    import argparse

    from connector.cli import export as export_cli
    from connector.cli import sql as sql_cli
    from connector.cli.options import API_TIMEOUT

    sub = argparse.ArgumentParser().add_subparsers()
    export_cli.add_parser(sub)
    sql_cli.add_parser(sub)
    assert sub.choices["export"].parse_args(["e/p", "--to", "x"]).timeout == API_TIMEOUT
    assert sub.choices["sql"].parse_args(["SELECT 1"]).timeout == API_TIMEOUT


def test_page_size_default_is_defined_once() -> None:
    literal = []
    for name, tree in sources().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == "page_size"
                and isinstance(node.value, ast.Constant)
            ):
                literal.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                positional = args.posonlyargs + args.args
                pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True))
                pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
                literal += [f"{name}:{node.lineno}" for a, d in pairs if a.arg == "page_size" and isinstance(d, ast.Constant)]
    assert literal == [], "use connector.core.scan.DEFAULT_PAGE_SIZE"


# -- 5. one chunk reader: the exporter and the dlt route -----------------------------------------------


@pytest.fixture
def fake_dlt(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A stand-in for the `dlt` package: `resource` returns the generator function, state is a dict."""
    state: dict[str, Any] = {}
    module = types.ModuleType("dlt")

    def resource(**hints: Any) -> Any:
        def wrap(fn: Any) -> Any:
            fn.hints = hints
            return fn

        return wrap

    module.resource = resource  # type: ignore[attr-defined]
    module.current = types.SimpleNamespace(resource_state=lambda: state)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dlt", module)
    return state


def test_dlt_route_yields_the_exporters_chunks_and_states(fake_dlt: dict[str, Any], tmp_path: Path) -> None:
    from connector.export import export
    from connector.export.dlt import history_resource

    rows = [{"_step": i, "x": i / 4, "tag": f"t{i}", "entity": float(i)} for i in range(25)]
    run = MemoryRun(RunMeta("e", "p", "r"), rows=rows)
    resource = history_resource([run], chunk_steps=10)
    assert resource.hints["primary_key"] == ("entity", "project", "run_id", "_step")
    tables = list(resource())
    assert [t.num_rows for t in tables] == [10, 10, 5]

    db, checkpoint = tmp_path / "h.duckdb", tmp_path / "state.json"
    assert export([run], str(db), chunk_steps=10, checkpoint=str(checkpoint)).rows == 25
    with duckdb.connect(str(db)) as con:
        exported = con.sql("SELECT * FROM history ORDER BY _step").to_arrow_table()
    dlt_rows = pa.concat_tables(tables).select(exported.column_names).to_pylist()
    assert dlt_rows == exported.to_pylist()  # the column named for the key `entity` included

    (state,) = json.loads(checkpoint.read_text())["states"]
    assert fake_dlt["watermarks"] == {"e/p/r|*": state}  # the same StreamState, in the same form
    assert (state["watermark"], state["min_step"], state["chunk_steps"]) == (24, 0, 10)
    assert list(resource()) == []  # nothing new


def test_dlt_route_resumes_from_a_state_saved_before_the_full_form(fake_dlt: dict[str, Any]) -> None:
    from connector.export.dlt import history_resource

    run = MemoryRun(RunMeta("e", "p", "r"), rows=[{"_step": i, "x": 1.0} for i in range(25)])
    fake_dlt["watermarks"] = {
        "e/p/r|*": {"watermark": 9, "min_step": 0, "last_step": 24, "line_count": 25, "run_state": "finished"}
    }
    tables = list(history_resource([run], chunk_steps=10)())
    assert [t.column("_step").to_pylist() for t in tables] == [list(range(10, 20)), list(range(20, 25))]
    assert fake_dlt["watermarks"]["e/p/r|*"]["watermark"] == 24


# -- 6. one long layout ---------------------------------------------------------------------------------


LONG_ROWS = [
    {"_step": 0, "f": 1.5, "i": 3, "b": True, "s": "hi", "m": 1.0, "ünï λ": "u",
     "h": {"_type": "histogram", "values": [1, NAN]}, "l": [1, "a"], "x": {"y": INF}},
    {"_step": 1, "f": NAN, "b": False, "s": "", "m": "str", "l": [], "a.b": 1.0, "a": {"b": 2.0}},
    {"_step": 2, "f": -INF, "m": True, "e": {}, "q'k": None},
]  # fmt: skip
#: The long rows of LONG_ROWS, written out by hand: ``(step, key, value_number, value_bool, value_text)``.
LONG_TRUTH = [
    (0, "b", None, True, None), (0, "f", 1.5, None, None),
    (0, "h", None, None, '{"_type":"histogram","values":[1,NaN]}'), (0, "i", 3.0, None, None),
    (0, "l", None, None, '[1,"a"]'), (0, "m", None, None, "1.0"), (0, "s", None, None, "hi"),
    (0, "x.y", INF, None, None), (0, "ünï λ", None, None, "u"),
    (1, "a.b", 1.0, None, None), (1, "b", None, False, None), (1, "f", NAN, None, None), (1, "l", None, None, "[]"),
    (1, "m", None, None, '"str"'), (1, "s", None, None, ""),
    (2, "e", None, None, "{}"), (2, "f", -INF, None, None), (2, "m", None, None, "true"),
]  # fmt: skip


def test_sql_long_rows_are_the_exported_history_long_rows(make_emulator: Any, tmp_path: Path) -> None:
    from connector.engines.duckdb import register, unregister
    from connector.export import export

    emu = make_emulator([MemoryRun(RunMeta("e", "p", "r"), rows=LONG_ROWS)])
    api = Api(api_key=emu.api_key, base_url=emu.base_url)
    columns = "entity, project, run_id, _step, key, value_number, value_bool, value_text"
    db = tmp_path / "long.duckdb"
    assert export(["e/p/r"], str(db), api=api, layout="long").ok
    with duckdb.connect(str(db)) as con:
        exported = con.sql(f"SELECT {columns} FROM history_long ORDER BY _step, key").fetchall()
    con = register(duckdb.connect(), api)
    try:
        described = [name for name, *_ in con.sql("DESCRIBE SELECT * FROM wandb_history('e/p/r')").fetchall()]
        assert described == [c.strip() for c in columns.split(",")]
        sql = con.sql(f"SELECT {columns} FROM wandb_history('e/p/r') WHERE key <> '_step' ORDER BY _step, key").fetchall()
        markers = con.sql("SELECT _step, value_number, value_bool, value_text FROM wandb_history('e/p/r') "
                          "WHERE key = '_step' ORDER BY _step").fetchall()  # fmt: skip
    finally:
        unregister(con)
        con.close()
    assert same(sql, exported)
    assert same([row[3:] for row in sql], LONG_TRUTH)
    assert markers == [(0, None, None, None), (1, None, None, None), (2, None, None, None)]


def test_core_long_is_the_exporters_history_long() -> None:
    from connector.core.arrow import SchemaPlan
    from connector.core.long import to_long
    from connector.core.values import history_keys_from_rows
    from connector.export.tables import LONG_SCHEMA
    from connector.export.tables import to_long as export_long

    plan = SchemaPlan.from_history_keys(history_keys_from_rows(LONG_ROWS))
    wide = pa.Table.from_batches([plan.to_batch(LONG_ROWS)])
    got = [tuple(r.values()) for r in to_long(wide).to_pylist()]
    assert same(got, LONG_TRUTH)
    with_run = wide.add_column(0, "entity", pa.array(["e"] * 3)).add_column(1, "project", pa.array(["p"] * 3))
    with_run = with_run.add_column(2, "run_id", pa.array(["r"] * 3))
    exported = export_long(with_run)
    assert exported.schema == LONG_SCHEMA
    assert same([tuple(r.values())[3:] for r in exported.to_pylist()], LONG_TRUTH)
