"""Shared helpers for the benchmarks in ``benchmarks/``: machine description, emulator process, child runs.

Import it from a benchmark script that runs as ``python benchmarks/<name>.py`` (the script's folder is
then on ``sys.path``; importing this module puts the repository root there too)::

    from _common import EmulatorProcess, machine_info, run_child, sdk_env

This module imports only the standard library at import time (psutil lazily), so a measured child
process that imports it does not grow by more than a few hundred kB.

Method notes (shared by every benchmark that uses these helpers):

* **One fresh process per measurement** (`run_child`), so imports, caches and allocator state never
  carry over between measurements, and a process's peak RSS is its own.
* **Peak RSS of the child.** `run_child` reaps the child with ``os.wait4`` and reports that child's
  own ``ru_maxrss`` (``RUSAGE_CHILDREN`` would be the maximum over *all* children reaped so far, so
  it can only grow between measurements). A child that spawns helpers (the official SDK starts
  ``wandb-core``) reads their ``VmHWM`` itself just before it exits, with `peak_rss_report`: a
  helper dies with its parent, so the parent cannot read it afterwards.
* **ru_maxrss counts the memory map the child inherited before exec.** Keep the orchestrating process
  small (no pyarrow/polars/wandb imports there), or its RSS at fork time becomes the floor of every
  child's ``ru_maxrss``. `peak_rss_report` also gives ``/proc/self/status`` ``VmHWM`` (per address
  space, so exec resets it) as a cross-check.
* **The emulator runs in its own process** (`EmulatorProcess`), pre-encoded with ``--warm``, so it never
  competes with the measured client for the GIL or for memory, and its CPU time can be read apart
  (`EmulatorProcess.cpu_seconds`).
* **Other load.** `CpuMeter` measures system-wide busy CPU seconds over a measurement; subtracting the
  CPU of the processes we know gives the CPU used by everything else on the machine (noise).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (put on ``PYTHONPATH`` of every child so ``import connector`` works)."""
RESULTS = ROOT / "benchmarks" / "results"
"""Where each benchmark writes its ``<name>.md``."""

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # ``import connector`` in the script itself, from any folder

DEFAULT_PACKAGES = (
    "pyarrow",
    "polars",
    "duckdb",
    "orjson",
    "numpy",
    "requests",
    "urllib3",
    "psutil",
    "wandb",
)
LIVE_PAGES = ("--parquet-history", "none")
"""Emulator flags that serve every run's history as live pages: the emulator (like the service)
otherwise keeps finished runs' history in Parquet files, which the connector reads instead of
pages. The scan, export and concurrency benchmarks measure live paging, so they pass these."""
SERVING_LINE = re.compile(r"Serving W&B API emulator at (http://\S+)(?: \(API key: (\S+)\))?")


