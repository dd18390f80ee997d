"""wandb-history-connector: Weights & Biases run history as Arrow record batches.

>>> from connector import Api, Run, Runs  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["Api", "Run", "Runs", "export", "open_local", "resolve_run", "__version__"]

if TYPE_CHECKING:
    from .api import Api, Run, Runs

_LAZY = {
    "Api": ("connector.api", "Api"),
    "Run": ("connector.api", "Run"),
    "Runs": ("connector.api", "Runs"),
    "export": ("connector.export", "export"),
    "open_local": ("connector.resolve", "open_local"),
    "resolve_run": ("connector.resolve", "resolve_run"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'connector' has no attribute {name!r}")
