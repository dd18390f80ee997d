"""The GraphQL application: schema loading, custom scalars, document caching, one-call execution.

`GraphQLApp.execute(body)` takes a request body (bytes) and returns ``(status, response bytes,
Counted)``. Parsing and validation of a query text happen once (cached by text); answers of
successful requests are cached by request body and invalidated when any run changes
(`Store.generation`). A cached answer is replayed with its `Counted` record, so counters stay exact.

Status: 200 with ``{"data": ...}``; 200 with ``errors`` too when a resolver failed (bad spec, bad
filter: GraphQL semantics); 400 with ``{"errors": [...]}`` when the body is not JSON, has no query,
the document does not parse or validate against the schema, or a request exceeds the service's
limits (`connector.emulator.service.Limits`). Answers holding signed URLs are never cached.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    StringValueNode,
    build_schema,
    execute_sync,
    parse,
    validate,
    value_from_ast_untyped,
)

from .exports import ExportShelf
from .resolvers import HEAVY_RUN_FIELDS, Context, Counted, QueryRoot
from .service import LimitExceeded, ServiceModel
from .store import Store


def _int64(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError(f"Int64 cannot represent {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.lstrip("-").isdigit():
        return int(v)
    raise TypeError(f"Int64 cannot represent {v!r}")


def _int64_literal(node: Any, _variables: Any = None) -> int:
    if isinstance(node, IntValueNode | StringValueNode):
        return _int64(node.value if isinstance(node, StringValueNode) else int(node.value))
    raise TypeError("Int64 literal must be an integer")


def _json_string_literal(node: Any, variables: Any = None) -> Any:
    if isinstance(node, StringValueNode):
        return node.value
    return value_from_ast_untyped(node, variables)


def load_schema() -> GraphQLSchema:
    """The emulator schema (``schema.graphql`` beside this module) with its scalars wired."""
    text = resources.files(__package__).joinpath("schema.graphql").read_text()
    schema = build_schema(text)
    ident = lambda v: v  # noqa: E731
    for name in ("JSON", "JSONString", "DateTime"):
        scalar = schema.type_map[name]
        scalar.serialize = ident  # type: ignore[attr-defined]  # the named type of a custom scalar is a GraphQLScalarType
        scalar.parse_value = ident  # type: ignore[attr-defined]  # the named type of a custom scalar is a GraphQLScalarType
        scalar.parse_literal = (  # type: ignore[attr-defined]  # the named type of a custom scalar is a GraphQLScalarType
            _json_string_literal if name != "JSON" else value_from_ast_untyped
        )
    i64 = schema.type_map["Int64"]
    i64.serialize = _int64  # type: ignore[attr-defined]  # the named type of a custom scalar is a GraphQLScalarType
    i64.parse_value = _int64  # type: ignore[attr-defined]  # the named type of a custom scalar is a GraphQLScalarType
    i64.parse_literal = _int64_literal  # type: ignore[attr-defined]  # the named type of a custom scalar is a GraphQLScalarType
    return schema


def _errors_body(messages: list[str]) -> bytes:
    return orjson.dumps({"errors": [{"message": m} for m in messages]})


class GraphQLApp:
    """Parses, validates, executes and caches GraphQL requests against a `Store`."""

    def __init__(
        self,
        store: Store,
        viewer_entity: Any,
        *,
        answer_cache_bytes: int = 256 << 20,
        service: ServiceModel | None = None,
        exports: ExportShelf | None = None,
        base_url: Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        self._base_url = base_url
        self.service = service or ServiceModel()
        self.exports = exports
        self.schema = load_schema()
        self._viewer_entity = viewer_entity  # callable returning the entity
        self._root = QueryRoot()
        self._docs: dict[str, tuple[DocumentNode | None, list[str]]] = {}
        self._static: dict[str, frozenset[str]] = {}
        self._answers: OrderedDict[bytes, tuple[int, bytes, Counted]] = OrderedDict()
        self._answer_bytes = 0
        self._answer_limit = answer_cache_bytes
        self._answer_gen = -1
        self._lock = threading.Lock()

    def document(self, query: str) -> tuple[DocumentNode | None, list[str]]:
        """The parsed document and its validation errors (cached by query text)."""
        got = self._docs.get(query)
        if got is None:
            try:
                doc = parse(query)
                errors = [e.message for e in validate(self.schema, doc)]
            except GraphQLError as exc:
                doc, errors = None, [exc.message]
            if len(self._docs) > 512:
                self._docs.clear()
            got = self._docs[query] = (doc, errors)
        return got

    def static_fields(self, body: bytes) -> frozenset[str]:
        """The counted field names a request body would touch (for `FaultSpec.only_fields`)."""
        try:
            query = orjson.loads(body).get("query")
        except (orjson.JSONDecodeError, AttributeError):
            return frozenset()
        if not isinstance(query, str):
            return frozenset()
        got = self._static.get(query)
        if got is None:
            doc, _ = self.document(query)
            got = self._static[query] = frozenset(_touched(doc)) if doc is not None else frozenset()
        return got

    def execute(self, body: bytes) -> tuple[int, bytes, Counted]:
        """Answer one ``POST /graphql`` body."""
        gen = self.store.generation
        with self._lock:
            if self._answer_gen != gen:
                self._answers.clear()
                self._answer_bytes = 0
                self._answer_gen = gen
            hit = self._answers.get(body)
            if hit is not None:
                self._answers.move_to_end(body)
                return hit
        status, out, counted, cacheable = self._execute(body)
        if cacheable and len(out) <= self._answer_limit // 4:
            with self._lock:
                if self._answer_gen == gen == self.store.generation and body not in self._answers:
                    self._answers[body] = (status, out, counted)
                    self._answer_bytes += len(out) + len(body)
                    while self._answer_bytes > self._answer_limit and self._answers:
                        k, (_, v, _) = self._answers.popitem(last=False)
                        self._answer_bytes -= len(k) + len(v)
        return status, out, counted

    def _execute(self, body: bytes) -> tuple[int, bytes, Counted, bool]:
        counted = Counted()
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:
                req = json.loads(body)
            except ValueError:
                return 400, _errors_body(["request body is not JSON"]), counted, False
        if not isinstance(req, dict) or not isinstance(req.get("query"), str):
            return (
                400,
                _errors_body(["request body must be a JSON object with a 'query' string"]),
                counted,
                False,
            )
        variables = req.get("variables") or {}
        if not isinstance(variables, dict):
            return 400, _errors_body(["'variables' must be a JSON object"]), counted, False
        op = req.get("operationName") or None
        doc, errors = self.document(req["query"])
        if errors or doc is None:
            return 400, _errors_body(errors or ["could not parse the query"]), counted, False
        ctx = Context(self.store, self._viewer_entity(), counted, self.service, self.exports,
                      self._base_url() if self._base_url is not None else "")  # fmt: skip
        result = execute_sync(
            self.schema,
            doc,
            root_value=self._root,
            context_value=ctx,
            variable_values=variables,
            operation_name=op,
        )
        refused = [e.message for e in result.errors or () if isinstance(e.original_error, LimitExceeded)]
        if refused:
            return 400, _errors_body(refused), counted, False
        env: dict[str, Any] = {"data": result.data}
        if result.errors:
            env["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        try:
            out = orjson.dumps(env)
        except TypeError:
            out = json.dumps(env, default=str).encode()
        return 200, out, counted, not result.errors and not counted.volatile


def _touched(doc: DocumentNode) -> set[str]:
    frags = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}

    def fields(sel_set: Any) -> list[FieldNode]:
        out: list[FieldNode] = []
        for sel in sel_set.selections if sel_set else ():
            if isinstance(sel, FieldNode):
                out.append(sel)
            elif isinstance(sel, InlineFragmentNode):
                out.extend(fields(sel.selection_set))
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value in frags:
                out.extend(fields(frags[sel.name.value].selection_set))
        return out

    touched: set[str] = set()
    for op in doc.definitions:
        if not isinstance(op, OperationDefinitionNode):
            continue
        for f in fields(op.selection_set):
            name = f.name.value
            if name in ("viewer", "serverInfo"):
                touched.add(name)
            elif name == "project":
                for pf in fields(f.selection_set):
                    if pf.name.value in ("runs", "runCount"):
                        touched.add(pf.name.value)
                    if pf.name.value == "run":
                        for rf in fields(pf.selection_set):
                            n = rf.name.value
                            touched.add(n if n in HEAVY_RUN_FIELDS else "run")
    return touched
