"""GraphQL resolvers: the objects graphql-core walks to answer the W&B API subset.

graphql-core's default resolver reads attributes, and calls them with ``(info, **args)`` when they are
methods, so each GraphQL type is a small Python class here.

Semantics (see the package docstring for the whole contract):

* ``history(minStep, maxStep, samples)``: rows with ``minStep <= _step < maxStep`` (maxStep EXCLUSIVE,
  both optional), ordered by ``_step``, each a JSON string with bare ``NaN``/``Infinity``/``-Infinity``;
  downsampled to ``samples`` rows when more match (``samples`` absent or null: no downsampling).
* ``sampledHistory(specs)``: per spec ``{"keys", "samples", "minStep"?, "maxStep"?}`` the rows with
  ``minStep <= _step <= maxStep`` (maxStep INCLUSIVE) that hold every key (a key listed twice counts
  once; a key whose value is null counts as absent), projected to the keys, as JSON objects whose
  non-finite floats are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (the envelope must stay
  strict JSON). A key names a top-level key and returns its whole value (a nested dict or a media
  dict included); a key that is not top-level but is a dotted path (``"train.loss"``) through nested
  plain dicts addresses that leaf and returns it under the dotted name, as a flat key.
* Downsampling, request limits, stale ``historyLineCount`` and Parquet exports follow the
  emulator's `ServiceModel` (`connector.emulator.service`): by default a random subset that may be
  smaller than ``samples``; with ``sampling="even"`` the rows at ``round(j * (n - 1) / (samples - 1))``.
* ``parquetHistory(liveKeys)``: signed URLs of the run's exported Parquet files on the storage host
  and ``liveData: [{"_step": <first live step>}]`` (``[]`` when every row is exported); with exports
  off, ``{"parquetUrls": [], "liveData": [{"_step": <first step>}]}`` (``liveData: []`` for an empty
  run), so every page of wandb-core's scan goes through ``history``.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import FieldNode, FragmentSpreadNode, GraphQLResolveInfo, InlineFragmentNode

from ..core.filters import FilterError, matches, sort_runs
from ..core.values import strict_json_value
from . import run_files
from .exports import ExportShelf
from .service import ServiceModel
from .store import ServedRun, Store, encode_row

HEAVY_RUN_FIELDS = (
    "history", "events", "sampledHistory", "parquetHistory", "historyKeys",
    "files", "fileCount", "outputArtifacts", "inputArtifacts",
)  # fmt: skip


class SpecError(ValueError):
    """A malformed ``sampledHistory`` spec or argument (answered as a GraphQL error)."""


@dataclass
class Counted:
    """What one request touched: per counted field, requests, rows, windows and keys."""

    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    volatile: bool = False
    """True when the answer must not be replayed from the answer cache (it holds signed URLs)."""

    def add(
        self,
        name: str,
        *,
        rows: int = 0,
        window: list[Any] | None = None,
        keys: Iterable[str] = (),
    ) -> None:
        f = self.fields.setdefault(name, {"requests": 0, "rows": 0, "windows": [], "keys": set()})
        f["requests"] += 1
        f["rows"] += rows
        if window is not None:
            f["windows"].append(window)
        f["keys"].update(keys)


@dataclass
class Context:
    """Per-request context handed to resolvers."""

    store: Store
    viewer_entity: str
    counted: Counted = field(default_factory=Counted)
    service: ServiceModel = field(default_factory=ServiceModel.friendly)
    exports: ExportShelf | None = None
    base_url: str = ""
    """The emulator's address (file URLs point there)."""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


_ABSENT = object()


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    if key in row:
        return row[key]
    if "." in key:
        node: Any = row
        for part in key.split("."):
            if isinstance(node, Mapping) and "_type" not in node and part in node:
                node = node[part]
            else:
                return _ABSENT
        return node
    return _ABSENT


def selected_fields(info: GraphQLResolveInfo) -> set[str]:
    """Names of the fields selected under the current field (fragments expanded)."""
    out: set[str] = set()

    def walk(selection_set: Any) -> None:
        if selection_set is None:
            return
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                out.add(sel.name.value)
            elif isinstance(sel, InlineFragmentNode):
                walk(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode):
                frag = info.fragments.get(sel.name.value)
                if frag is not None:
                    walk(frag.selection_set)

    for node in info.field_nodes:
        walk(node.selection_set)
    return out


def _int_arg(name: str, v: Any) -> int | None:
    if v is None:
        return None
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float)
        or (isinstance(v, float) and not v.is_integer())
    ):
        raise SpecError(f"{name} must be an integer, got {v!r}")
    return int(v)


