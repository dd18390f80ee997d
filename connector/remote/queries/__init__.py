"""The GraphQL documents the connector sends, one file each, in the shapes the official client sends.

>>> "historyKeys" in document("run_history_keys")
True
"""

from __future__ import annotations

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
FRAGMENTS = {"RunFragment": "run_fragment"}


def _read(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.graphql").read_text(encoding="utf-8")


@cache
def document(name: str) -> str:
    """The text of `connector/remote/queries/<name>.graphql`, with the fragments it spreads appended
    (as the official client concatenates its `RunFragment`)."""
    text = _read(name)
    for fragment, file in FRAGMENTS.items():
        if f"...{fragment}" in text:
            text = text.rstrip("\n") + "\n        " + _read(file)
    return text


def names() -> list[str]:
    """Every operation document's name (fragment files excluded)."""
    return sorted(
        p.name.removesuffix(".graphql")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".graphql") and p.name.removesuffix(".graphql") not in FRAGMENTS.values()
    )
