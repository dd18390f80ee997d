"""wandb-history-connector: Weights & Biases run history as Arrow record batches.

Against the bundled W&B API emulator (for W&B itself, ``Api()`` reads ``WANDB_API_KEY``):

>>> from connector import Api
>>> from connector.emulator import Emulator, synthetic_runs
>>> with Emulator(synthetic_runs("acme/demo:runs=2,steps=100,keys=3,seed=1")) as emu:
...     api = Api(api_key=emu.api_key, base_url=emu.base_url)
...     table = api.runs("acme/demo")[0].scan(["loss"]).to_arrow()
>>> table.num_rows, table.column_names[:2]
(100, ['_step', 'loss'])
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
