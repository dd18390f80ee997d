"""`wandb-history demo`: the main job on an embedded default, with no server and no credentials.

It starts the W&B API emulator in this process with the demo project ``demo/mnist`` (3 runs:
finished, running and failed; NaN/±inf, nested keys, a histogram, sparse keys, a late start and a
gap), exports the project's history to a DuckDB file with the checkpointed exporter, runs it again
to show that nothing new is fetched, and prints a small SQL result.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from ..sqlfiles import sql_text


def run_demo(to: str = "demo.duckdb", *, out: TextIO | None = None) -> int:
    """Export the demo project to the DuckDB file `to` and print a summary query; returns 0."""
    import duckdb

    from ..api import Api
    from ..emulator import Emulator
    from ..emulator.demo_runs import demo_runs
    from ..export import export

    out = out or sys.stdout
    with Emulator(demo_runs()) as emu:
        api = Api(api_key=emu.api_key, base_url=emu.base_url)
        print(f"emulated W&B API at {emu.base_url}, project demo/mnist", file=out)
        first = export(["demo/mnist"], to, api=api)
        print(f"exported {first.rows} rows of {first.runs} runs to {to}", file=out)
        again = export(["demo/mnist"], to, api=api)
        print(
            f"re-run: {again.rows} rows fetched (only the running run's lag window, merged on "
            "(run, _step): no duplicates)",
            file=out,
        )
    with duckdb.connect(str(Path(to)), read_only=True) as con:
        result = con.sql(sql_text("demo_summary"))
        print(result, file=out)
    return 0
