"""The GraphQL documents the connector sends, one file each, in the shapes the official client sends.

The runs listing (`runs`) spreads `LightweightRunFragment`, as the official client lists runs by
default (``lazy=True``); ``document("runs", full=True)`` spreads `RunFragment` instead (its
``lazy=False``). `LISTING_OMITS` are the fields the light listing leaves out.

>>> "historyKeys" in document("run_history_keys")
True
>>> "historyKeys" in document("runs"), "historyKeys" in document("runs", full=True)
(False, True)
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

#: operationName sent with each document: real names for the documents the official client's Go
#: core sends, "" for those its Python side sends (as captured from wandb 0.31.0).
OPERATION_NAMES = {
    "viewer": "Viewer",
    "history_page": "HistoryPage",
    "sampled_history_page": "SampledHistoryPage",
    "parquet_history": "RunParquetHistory",
}


#: fragments kept in files of their own and appended to the documents that spread them
FRAGMENTS = {"RunFragment": "run_fragment", "LightweightRunFragment": "light_run_fragment"}


def _read(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.graphql").read_text(encoding="utf-8")


def _spread(fragment: str) -> re.Pattern[str]:
    return re.compile(rf"\.\.\.\s*{fragment}\b")


@cache
def document(name: str, *, full: bool = False) -> str:
    """The text of `connector/remote/queries/<name>.graphql`, with the fragments it spreads appended
    (as the official client concatenates its `RunFragment`); with `full`, a spread of
    `LightweightRunFragment` becomes one of `RunFragment` (every field of the run)."""
    text = _read(name)
    if full:
        text = _spread("LightweightRunFragment").sub("...RunFragment", text)
    for fragment, file in FRAGMENTS.items():
        if _spread(fragment).search(text):
            text = text.rstrip("\n") + "\n        " + _read(file)
    return text


@cache
def fragment_fields(fragment: str) -> tuple[str, ...]:
    """The top-level fields a fragment of `FRAGMENTS` selects, in order.

    >>> fragment_fields("LightweightRunFragment")[:3]
    ('id', 'tags', 'name')
    """
    text = _read(FRAGMENTS[fragment])
    body = text[text.index("{") + 1 : text.rindex("}")]
    while "{" in body:  # drop nested selections (a field's own subfields)
        body = re.sub(r"\{[^{}]*\}", " ", body)
    body = re.sub(r"\([^()]*\)|#[^\n]*", " ", body)  # arguments and comments
    return tuple(re.findall(r"[A-Za-z_]\w*", body))


#: Run fields a runs listing leaves out (the heavy ones: config, summary, system metrics, history
#: keys); a `Run` from a listing fetches them with one `run` query when first needed.
LISTING_OMITS = tuple(
    f for f in fragment_fields("RunFragment") if f not in fragment_fields("LightweightRunFragment")
)


def names() -> list[str]:
    """Every operation document's name (fragment files excluded)."""
    return sorted(
        p.name.removesuffix(".graphql")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".graphql") and p.name.removesuffix(".graphql") not in FRAGMENTS.values()
    )
