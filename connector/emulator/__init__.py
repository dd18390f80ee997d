"""A W&B API emulator: the GraphQL subset the official SDK and this connector use, over real HTTP.

Serves `connector.core.rundata.RunData` objects (synthetic runs, runs loaded from `.wandb` files, or
in-memory runs) so that the official ``wandb`` SDK (0.31) and the connector read them as from W&B.

>>> from connector.emulator import Emulator, synthetic_runs
>>> with Emulator(synthetic_runs("e/p:runs=1,steps=100,keys=5")) as emu:
...     url, key = emu.base_url, emu.api_key

Modules: `server` (HTTP, `Emulator`, control endpoints), `graphql_app` (parsing, caching, execution),
`resolvers` (field semantics), `filters` (run filters and order), `store` (row-encoding caches),
`faults` (fault injection), `synthetic` (the deterministic generator), `demo` (the demo project),
`serve` (the CLI entry point).
"""

from __future__ import annotations

from .faults import FaultSpec
from .serve import serve
from .server import DEFAULT_API_KEY, Emulator
from .synthetic import SyntheticRun, SyntheticSpec, synthetic_runs

__all__ = [
    "DEFAULT_API_KEY",
    "Emulator",
    "FaultSpec",
    "SyntheticRun",
    "SyntheticSpec",
    "serve",
    "synthetic_runs",
]
