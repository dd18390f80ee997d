"""`serve`: run the emulator in the foreground until SIGINT/SIGTERM (what ``wandb-history serve`` calls).

It binds first, then prints one line ``Serving W&B API emulator at http://HOST:PORT`` followed on
the same line by a key hint (the key itself only when it is the documented `DEFAULT_API_KEY`), flushes
stdout, and serves. With ``announce=True`` (what ``wandb-history serve`` uses) it then prints, each on
its own line, the shell lines that point a client at it (``export WANDB_BASE_URL=...``, ``export
WANDB_API_KEY=...``: the emulator's key is not a secret) and every project it serves with its run
count (``project local/wandb: 2 runs`` for offline runs, whose entity is ``local`` unless given).

>>> serve(synthetic=["e/p:runs=1,steps=10,keys=3"], port=0, _block=False).stop()  # doctest: +ELLIPSIS
Serving W&B API emulator at http://127.0.0.1:... (API key: local-...)
>>> serve(synthetic=["e/p:runs=2,steps=5,keys=1"], announce=True, _block=False).stop()  # doctest: +ELLIPSIS
Serving W&B API emulator at http://127.0.0.1:... (API key: local-...)
export WANDB_BASE_URL=http://127.0.0.1:...
export WANDB_API_KEY=local-...
project e/p: 2 runs
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from .server import DEFAULT_API_KEY, Emulator
from .service import ServiceModel
from .service import add_arguments as add_service_arguments
from .service import from_arguments as service_from_arguments
from .synthetic import SyntheticSpec, synthetic_runs

MIN_API_KEY_LENGTH = 40


def load_local_runs(
    path: str, *, entity: str | None = None, project: str | None = None
) -> list[Any]:
    """Runs of a local ``.wandb`` file or run directory, via ``connector.local.load_runs``."""
    from connector.local import load_runs

    try:
        return list(load_runs(path, entity=entity or None, project=project or None))
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"cannot serve {path!r}: no such file or directory (expected a .wandb file, a run "
            "directory or a wandb/ folder)"
        ) from exc


def serve(
    paths: Sequence[str] = (),
    synthetic: Sequence[str] = (),
    demo: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    *,
    entity: str | None = None,
    project: str | None = None,
    warm: bool = False,
    announce: bool = False,
    service: ServiceModel | None = None,
    _block: bool = True,
) -> Emulator:
    """Serve local `paths`, `synthetic` specs and/or the demo project; block until a signal.

    `entity` / `project` name local runs whose files carry none (passed to the local reader);
    `warm` pre-encodes every row before binding (benchmarks). `announce` prints the ``export`` lines
    and the projects served after the first line (module doc). `service` sets how unkind the
    emulator is (`connector.emulator.service`; default: the realistic `ServiceModel()`).

    Returns the (stopped) emulator when the server ends; with ``_block=False`` returns it running.
    A bad port, spec, key or path, or an address in use, raises `ConfigurationError` before serving.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"--port must be in 0..65535 (0 picks a free port), got {port!r}")
    if api_key is not None and len(api_key) < MIN_API_KEY_LENGTH:
        raise ConfigurationError(
            f"--api-key must be at least {MIN_API_KEY_LENGTH} characters (got {len(api_key)}), "
            "as W&B keys are"
        )
    runs: list[Any] = []
    for spec in synthetic:
        runs.extend(synthetic_runs(SyntheticSpec.parse(spec)))
    if demo:
        from .demo_runs import demo_runs

        runs.extend(demo_runs())
    for path in paths:
        runs.extend(load_local_runs(path, entity=entity, project=project))
    emu = Emulator(runs, api_key=api_key, service=service)
    if warm:
        emu.warm()
    try:
        emu.start(host=host, port=port)
    except OSError as exc:  # address in use, a host that is not local, an unknown host name
        why = exc.strerror or str(exc)
        raise ConfigurationError(f"cannot listen on {host}:{port}: {why}") from exc
    hint = (
        f"API key: {emu.api_key}"
        if emu.api_key == DEFAULT_API_KEY
        else "API key: the one you passed"
    )
    print(f"Serving W&B API emulator at {emu.base_url} ({hint})", flush=True)
    if announce:
        print(announcement(emu.base_url, emu.api_key, runs), flush=True)
    if not _block:
        return emu
    done = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        done.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        emu.stop()
    return emu


def announcement(base_url: str, api_key: str, runs: Sequence[Any]) -> str:
    """The lines `serve` prints with ``announce=True`` (no trailing newline).

    >>> from connector.core.rundata import MemoryRun, RunMeta
    >>> runs = [MemoryRun(RunMeta("local", "wandb", r)) for r in ("a", "b")] + [MemoryRun(RunMeta("e", "p", "c"))]
    >>> print(announcement("http://127.0.0.1:8080", "k" * 40, runs))  # doctest: +ELLIPSIS
    export WANDB_BASE_URL=http://127.0.0.1:8080
    export WANDB_API_KEY=kkkk...
    project local/wandb: 2 runs
    project e/p: 1 run
    """
    lines = [f"export WANDB_BASE_URL={shlex.quote(base_url)}", f"export WANDB_API_KEY={shlex.quote(api_key)}"]
    counts = Counter(f"{run.meta.entity}/{run.meta.project}" for run in runs)
    for project, n in counts.items():
        lines.append(f"project {project}: {n} run{'' if n == 1 else 's'}")
    if not counts:
        lines.append("no runs served (give --demo, --synthetic SPEC or local .wandb paths)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m connector.emulator [--demo] [--synthetic SPEC]... [--host H] [--port P] [PATH...]``."""
    import argparse
    import os

    p = argparse.ArgumentParser(
        prog="python -m connector.emulator", description=__doc__.splitlines()[0]
    )
    p.add_argument("paths", nargs="*", help="local .wandb files or run directories")
    p.add_argument(
        "--synthetic", action="append", default=[], metavar="E/P:runs=R,steps=N,keys=K[,seed=S]"
    )
    p.add_argument("--demo", action="store_true", help="serve the demo/mnist project")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--warm", action="store_true", help="pre-encode every row before serving")
    add_service_arguments(p)
    a = p.parse_args(argv)
    if not (a.paths or a.synthetic or a.demo):
        a.demo = True
    try:
        serve(
            a.paths,
            a.synthetic,
            a.demo,
            a.host,
            a.port,
            os.environ.get("WANDB_EMULATOR_API_KEY") or None,  # empty: the default key
            warm=a.warm,
            service=service_from_arguments(a),
        )
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
