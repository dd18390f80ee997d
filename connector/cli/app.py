"""The `wandb-history` command line: `serve`, `export`, `status`, `sql`, `demo`.

Each sub-command lives in the module that does the work; this file only wires arguments.
``wandb-history`` alone prints the help and exits 0; ``--version`` prints ``wandb-history <version>``.
The API key is never taken on the command line: it comes from `WANDB_API_KEY` or `~/.netrc`
(the emulator's own `serve --api-key` sets the key it accepts, which is not a secret).

`main` turns every failure into one line on stderr, ``wandb-history <cmd>: error: <message>``, and
the exit status of `connector.errors.EXIT_CODES` (the error's ``exit_code``); anything unexpected is
an internal error (70). ``--verbose`` / ``-v`` (before or after the sub-command) logs at DEBUG and
prints the traceback; retries are logged at WARNING, so they show by default.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from ..errors import (
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ConnectorError,
)

SubcommandAdder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


_SERVE_DESCRIPTION = """\
Serve runs over an emulated W&B API (GraphQL), in the foreground until Ctrl-C: local offline runs
(.wandb files, run directories, wandb/ folders), synthetic projects, or the demo project. The
official wandb SDK and every wandb-history command read from it.

It prints the URL, then the lines that point a client at it, then each project it serves:

  Serving W&B API emulator at http://127.0.0.1:PORT (API key: ...)
  export WANDB_BASE_URL=http://127.0.0.1:PORT
  export WANDB_API_KEY=...            (the emulator's own key, not a secret)
  project local/wandb: 2 runs         (offline runs have the entity 'local' unless --entity)

examples:
  wandb-history serve --demo
  wandb-history serve ./wandb --entity me --port 8080
  wandb-history serve --synthetic acme/vision:runs=3,steps=1000,keys=8"""


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve run history over an emulated W&B API",
        description=_SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", help="local .wandb files, run directories or wandb/ folders")
    p.add_argument(
        "--synthetic",
        action="append",
        default=[],
        metavar="SPEC",
        help="entity/project:runs=R,steps=N,keys=K[,seed=S] (repeatable)",
    )
    p.add_argument("--demo", action="store_true", help="serve the demo project demo/mnist")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (0..65535)")
    p.add_argument("--api-key", default=None, help="the key the emulator accepts (>= 40 chars)")
    p.add_argument("--entity", default=None, help="entity for local runs that have none")
    p.add_argument("--project", default=None, help="project for local runs that have none")
    from ..emulator.service import add_arguments as add_service_arguments

    add_service_arguments(p)

    def run(args: argparse.Namespace) -> int:
        from ..emulator import serve
        from ..emulator.service import from_arguments as service_from_arguments

        local = {k: v for k, v in (("entity", args.entity), ("project", args.project)) if v}
        serve(
            args.paths,
            synthetic=args.synthetic,
            demo=args.demo,
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            announce=True,
            service=service_from_arguments(args),
            **local,
        )
        return 0

    p.set_defaults(func=run)


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="show what an export destination holds (runs, rows, watermarks), read-only",
        description="Show what an export destination holds: per run, table and key set the steps "
        "covered (min_step..watermark), rows and steps, the run's state, when it was last written "
        "and deleted_at for runs gone upstream. Read-only: never creates, changes or locks DEST "
        "(a DuckDB file being written by an export right now is reported busy, exit 4).",
    )
    p.add_argument("dest", metavar="DEST", help="a .duckdb/.db file, a postgresql:// URL, or a Parquet dataset folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--checkpoint", default=None, metavar="PATH", help="the export's --checkpoint file, if it used one"
    )

    def run(args: argparse.Namespace) -> int:
        from ..export.status import print_status

        return print_status(args.dest, as_json=args.json, checkpoint=args.checkpoint)

    p.set_defaults(func=run)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="export the embedded demo project to a DuckDB file and query it"
    )
    p.add_argument("--to", default="demo.duckdb", help="DuckDB file to write (default demo.duckdb)")

    def run(args: argparse.Namespace) -> int:
        from .demo import run_demo

        return run_demo(args.to)

    p.set_defaults(func=run)


def _adders() -> list[SubcommandAdder]:
    from .export import add_parser as add_export
    from .sql import add_parser as add_sql

    return [_add_serve, add_export, _add_status, add_sql, _add_demo]


_VERBOSE_HELP = "log at DEBUG and print the traceback of an error"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wandb-history",
        description="Weights & Biases run history as Arrow, SQL and files.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--verbose", "-v", action="store_true", help=_VERBOSE_HELP)
    parser.add_argument("--version", action="version", version=f"wandb-history {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _adders():
        add(sub)
    for name, p in sub.choices.items():
        # SUPPRESS: a sub-command's default must not undo a -v given before it
        p.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)
        if name == "export":
            p.epilog = EXIT_CODES
            p.formatter_class = _RawEpilogFormatter
    return parser


def version() -> str:
    """The installed distribution's version (the package's own when not installed).

    >>> version().count(".") >= 1
    True
    """
    from importlib import metadata

    try:
        return metadata.version("wandb-history-connector")
    except metadata.PackageNotFoundError:
        from .._version import __version__

        return __version__


class _RawEpilogFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph texts (a description) as usual; keeps multi-line texts (the exit codes) as is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _configure_logging(verbose: bool) -> None:
    """One stderr handler (``wandb-history: <message>``), WARNING by default, DEBUG with --verbose."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_wandb_history", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("wandb-history: %(message)s"))
    handler._wandb_history = True  # type: ignore[attr-defined]  # marks our own handler, found again above
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)


def _one_line(message: str) -> str:
    """`message` on one line, with the API key of the environment (if it leaked in) masked."""
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    key = os.environ.get("WANDB_API_KEY")
    return text.replace(key, "***") if key and len(key) >= 8 else text


_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; returns its exit status (see `EXIT_CODES`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `wandb-history`: the help, as duckdb, aws and dlt do
        parser.print_help()
        return 0
    verbose = bool(getattr(args, "verbose", False))
    _configure_logging(verbose)
    prefix = f"wandb-history {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConnectorError as exc:
        if verbose:
            traceback.print_exc()
        print(f"{prefix}: error: {_one_line(str(exc))}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except _PATH_ERRORS as exc:  # a path given on the command line that cannot be used
        if verbose:
            traceback.print_exc()
        print(f"{prefix}: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        hint = "" if verbose else " (run with --verbose for the traceback)"
        print(f"{prefix}: internal error: {detail}{hint}", file=sys.stderr)
        return EXIT_INTERNAL