# -- machine ------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_kb(name: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def package_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of `packages` (``"-"`` when a package is missing)."""
    out: dict[str, str] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def machine_info(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """A description of this machine: CPUs, RAM, OS, Python, package versions, current load.

    >>> info = machine_info(["orjson"])
    >>> sorted(info) == sorted(["nproc", "cpu_model", "ram_gib", "swap_gib", "kernel", "python",
    ...                         "packages", "loadavg"])
    True
    """
    mem = _meminfo_kb("MemTotal")
    swap = _meminfo_kb("SwapTotal")
    return {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": round(mem / 2**20, 1) if mem else None,
        "swap_gib": round(swap / 2**20, 1) if swap is not None else None,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": package_versions(packages),
        "loadavg": tuple(round(x, 2) for x in os.getloadavg()),
    }


def machine_markdown(info: Mapping[str, Any]) -> str:
    """`machine_info` as a few markdown bullet lines."""
    pkgs = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    load = " / ".join(str(x) for x in info["loadavg"])
    return "\n".join(
        [
            f"- {info['nproc']} CPUs ({info['cpu_model']}), {info['ram_gib']} GiB RAM, "
            f"swap {info['swap_gib']} GiB, {info['kernel']}",
            f"- {info['python']}; {pkgs}",
            f"- load average (1/5/15 min) when the description was taken: {load}",
        ]
    )


# -- the run and its results -------------------------------------------------------------------


def command_line(args: Sequence[str] | None = None) -> str:
    """The running benchmark's command as typed from the repository root (`args`: its arguments,
    default ``sys.argv[1:]``), for the results file.

    >>> command_line(["--quick"]).endswith(".py --quick")
    True
    """
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else script.name
    return shlex.join(["python", shown, *(sys.argv[1:] if args is None else args)])


def write_result(path: str | os.PathLike[str], text: str) -> Path:
    """Write a results file (making its folder) and print where it went."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    shown = out.resolve().relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out
    print(f"wrote {shown}", flush=True)
    return out


# -- child processes -------------------------------------------------------------------------------


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """`os.environ` with the repository root first on ``PYTHONPATH`` (plus `extra`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def sdk_env(
    folder: str | os.PathLike[str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """An environment for the official SDK with every file it writes under `folder`.

    As the SDK documents for offline use: ``HOME``, ``WANDB_CACHE_DIR``,
    ``WANDB_CONFIG_DIR``, ``WANDB_DATA_DIR``, ``XDG_CACHE_HOME``, ``TMPDIR`` under `folder`;
    ``WANDB_ERROR_REPORTING=false`` (no telemetry), ``WANDB_SILENT=true``; no ``WANDB_*`` settings
    inherited from the caller.
    """
    env = child_env()
    for name in [k for k in env if k.startswith("WANDB_")]:
        del env[name]
    base = Path(folder)
    for name, sub in (
        ("HOME", "home"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_DATA_DIR", "data"),
        ("XDG_CACHE_HOME", "xdg"),
        ("TMPDIR", "tmp"),
    ):
        (base / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(base / sub)
    env["WANDB_ERROR_REPORTING"] = "false"
    env["WANDB_SILENT"] = "true"
    env.update(extra or {})
    return env


@dataclass
class ChildResult:
    """One finished child process."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    maxrss_kb: int
    """The child's own ``ru_maxrss`` from ``os.wait4`` (kB on Linux)."""
    user_s: float
    system_s: float

    def json(self) -> dict[str, Any]:
        """The child's report: its whole stdout as one JSON object (``--json`` output, indented or
        not), else the last stdout line that parses as a JSON object."""
        try:
            whole = json.loads(self.stdout)
        except ValueError:
            whole = None
        if isinstance(whole, dict):
            return whole
        for line in reversed(self.stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        raise RuntimeError(
            f"child {self.argv!r} printed no JSON report (rc={self.returncode})\n"
            f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-4000:]}"
        )

    def check(self) -> ChildResult:
        if self.returncode != 0:
            raise RuntimeError(
                f"child {self.argv!r} failed with rc={self.returncode}\n"
                f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-4000:]}"
            )
        return self


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    cwd: str | os.PathLike[str] | None = None,
) -> ChildResult:
    """Run `argv` to completion; return its output, wall time and its own peak RSS and CPU.

    The child is reaped with ``os.wait4`` so the rusage is that child's alone. On timeout the child's
    process group is killed and the result has ``returncode = -SIGKILL``.
    """
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=dict(env) if env is not None else child_env(),
            cwd=cwd,
            start_new_session=True,
        )
        killer = threading.Timer(timeout, _kill_group, (proc.pid,))
        killer.start()
        try:
            assert proc.stdout is not None
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        err.seek(0)
        return ChildResult(
            list(argv),
            proc.returncode,
            out,
            err.read(),
            wall,
            usage.ru_maxrss,
            usage.ru_utime,
            usage.ru_stime,
        )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- inside a measured child ------------------------------------------------------------------------


def proc_status_kb(pid: int | str, field_name: str = "VmHWM") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmHWM`` = peak RSS of that address space)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_report() -> dict[str, Any]:
    """Call at the end of a measured child, with its data still alive.

    Returns ``{"ru_maxrss_kb", "vmhwm_kb", "cpu_s", "children": [{"pid", "name", "vmhwm_kb", "cpu_s"}]}``:
    this process's ``ru_maxrss``, ``VmHWM`` and CPU seconds so far, and the ``VmHWM`` and CPU seconds of every live
    descendant (for the SDK: ``wandb-core``). Needs psutil only when there are descendants.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report: dict[str, Any] = {
        "ru_maxrss_kb": usage.ru_maxrss,
        "vmhwm_kb": proc_status_kb("self"),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "children": [],
    }
    try:
        import psutil
    except ImportError:
        return report
    for child in psutil.Process().children(recursive=True):
        try:
            cpu = child.cpu_times()
            report["children"].append(
                {
                    "pid": child.pid,
                    "name": child.name(),
                    "vmhwm_kb": proc_status_kb(child.pid),
                    "cpu_s": cpu.user + cpu.system,
                }
            )
        except psutil.Error:
            continue
    return report


def descendants_cpu_s() -> float:
    """CPU seconds used so far by the live descendants of this process (0 without psutil)."""
    try:
        import psutil
    except ImportError:
        return 0.0
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            cpu = child.cpu_times()
            total += cpu.user + cpu.system
        except psutil.Error:
            continue
    return total


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- system-wide CPU --------------------------------------------------------------------------------


def _busy_seconds() -> float:
    """System-wide busy CPU seconds since boot (all of /proc/stat's cpu line but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is inside user.
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """Busy CPU seconds of the whole machine between `start` and `stop`."""

    started: float = 0.0
    busy_s: float = 0.0
    wall_s: float = 0.0
    _t0: float = field(default=0.0, repr=False)

    def start(self) -> CpuMeter:
        self.started = _busy_seconds()
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> CpuMeter:
        self.busy_s = _busy_seconds() - self.started
        self.wall_s = time.perf_counter() - self._t0
        return self


# -- the emulator in its own process ------------------------------------------------------------


class EmulatorProcess:
    """``python -m connector.emulator --synthetic SPEC... --warm --port 0`` in its own process.

    >>> with EmulatorProcess(["e/p:runs=1,steps=10,keys=3"]) as emu:  # doctest: +SKIP
    ...     emu.url, emu.counters()["requests"]
    """

    def __init__(
        self,
        synthetic: Sequence[str],
        *,
        warm: bool = True,
        api_key: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 600.0,
    ) -> None:
        argv = [sys.executable, "-m", "connector.emulator", "--port", "0"]
        for spec in synthetic:
            argv += ["--synthetic", spec]
        if warm:
            argv.append("--warm")
        argv += list(extra_args)
        env = child_env({"WANDB_EMULATOR_API_KEY": api_key or ""})
        self.argv = argv
        self.started = time.perf_counter()
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115  # closed in stop(); never a pipe: nobody drains it while serving
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.url, printed_key = self._read_url(startup_timeout)
        self.startup_s = time.perf_counter() - self.started
        # Without a key of ours the emulator uses DEFAULT_API_KEY and prints it; reading it from
        # that line keeps connector.emulator (numpy, graphql-core) out of this process.
        self.api_key = api_key or printed_key or ""

    def _read_url(self, timeout: float) -> tuple[str, str | None]:
        assert self.proc.stdout is not None
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        match = SERVING_LINE.search(line)
        if not match:
            self.proc.kill()
            self.proc.wait()
            self._stderr.seek(0)
            raise RuntimeError(f"emulator did not start: {line!r}\n{self._stderr.read()[-3000:]}")
        return match.group(1), match.group(2)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _call(self, method: str, path: str) -> Any:
        req = urllib.request.Request(
            self.url + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def counters(self) -> dict[str, Any]:
        """``GET /_emulator/counters``."""
        return self._call("GET", "/_emulator/counters")

    def reset(self) -> None:
        """``POST /_emulator/reset`` (zero the counters)."""
        self._call("POST", "/_emulator/reset")

    def runs(self) -> list[str]:
        """``GET /_emulator/runs``: the ``entity/project/id`` paths served."""
        return list(self._call("GET", "/_emulator/runs")["runs"])

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the emulator process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> tuple[int | None, int | None]:
        """(VmRSS, VmHWM) of the emulator process."""
        return proc_status_kb(self.pid, "VmRSS"), proc_status_kb(self.pid, "VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- statistics ------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """``"median [min..max]"`` (just the value for one sample)."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} [{fmt.format(min(values))}..{fmt.format(max(values))}]"
