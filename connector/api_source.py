"""The W&B GraphQL API as a `HistorySource`.

Full rows come from `history(minStep, maxStep, samples)` (rows as JSON text with bare NaN/±Infinity
tokens); keyed rows (the SDK's all-keys rule) from one `sampledHistory` spec per window; column
projections from several specs in one `sampledHistory` call — `_step` alone plus one spec per column —
joined on `_step`, so a projection never changes which rows come back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import NotFoundError, ProtocolError
from .queries import OPERATION_NAMES, document
from .runpath import RunRef
from .source import Page, Window
from .transport import Transport
from .values import flatten_row, parse_row

SPECS_PER_REQUEST = 16


class ApiSource:
    """History of one run read over the GraphQL API."""

    def __init__(self, transport: Transport, ref: RunRef, *, line_count: int | None = None) -> None:
        self.transport = transport
        self.ref = ref
        self._line_count = line_count

    def __repr__(self) -> str:
        return f"ApiSource({self.ref.path!r})"

    def _run(self, name: str, variables: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        data, raw = self.transport.execute_raw(
            document(name), variables, OPERATION_NAMES.get(name, "")
        )
        project = (data or {}).get("project")
        run = project.get("run") if isinstance(project, dict) else None
        if run is None:
            raise NotFoundError(f"run {self.ref.path} not found")
        return run, raw

    def _vars(self, run_var: str = "name") -> dict[str, Any]:
        return {"entity": self.ref.entity, "project": self.ref.project, run_var: self.ref.run_id}

    def history_keys(self) -> dict[str, Any]:
        run, _ = self._run("run_history_keys", self._vars())
        keys = run.get("historyKeys")
        return keys if isinstance(keys, dict) else {}

    def line_count(self) -> int | None:
        return self._line_count

    def fetch_rows(self, window: Window, samples: int) -> Page:
        variables = self._vars("run") | {
            "minStep": window.lo,
            "maxStep": window.hi,
            "pageSize": samples,
        }
        run, raw = self._run("history_page", variables)
        texts = run.get("history") or []
        return Page(
            [],
            complete=len(texts) < samples or samples >= window.width,
            nbytes=len(raw),
            texts=texts,
        )

    def _spec(self, keys: Sequence[str], window: Window, samples: int) -> str:
        # maxStep is inclusive in sampledHistory specs.
        return json.dumps(
            {"keys": list(keys), "minStep": window.lo, "maxStep": window.hi - 1, "samples": samples}
        )

    def _sampled(self, specs: list[str]) -> tuple[list[list[dict[str, Any]]], int]:
        run, raw = self._run("sampled_history", self._vars() | {"specs": specs})
        result = run.get("sampledHistory")
        if not isinstance(result, list) or len(result) != len(specs):
            raise ProtocolError(f"run {self.ref.path}: sampledHistory answered {len(result or [])} "
                                f"lists for {len(specs)} specs")
        return [lst or [] for lst in result], len(raw)

    def fetch_keyed(self, window: Window, keys: Sequence[str], samples: int) -> Page:
        wanted = list(dict.fromkeys(["_step", *keys]))
        spec = self._spec(wanted, window, samples)
        run, raw = self._run("sampled_history_page", self._vars("run") | {"spec": spec})
        result = run.get("sampledHistory") or [[]]
        rows = list(result[0] or [])
        rows.sort(key=lambda r: r.get("_step", 0))
        return Page(rows, complete=len(rows) < samples or samples >= window.width, nbytes=len(raw))

    def fetch_columns(self, window: Window, columns: Sequence[str], samples: int) -> Page:
        wanted = [c for c in dict.fromkeys(columns) if c != "_step"]
        specs = [self._spec(["_step"], window, samples)]
        specs += [self._spec(["_step", c], window, samples) for c in wanted]
        lists: list[list[dict[str, Any]]] = []
        nbytes = 0
        for i in range(0, len(specs), SPECS_PER_REQUEST):
            part, size = self._sampled(specs[i : i + SPECS_PER_REQUEST])
            lists += part
            nbytes += size
        complete = samples >= window.width or all(len(lst) < samples for lst in lists)
        steps = sorted({r["_step"] for r in lists[0] if "_step" in r})
        by_step: dict[int, dict[str, Any]] = {s: {"_step": s} for s in steps}
        for column, lst in zip(wanted, lists[1:], strict=True):
            for raw_row in lst:
                flat = flatten_row(raw_row)[0]
                row = by_step.get(flat.get("_step"))
                if row is not None and column in flat:
                    row[column] = flat[column]
        return Page([by_step[s] for s in steps], complete=complete, nbytes=nbytes)

    def probe_steps(self, window: Window, samples: int) -> list[int]:
        lists, _ = self._sampled([self._spec(["_step"], window, samples)])
        return sorted(r["_step"] for r in lists[0] if isinstance(r.get("_step"), int))

    def sampled_history(
        self, samples: int, keys: Sequence[str] | None, stream: str
    ) -> list[dict[str, Any]]:
        if keys:
            spec = json.dumps({"keys": list(keys), "samples": samples})
            run, _ = self._run("sampled_history", self._vars() | {"specs": [spec]})
            result = run.get("sampledHistory") or [[]]
            return list(result[0] or [])
        name = "full_events" if stream == "system" else "full_history"
        run, _ = self._run(name, self._vars() | {"samples": samples})
        texts = run.get("events" if stream == "system" else "history") or []
        return [parse_row(t) for t in texts]
