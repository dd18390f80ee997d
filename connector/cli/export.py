"""``wandb-history export SOURCE... --to DEST``: the command line of `connector.export.export`.

Exit status: `connector.errors.EXIT_CODES` (shown in ``--help``): 0 ok, 1 some runs failed (the
others are committed), 2 usage or configuration error (found before anything is written), 3 the
W&B API unreachable for ``--timeout`` seconds, 4 the destination busy, 70 internal error, 130 Ctrl-C
(every chunk committed before it is kept; the message gives the command that resumes).

The API key comes from ``WANDB_API_KEY`` or ``~/.netrc``, never from the command line. Nothing
printed (progress, ``--dry-run``, ``--json``) holds the key or a database password.

>>> import argparse
>>> sub = argparse.ArgumentParser().add_subparsers()
>>> add_parser(sub)
>>> args = sub.choices["export"].parse_args(["e/p", "--to", "x.duckdb", "--keys", "loss,acc"])
>>> options = _options(args)
>>> options["keys"], options["max_step"], options["chunk_steps"]
(('loss', 'acc'), None, 10000)

Defaults are those of `connector.export.plan.ExportOptions`, read from it (`OptionDefault`), so each
is defined once.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigurationError
from .options import add_timeout


def _keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


class OptionDefault:
    """The default of the `ExportOptions` field `name`, read from that dataclass when it is needed
    (``--help`` shows it; `_options` resolves it), so the command starts without importing the
    exporter and every default has one definition.

    >>> str(OptionDefault("running_lag")), OptionDefault("checkpoint").value is None
    ('100', True)
    """

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def value(self) -> Any:
        import dataclasses

        from ..export.plan import ExportOptions

        return next(f.default for f in dataclasses.fields(ExportOptions) if f.name == self.name)

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return f"OptionDefault({self.name!r})"


def _value(value: Any) -> Any:
    return value.value if isinstance(value, OptionDefault) else value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="export run history into DuckDB, PostgreSQL, Delta, Iceberg or a Parquet dataset (checkpointed)",
        description="Export run history, incrementally: re-runs fetch only new steps, a crashed or "
        "interrupted export resumes where it stopped. DEST: a .duckdb/.db file, a postgresql:// URL, "
        "delta://PATH or delta+s3://BUCKET/PATH (Delta), iceberg://PATH or "
        "iceberg+s3://BUCKET/PATH?catalog=LOCAL_FILE.db (Iceberg; on S3 the SQLite catalog stays in "
        "that local file), or a local folder (Parquet dataset). S3 settings come from the AWS_* "
        "environment (AWS_ENDPOINT_URL, AWS_REGION, credentials).",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="entity/project, a run path or URL, or a local .wandb path")
    p.add_argument("--to", required=True, metavar="DEST",
                   help="a .duckdb/.db file, a postgresql:// URL, delta[+s3]://..., iceberg[+s3]://..., or a local folder")
    p.add_argument("--filter", dest="filters", default=None, metavar="JSON", help="MongoDB-style run filter (JSON)")
    p.add_argument("--run-state", dest="run_states", action="append", default=[], metavar="STATE", help="only runs in this state (repeatable)")
    p.add_argument("--run", dest="run_ids", action="append", default=[], metavar="ID", help="only this run id (repeatable)")
    p.add_argument("--keys", type=_keys, default=OptionDefault("keys"), help="comma-separated keys to export as columns (rows are never filtered)")
    p.add_argument("--min-step", type=int, default=OptionDefault("min_step"), help="first step (inclusive, default %(default)s)")
    p.add_argument("--max-step", type=int, default=OptionDefault("max_step"), help="last step (EXCLUSIVE)")
    p.add_argument("--layout", choices=("wide", "long"), default=OptionDefault("layout"), help="one column per key (wide) or one row per key (long)")
    p.add_argument("--include-system-metrics", action="store_true", help="also export system metrics (the sampled events stream)")
    p.add_argument("--concurrency", type=int, default=OptionDefault("concurrency"), help="most API requests in flight, across runs and pages (default %(default)s)")
    p.add_argument("--chunk-steps", type=int, default=OptionDefault("chunk_steps"), help="steps per committed chunk (default %(default)s)")
    p.add_argument("--checkpoint", default=OptionDefault("checkpoint"), metavar="PATH", help="keep the checkpoint in this JSON file (default: inside DEST)")
    p.add_argument("--full-refresh", action="store_true", help="re-export the listed runs and, at the end, replace exactly their rows and checkpoints "
                   "(atomically: one transaction, or one commit per Delta/Iceberg table)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--running-lag", type=int, default=OptionDefault("running_lag"), metavar="STEPS", help="steps re-read for running runs (default %(default)s)")
    p.add_argument("--page-size", type=int, default=OptionDefault("page_size"), help="rows per API page (default %(default)s)")
    p.add_argument("--engine", choices=("local", "processes", "ray"), default="local",
                   help="who fetches and decodes the chunks: this process (local, default), one worker process per "
                   "CPU (processes: uses every core) or Ray tasks (ray: "
                   "pip install 'wandb-history-connector[ray]'; RAY_ADDRESS or a local cluster); "
                   "writes and checkpoints stay in this process")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output (failed runs and errors are still printed)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("--allow-missing", action="store_true",
                   help="a run, key or project that does not exist is not an error (default: exit 2 with a 'did you mean')")
    p.add_argument("--skip-damaged", action="store_true",
                   help="local sources: export every readable run and report damaged .wandb files (exit 0)")
    add_timeout(p)
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    filters = None
    if args.filters:
        try:
            filters = json.loads(args.filters)
        except ValueError as exc:
            raise ConfigurationError(f"--filter is not valid JSON: {exc}") from None
    keys = _value(args.keys)
    return {
        "filters": filters,
        "run_states": tuple(args.run_states),
        "run_ids": tuple(args.run_ids),
        "keys": tuple(keys) if keys is not None else None,
        "min_step": _value(args.min_step),
        "max_step": _value(args.max_step),
        "layout": _value(args.layout),
        "include_system_metrics": args.include_system_metrics,
        "concurrency": _value(args.concurrency),
        "chunk_steps": _value(args.chunk_steps),
        "checkpoint": _value(args.checkpoint),
        "full_refresh": args.full_refresh,
        "dry_run": args.dry_run,
        "running_lag": _value(args.running_lag),
        "page_size": _value(args.page_size),
        "allow_missing": args.allow_missing,
        "skip_damaged": args.skip_damaged,
    }


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _redact_arg(arg: str) -> str:
    """A command-line argument with the password of any URL in it replaced by ``***``."""
    from ..export.sinks.dest import redact_url

    if "://" not in arg:
        return arg
    if arg.startswith("--") and "=" in arg:
        option, _, value = arg.partition("=")
        return f"{option}={redact_url(value)}"
    return redact_url(arg)


def resume_command(argv: Sequence[str]) -> str | None:
    """The command that resumes an export, rebuilt from its arguments (``sys.argv[1:]``).

    Only the arguments are used, never the environment; a URL's password is shown as ``***``.
    Options before ``export`` (``-v``) are kept. None when `argv` is not an ``export`` command line
    (the export was started from Python).

    >>> print(resume_command(["export", "e/p", "--to", "postgresql://u:pw@h/db", "--filter", '{"a": 1}']))
    wandb-history export e/p --to 'postgresql://u:***@h/db' --filter '{"a": 1}'
    >>> print(resume_command(["-v", "export", "e/p", "--to", "d b.duckdb"]))
    wandb-history -v export e/p --to 'd b.duckdb'
    >>> resume_command(["-m", "pytest"]) is None
    True
    """
    command = next((a for a in argv if not a.startswith("-")), None)
    if command != "export":
        return None
    return "wandb-history " + shlex.join(_redact_arg(a) for a in argv)


def interrupt_message(summary: Any, argv: Sequence[str]) -> list[str]:
    """The lines printed on Ctrl-C: what was committed and how to resume.

    >>> from types import SimpleNamespace as S
    >>> for line in interrupt_message(S(rows=1400, chunks=2, runs_exported=1, runs_up_to_date=0),
    ...                               ["export", "demo/mnist", "--to", "d b.duckdb"]):
    ...     print(line)
    interrupted: committed 1,400 rows in 2 chunks (1 run complete); nothing committed was lost
    resume with: wandb-history export demo/mnist --to 'd b.duckdb'
    """
    if summary is None:
        lines = ["interrupted before the export started; nothing was committed"]
    else:
        done = int(getattr(summary, "runs_exported", 0)) + int(getattr(summary, "runs_up_to_date", 0))
        lines = [
            f"interrupted: committed {_plural(summary.rows, 'row')} in {_plural(summary.chunks, 'chunk')} "
            f"({_plural(done, 'run')} complete); nothing committed was lost"
        ]
    command = resume_command(argv)
    if command is None:
        lines.append("resume with: the same export (it continues from the last committed chunk)")
        return lines
    lines.append(f"resume with: {command}")
    if "***" in command and not any("***" in a for a in argv):
        lines.append("  (the password is shown as ***: put it back, or leave it out and set PGPASSWORD)")
    return lines


def report_interrupt(exc: KeyboardInterrupt, *, as_json: bool, argv: Sequence[str] | None = None) -> int:
    """Print what an interrupted export committed and how to resume it (stderr; with `as_json` also
    the partial summary on stdout); return the exit status 130. `exc` is `runner.ExportInterrupted`
    once the export has started: it carries ``.summary``."""
    summary = getattr(exc, "summary", None)
    for line in interrupt_message(summary, sys.argv[1:] if argv is None else argv):
        print(line, file=sys.stderr)
    if as_json:
        data = summary.to_dict() if summary is not None else {"interrupted": True}
        print(json.dumps(data, indent=1, sort_keys=True))
    return 130


def _reports_interrupt(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`func`, with Ctrl-C reported by `report_interrupt` (exit status 130)."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except KeyboardInterrupt as exc:
            return report_interrupt(exc, as_json=bool(getattr(args, "json", False)))

    return wrapper


@_reports_interrupt
def run(args: argparse.Namespace) -> int:
    from ..export import export
    from ..export.progress import Progress
    from ..remote.transport import RetryPolicy

    progress = Progress(quiet=args.quiet or args.json)
    summary = export(
        args.sources, args.to, progress=progress, retry=RetryPolicy(deadline=args.timeout),
        engine=getattr(args, "engine", "local"), **_options(args),
    )  # fmt: skip
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1, sort_keys=True))
    elif args.dry_run:
        _print_plan(summary)
    elif not args.quiet:
        _print_summary(summary)
    else:  # --quiet hides progress, never failures
        for path, error in summary.failed.items():
            print(f"FAILED {path}: {_first_line(error)}", file=sys.stderr)
    return 0 if summary.ok else 1


def _print_plan(summary: Any) -> None:
    print(f"plan: export to {summary.destination}")
    for item in summary.plan:
        steps = f"steps [{item['steps'][0]}, {item['steps'][1]})" if item["steps"] else "nothing to fetch"
        print(f"  {item['run']:<40} {item['state'] or '-':<9} {item['action']:<10} {steps}, "
              f"~{item['estimated_rows']:,} rows")
        for note in item["notes"]:
            print(f"      {note}")
    for path in summary.deleted_upstream:
        print(f"  {path:<40} deleted upstream (its data is kept)")
    rows = sum(item["estimated_rows"] for item in summary.plan)
    print(f"total: {_plural(len(summary.plan), 'run')}, ~{_plural(rows, 'row')}")


def _first_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _print_summary(summary: Any) -> None:
    err = sys.stderr
    failed = f"; {len(summary.failed)} failed (re-run the same command to retry them)" if summary.failed else ""
    print(
        f"exported {_plural(summary.rows, 'row')} in {_plural(summary.chunks, 'chunk')} from "
        f"{_plural(summary.runs, 'run')} to "
        f"{summary.destination} in {summary.elapsed_s:.1f}s ({summary.rows_per_s:,.0f} rows/s); "
        f"{summary.runs_up_to_date} up to date{failed}",
        file=err,
    )
    for path in summary.rewound:
        print(f"  re-exported (rewound upstream): {path}", file=err)
    for path in summary.deleted_upstream:
        print(f"  deleted upstream, data kept: {path}", file=err)
    for path, reason in getattr(summary, "skipped", {}).items():
        print(f"  skipped {path}: {_first_line(reason)}", file=err)
    for path, text in getattr(summary, "warnings", {}).items():
        print(f"  warning {path}: {text}", file=err)
    for path, error in summary.failed.items():
        print(f"  FAILED {path}: {_first_line(error)}", file=err)
