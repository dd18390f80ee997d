"""The `wandb-history` command line: `serve`, `export`, `sql`, `demo`.

Each sub-command lives in the module that does the work; this file only wires arguments.
The API key is never taken on the command line: it comes from `WANDB_API_KEY` or `~/.netrc`
(the emulator's own `serve --api-key` sets the key it accepts, which is not a secret).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

SubcommandAdder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve run history over an emulated W&B API")
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
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--api-key", default=None, help="the key the emulator accepts (>= 40 chars)")
    p.add_argument("--entity", default=None, help="entity for local runs that have none")
    p.add_argument("--project", default=None, help="project for local runs that have none")

    def run(args: argparse.Namespace) -> int:
        from .emulator import serve

        local = {k: v for k, v in (("entity", args.entity), ("project", args.project)) if v}
        serve(
            args.paths,
            synthetic=args.synthetic,
            demo=args.demo,
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            **local,
        )
        return 0

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
    from .export.cli import add_parser as add_export
    from .sqlcli import add_parser as add_sql

    return [_add_serve, add_export, add_sql, _add_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wandb-history", description="Weights & Biases run history as Arrow, SQL and files."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _adders():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import ConnectorError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConnectorError as exc:
        print(f"wandb-history {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wandb-history {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
