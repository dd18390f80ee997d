"""``wandb-history export SOURCE... --to DEST``: the command line of `connector.export.export`.

Exit status: 0 when every run was exported (or was up to date), 1 when some run failed (the others
are committed; re-run to retry), 2 on a usage or configuration error, 130 on Ctrl-C (every chunk
committed before it is kept and the export resumes from there).

The API key comes from ``WANDB_API_KEY`` or ``~/.netrc``, never from the command line. Nothing
printed (progress, ``--dry-run``, ``--json``) holds the key or a database password.

>>> import argparse
>>> sub = argparse.ArgumentParser().add_subparsers()
>>> add_parser(sub)
>>> args = sub.choices["export"].parse_args(["e/p", "--to", "x.duckdb", "--keys", "loss,acc"])
>>> args.keys, args.max_step
(['loss', 'acc'], None)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import ConfigurationError


def _keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="export run history into DuckDB, PostgreSQL or a Parquet dataset (checkpointed)",
        description="Export run history, incrementally: re-runs fetch only new steps, a crashed or "
        "interrupted export resumes where it stopped. DEST: a .duckdb/.db file, a postgresql:// URL, "
        "or a folder (Parquet dataset).",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="entity/project, a run path or URL, or a local .wandb path")
    p.add_argument("--to", required=True, metavar="DEST", help="a .duckdb/.db file, a postgresql:// URL, or a folder")
    p.add_argument("--filter", dest="filters", default=None, metavar="JSON", help="MongoDB-style run filter (JSON)")
    p.add_argument("--run-state", dest="run_states", action="append", default=[], metavar="STATE", help="only runs in this state (repeatable)")
    p.add_argument("--run", dest="run_ids", action="append", default=[], metavar="ID", help="only this run id (repeatable)")
    p.add_argument("--keys", type=_keys, default=None, help="comma-separated keys to export as columns (rows are never filtered)")
    p.add_argument("--min-step", type=int, default=0, help="first step (inclusive, default 0)")
    p.add_argument("--max-step", type=int, default=None, help="last step (EXCLUSIVE)")
    p.add_argument("--layout", choices=("wide", "long"), default="wide", help="one column per key (wide) or one row per key (long)")
    p.add_argument("--include-system-metrics", action="store_true", help="also export system metrics (the sampled events stream)")
    p.add_argument("--concurrency", type=int, default=4, help="most API requests in flight, across runs and pages (default 4)")
    p.add_argument("--chunk-steps", type=int, default=10_000, help="steps per committed chunk (default 10000)")
    p.add_argument("--checkpoint", default=None, metavar="PATH", help="keep the checkpoint in this JSON file (default: inside DEST)")
    p.add_argument("--full-refresh", action="store_true", help="re-export everything and swap it in atomically at the end")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--running-lag", type=int, default=100, metavar="STEPS", help="steps re-read for running runs (default 100)")
    p.add_argument("--page-size", type=int, default=1000, help="rows per API page (default 1000)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    filters = None
    if args.filters:
        try:
            filters = json.loads(args.filters)
        except ValueError as exc:
            raise ConfigurationError(f"--filter is not valid JSON: {exc}") from None
    return {
        "filters": filters,
        "run_states": tuple(args.run_states),
        "run_ids": tuple(args.run_ids),
        "keys": tuple(args.keys) if args.keys is not None else None,
        "min_step": args.min_step,
        "max_step": args.max_step,
        "layout": args.layout,
        "include_system_metrics": args.include_system_metrics,
        "concurrency": args.concurrency,
        "chunk_steps": args.chunk_steps,
        "checkpoint": args.checkpoint,
        "full_refresh": args.full_refresh,
        "dry_run": args.dry_run,
        "running_lag": args.running_lag,
        "page_size": args.page_size,
    }


def run(args: argparse.Namespace) -> int:
    from . import export
    from .progress import Progress

    progress = Progress(quiet=args.quiet or args.json)
    summary = export(args.sources, args.to, progress=progress, **_options(args))
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1, sort_keys=True))
    elif args.dry_run:
        _print_plan(summary)
    elif not args.quiet:
        _print_summary(summary)
    return 0 if summary.ok else 1


def _print_plan(summary: Any) -> None:
    print(f"plan: export to {summary.destination}")
    for item in summary.plan:
        steps = f"steps [{item['steps'][0]}, {item['steps'][1]})" if item["steps"] else "nothing to fetch"
        print(f"  {item['run']:<40} {item['state'] or '-':<9} {item['action']:<10} {steps}, "
              f"{item['chunks']} chunks, ~{item['estimated_rows']:,} rows")
        for note in item["notes"]:
            print(f"      {note}")
    for path in summary.deleted_upstream:
        print(f"  {path:<40} deleted upstream (its data is kept)")


def _print_summary(summary: Any) -> None:
    err = sys.stderr
    print(
        f"exported {summary.rows:,} rows in {summary.chunks} chunks from {summary.runs} runs to "
        f"{summary.destination} in {summary.elapsed_s:.1f}s ({summary.rows_per_s:,.0f} rows/s); "
        f"{summary.runs_up_to_date} up to date",
        file=err,
    )
    for path in summary.rewound:
        print(f"  re-exported (rewound upstream): {path}", file=err)
    for path in summary.deleted_upstream:
        print(f"  deleted upstream, data kept: {path}", file=err)
    for path, error in summary.failed.items():
        print(f"  FAILED {path}: {error}", file=err)