class RunObj:
    """GraphQL ``Run``."""

    def __init__(self, served: ServedRun, project_number: int) -> None:
        self._r = served
        self._m = served.meta
        self._pn = project_number

    # metadata -------------------------------------------------------------------------------
    def id(self, info: GraphQLResolveInfo) -> str:
        return b64(f"Run:v1:{self._m.run_id}:{self._m.project}:{self._m.entity}")

    def projectId(self, info: GraphQLResolveInfo) -> str:  # noqa: N802
        return str(self._pn)

    def name(self, info: GraphQLResolveInfo) -> str:
        return self._m.run_id

    def displayName(self, info: GraphQLResolveInfo) -> str:  # noqa: N802
        return self._m.display_name or self._m.run_id

    def tags(self, info: GraphQLResolveInfo) -> list[str]:
        return list(self._m.tags)

    def state(self, info: GraphQLResolveInfo) -> str:
        return self._m.state

    def config(self, info: GraphQLResolveInfo) -> str:
        wrapped = {k: {"value": v, "desc": None} for k, v in self._m.config.items()}
        wrapped.setdefault("_wandb", {"value": {}})
        return json.dumps(wrapped)

    def group(self, info: GraphQLResolveInfo) -> str | None:
        return self._m.group

    def jobType(self, info: GraphQLResolveInfo) -> str | None:  # noqa: N802
        return self._m.job_type

    def createdAt(self, info: GraphQLResolveInfo) -> str:  # noqa: N802
        return self._m.created_at

    def heartbeatAt(self, info: GraphQLResolveInfo) -> str:  # noqa: N802
        return self._m.heartbeat_at or self._m.created_at

    def updatedAt(self, info: GraphQLResolveInfo) -> str:  # noqa: N802
        return self._m.heartbeat_at or self._m.created_at

    def notes(self, info: GraphQLResolveInfo) -> str | None:
        return self._m.notes

    def readOnly(self, info: GraphQLResolveInfo) -> bool:  # noqa: N802
        return False

    def systemMetrics(self, info: GraphQLResolveInfo) -> str:  # noqa: N802
        return "{}"

    def summaryMetrics(self, info: GraphQLResolveInfo) -> str:  # noqa: N802
        return json.dumps(self._m.summary)

    def historyLineCount(self, info: GraphQLResolveInfo) -> int:  # noqa: N802
        return info.context.service.line_count(len(self._r.steps()), self._m.state)

    def user(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        name = self._m.username
        return {"id": b64(f"User:{name}"), "name": name, "username": name, "entity": self._m.entity}

    # history ------------------------------------------------------------------------------
    def historyKeys(self, info: GraphQLResolveInfo) -> Any:  # noqa: N802
        info.context.counted.add("historyKeys")
        return self._r.data.history_keys()

    def history(
        self,
        info: GraphQLResolveInfo,
        minStep: int | None = None,  # noqa: N803
        maxStep: int | None = None,  # noqa: N803
        samples: int | None = None,
    ) -> list[Any]:
        service: ServiceModel = info.context.service
        if service.limits is not None:
            service.limits.check_samples("history", samples)
        i0, i1 = self._r.window(minStep, maxStep)
        picks = [i0 + j for j in service.sample_positions(i1 - i0, samples, self._r.path, minStep, maxStep)]
        info.context.counted.add("history", rows=len(picks), window=[minStep, maxStep])
        if not picks:
            return []
        return [orjson.Fragment(b",".join(self._r.encoded(picks)))]

    def events(self, info: GraphQLResolveInfo, samples: int | None = None) -> list[Any]:
        service: ServiceModel = info.context.service
        if service.limits is not None:
            service.limits.check_samples("events", samples)
        rows = self._r.data.events()
        picks = service.sample_positions(len(rows), samples, self._r.path, "events")
        info.context.counted.add("events", rows=len(picks))
        if not picks:
            return []
        return [orjson.Fragment(b",".join(encode_row(rows[j]) for j in picks))]

    def sampledHistory(self, info: GraphQLResolveInfo, specs: list[Any]) -> list[Any]:  # noqa: N802
        service: ServiceModel = info.context.service
        if service.limits is not None:
            service.limits.check_specs(len(specs))
        out = []
        for raw in specs:
            spec = _parse_spec(raw)
            if service.limits is not None:
                service.limits.check_samples("sampledHistory", spec["samples"])
            keys = list(dict.fromkeys(spec["keys"]))
            lo, hi = spec.get("minStep"), spec.get("maxStep")
            i0, i1 = self._r.window(lo, None if hi is None else hi + 1)
            top = {k.split(".", 1)[0] for k in keys} | set(keys)
            rows = self._r.rows(range(i0, i1), keys=top) if i1 > i0 else []
            kept = []
            for row in rows:
                proj = {}
                for k in keys:
                    v = _lookup(row, k)
                    if v is _ABSENT or v is None:
                        break
                    proj[k] = strict_json_value(v)
                else:
                    kept.append(proj)
            positions = service.sample_positions(len(kept), spec["samples"], self._r.path, keys, lo, hi)
            kept = [kept[j] for j in positions]
            info.context.counted.add("sampledHistory", rows=len(kept), window=[lo, hi], keys=keys)
            out.append(kept)
        return out

    def parquetHistory(self, info: GraphQLResolveInfo, liveKeys: list[str]) -> dict[str, Any]:  # noqa: N802,N803
        ctx: Context = info.context
        ctx.counted.add("parquetHistory", keys=liveKeys)
        steps = self._r.steps()
        boundary = ctx.service.export_boundary(len(steps), self._m.state)
        if ctx.exports is None or boundary == 0:
            return {"parquetUrls": [], "liveData": [{"_step": steps[0]}] if len(steps) else []}
        ctx.counted.volatile = True
        return ctx.exports.answer(self._r, boundary, ctx.service.rows_per_file)


    # files and artifacts (connector.emulator.run_files) ------------------------------------------
    def fileCount(self, info: GraphQLResolveInfo) -> int:  # noqa: N802
        info.context.counted.add("fileCount")
        return len(run_files.run_files(self._m, len(self._r.steps())))

    def files(
        self,
        info: GraphQLResolveInfo,
        names: list[str | None] | None = None,
        after: str | None = None,
        first: int | None = None,
        pattern: str | None = None,
    ) -> dict[str, Any]:
        ctx: Context = info.context
        chosen = run_files.run_files(self._m, len(self._r.steps()))
        if names:
            chosen = [f for f in chosen if f.name in names]
        elif pattern is not None:
            chosen = [f for f in chosen if run_files.like(pattern, f.name)]
        got, start = run_files.page(chosen, lambda f: f.name, after, first)
        ctx.counted.add("files", rows=len(got))
        m = self._m
        edges = []
        for f in got:
            where = "/".join(urllib.parse.quote(p, safe="") for p in (m.entity, m.project, m.run_id, f.name))
            node = {
                "id": b64(f"File:{m.entity}/{m.project}/{m.run_id}/{f.name}"),
                "name": f.name,
                "url": f"{ctx.base_url}/files/{where}",
                "directUrl": f"{ctx.base_url}/storage/{where}",
                "sizeBytes": f.size,
                "mimetype": f.mimetype,
                "updatedAt": f.updated_at,
                "md5": f.md5,
            }
            edges.append({"node": node, "cursor": run_files.cursor(f.name)})
        return _connection(edges, start=start, more=start + len(got) < len(chosen), total=None)

    def outputArtifacts(  # noqa: N802
        self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None
    ) -> dict[str, Any]:
        return self._artifacts(info, "outputArtifacts", run_files.logged_artifacts(self._m, self._r.steps()), after, first)

    def inputArtifacts(  # noqa: N802
        self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None
    ) -> dict[str, Any]:
        return self._artifacts(info, "inputArtifacts", run_files.used_artifacts(self._m), after, first)

    def _artifacts(
        self,
        info: GraphQLResolveInfo,
        name: str,
        arts: list[run_files.SyntheticArtifact],
        after: str | None,
        first: int | None,
    ) -> dict[str, Any]:
        ctx: Context = info.context
        got, start = run_files.page(arts, lambda a: a.id, after, first)
        ctx.counted.add(name, rows=len(got))
        edges = []
        for art in got:
            number = ctx.store.projects.get((art.entity, art.project), self._pn)
            project = ProjectObj(ctx.store, art.entity, art.project, number)
            edges.append({"node": run_files.artifact_node(art, project), "cursor": run_files.cursor(art.id)})
        return _connection(edges, start=start, more=start + len(got) < len(arts), total=len(arts))


def _connection(edges: list[dict[str, Any]], *, start: int, more: bool, total: int | None) -> dict[str, Any]:
    """A relay connection: `edges`, their `pageInfo` and, when given, `totalCount`."""
    out: dict[str, Any] = {
        "edges": edges,
        "pageInfo": {
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
            "hasNextPage": more,
            "hasPreviousPage": start > 0,
        },
    }
    if total is not None:
        out["totalCount"] = total
    return out


def _parse_spec(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            spec = json.loads(raw)
        except ValueError as exc:
            raise SpecError(f"sampledHistory spec is not JSON: {raw[:200]!r}") from exc
    else:
        spec = raw
    if not isinstance(spec, dict):
        raise SpecError(f"sampledHistory spec must be a JSON object, got {raw!r}")
    keys = spec.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise SpecError(f"sampledHistory spec needs a non-empty list of string keys, got {keys!r}")
    samples = _int_arg("samples", spec.get("samples"))
    if samples is not None and samples < 0:
        raise SpecError(f"samples must be >= 0, got {samples}")
    return {
        "keys": keys,
        "samples": samples,
        "minStep": _int_arg("minStep", spec.get("minStep")),
        "maxStep": _int_arg("maxStep", spec.get("maxStep")),
    }


class ProjectObj:
    """GraphQL ``Project``."""

    def __init__(self, store: Store, entity: str, project: str, number: int) -> None:
        self._s = store
        self._e = entity
        self.name = project
        self.entityName = entity  # noqa: N815
        self._n = number
        self.readOnly = False  # noqa: N815

    def id(self, info: GraphQLResolveInfo) -> str:
        return b64(f"Project:v1:{self.name}:{self._e}")

    def internalId(self, info: GraphQLResolveInfo) -> str:  # noqa: N802
        return str(self._n)

    def entity(self, info: GraphQLResolveInfo) -> dict[str, str]:
        return {"name": self._e}

    def _filtered(self, filters: Any) -> list[ServedRun]:
        flt: Any = filters
        if isinstance(filters, str):
            try:
                flt = json.loads(filters) if filters.strip() else None
            except ValueError as exc:
                raise FilterError(f"run filters are not JSON: {filters[:200]!r}") from exc
        return [r for r in self._s.in_project(self._e, self.name) if matches(r.meta, flt)]

    def runCount(self, info: GraphQLResolveInfo, filters: Any = None) -> int:  # noqa: N802
        info.context.counted.add("runCount")
        return len(self._filtered(filters))

    def runs(
        self,
        info: GraphQLResolveInfo,
        filters: Any = None,
        after: str | None = None,
        first: int | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        runs = self._filtered(filters)
        by_meta = {id(r.meta): r for r in runs}
        ordered = [by_meta[id(m)] for m in sort_runs([r.meta for r in runs], order)]
        start = 0
        if after:
            try:
                after_id = base64.b64decode(after).decode().removeprefix("cursor:")
            except ValueError as exc:
                raise SpecError(f"bad cursor {after!r}") from exc
            ids = [r.meta.run_id for r in ordered]
            start = ids.index(after_id) + 1 if after_id in ids else len(ids)
        if info.context.service.limits is not None:
            info.context.service.limits.check_first(first)
        first = 50 if first is None else first
        page = ordered[start : start + max(first, 0)]
        info.context.counted.add("runs", rows=len(page))
        edges = [
            {"node": RunObj(r, self._n), "cursor": b64(f"cursor:{r.meta.run_id}")} for r in page
        ]
        return {
            "totalCount": len(ordered),
            "edges": edges,
            "pageInfo": {
                "startCursor": edges[0]["cursor"] if edges else None,
                "endCursor": edges[-1]["cursor"] if edges else None,
                "hasNextPage": start + len(page) < len(ordered),
                "hasPreviousPage": start > 0,
            },
        }

    def run(self, info: GraphQLResolveInfo, name: str) -> RunObj | None:
        served = self._s.get(self._e, self.name, name)
        if served is None:
            return None
        if selected_fields(info) - set(HEAVY_RUN_FIELDS) - {"__typename"}:
            info.context.counted.add("run")
        return RunObj(served, self._n)


class QueryRoot:
    """GraphQL ``Query``."""

    def viewer(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        ctx: Context = info.context
        ctx.counted.add("viewer")
        entities = list(dict.fromkeys(e for e, _ in ctx.store.projects)) or [ctx.viewer_entity]
        return {
            "id": b64("User:1"),
            "name": "emulator",
            "username": "emulator",
            "email": "emulator@localhost",
            "admin": False,
            "flags": "{}",
            "entity": ctx.viewer_entity,
            "deletedAt": None,
            "apiKeys": {
                "edges": [
                    {"node": {"id": b64("ApiKey:1"), "name": "emulator", "description": None}}
                ]
            },
            "teams": {"edges": [{"node": {"name": e}} for e in entities]},
        }

    def project(
        self,
        info: GraphQLResolveInfo,
        name: str | None = None,
        entityName: str | None = None,  # noqa: N803
    ) -> ProjectObj | None:
        ctx: Context = info.context
        entity = entityName or ctx.viewer_entity
        number = ctx.store.projects.get((entity, name or ""))
        if number is None:
            return None
        return ProjectObj(ctx.store, entity, name or "", number)

    def serverInfo(self, info: GraphQLResolveInfo) -> dict[str, Any]:  # noqa: N802
        info.context.counted.add("serverInfo")
        return {"features": [], "cliVersionInfo": {}, "latestLocalVersionInfo": None}
