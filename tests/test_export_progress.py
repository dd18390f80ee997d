"""Export progress for people and machines: `connector.export.progress` and the CLI's reports.

Unit tests drive `Progress` the way the runner does (listing, planned once, then runs from worker
threads) into a `StringIO`: plain lines when it is not a terminal, the rich live display with
``force_terminal=True``. End-to-end tests run ``python -m connector.cli export`` as a subprocess
against an in-process emulator of the demo project, with stderr a pipe (not a terminal).
"""

from __future__ import annotations

import io
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_export_support import ROOT, cli_env, run_cli  # noqa: E402

from connector.cli.export import _print_summary, interrupt_message, report_interrupt  # noqa: E402
from connector.emulator.demo_runs import demo_runs  # noqa: E402
from connector.export.progress import Progress  # noqa: E402

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # anything but "\n"
RUN_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+) (exported [\d,]+ rows steps \[\d+, \d+\)|up-to-date) in \d+\.\ds$")
RESULT_KEYS = {"run", "status", "rows", "steps", "watermark", "error"}


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _plain(interval: float = 3600.0) -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    return Progress(stream=out, interval=interval), out


# -- not a terminal: plain lines ------------------------------------------------------------------
def test_plain_lines_one_per_finished_run():
    p, out = _plain()
    for n in range(1, 5):
        p.listing(n)
    p.planned(4, 3_500)
    p.run_started("e/p/a", 1_000)
    p.rows("e/p/a", 600)
    p.rows("e/p/a", 400)
    p.run_done("e/p/a", "exported", 1_000, "steps [0, 1000)")
    p.run_started("e/p/b", 0)
    p.run_done("e/p/b", "up-to-date", 0)
    p.run_started("e/p/c", 2_500)
    p.run_done("e/p/c", "failed", 0, "HTTPError: 500 for url: http://10.0.0.1:8080/graphql\nTraceback (most recent)")
    p.run_done("e/p/d", "skipped", 0, "OffsetError: damaged block at byte 123")
    p.close()
    lines = [re.sub(r" in \d+\.\ds$", " in Xs", line) for line in out.getvalue().splitlines()]
    assert lines == [
        "export: 4 runs planned, ~3,500 rows",
        "[1/4] e/p/a exported 1,000 rows steps [0, 1000) in Xs",
        "[2/4] e/p/b up-to-date in Xs",
        "[3/4] e/p/c FAILED: HTTPError: 500 for url: <url>",
        "[4/4] e/p/d skipped: OffsetError: damaged block at byte 123",
    ]
    assert not CONTROL.search(out.getvalue()) and "://" not in out.getvalue()
    assert (p.total_rows, p.runs_done, p.runs_failed) == (1_000, 4, 1)


def test_plain_overall_line_at_most_every_interval():
    p, out = _plain(interval=0.05)
    p.listing(5)
    assert out.getvalue() == ""  # the first overall line comes one interval after the start
    time.sleep(0.06)
    p.listing(6)
    assert out.getvalue().splitlines() == ["export: listing runs, 6 so far"]  # no ETA while listing
    p.planned(20, 200_000)
    for i in range(8):
        p.run_started(f"e/p/r{i}", 10_000)
        p.rows(f"e/p/r{i}", 10_000)
        p.run_done(f"e/p/r{i}", "exported", 10_000, "steps [0, 10000)")
    time.sleep(0.06)
    p.rows("e/p/late", 0)
    last = out.getvalue().splitlines()[-1]
    assert re.fullmatch(r"export: 8/20 runs, 80,000 rows, [\d,]+ rows/s, ETA \d\d:\d\d", last), last
    # many events within one interval: at most one overall line
    before = out.getvalue().count("export: 8/20")
    for _ in range(200):
        p.rows("e/p/late", 0)
    assert out.getvalue().count("export: 8/20") - before <= 1
    # a long interval: never an overall line, only the run lines
    p2, out2 = _plain(interval=3600)
    p2.listing(1)
    p2.planned(1, 10)
    p2.run_started("e/p/x", 10)
    p2.rows("e/p/x", 10)
    assert out2.getvalue().splitlines() == ["export: 1 run planned, ~10 rows"]


def test_eta_only_once_planned_and_from_fixed_totals():
    p, _ = _plain()
    for n in range(1, 21):  # the old bar's total grew here, so its ETA was far too short
        p.listing(n)
        assert p.lines() == [f"listing runs: {n}"]
        assert p.view().left is None
    p.planned(20, 200_000)
    assert "ETA --:--" in p.lines()[0]  # totals known, no rate yet
    for i in range(8):
        p.run_started(f"e/p/r{i}", 10_000)
        p.rows(f"e/p/r{i}", 10_000)
        p.run_done(f"e/p/r{i}", "exported", 10_000)
    assert p.view().left == 120_000
    head = p.lines()[0]
    assert re.fullmatch(r" 40%  ETA \d\d:\d\d  8/20 runs  80,000/~200,000 rows  [\d,]+ rows/s", head), head
    p.run_started("e/p/short", 10_000)  # ends below its estimate: the rest stops counting
    p.rows("e/p/short", 4_000)
    assert p.view().left == 116_000
    p.run_done("e/p/short", "exported", 4_000)
    assert p.view().left == 110_000
    p.run_started("e/p/long", 10_000)  # goes beyond its estimate: never negative
    p.rows("e/p/long", 15_000)
    assert p.view().left == 100_000
    assert p.lines()[1].startswith("  e/p/long") and "15,000 of ~10,000 rows" in p.lines()[1]


def test_run_lines_are_capped_and_keep_the_run_id():
    p, _ = _plain()
    p.planned(12, 12_000)
    for i in range(12):
        p.run_started(f"an-entity/a-rather-long-project-name/run{i:02d}", 1_000)
    lines = p.lines()
    assert len(lines) == 1 + 8 + 1 and lines[-1] == "  +4 more runs in flight"
    assert all(line.split()[0].endswith(f"run{i:02d}") for i, line in enumerate(lines[1:9]))


# -- a terminal: rich ------------------------------------------------------------------------------
def test_terminal_shows_the_bar_only_after_planned():
    out = io.StringIO()
    p = Progress(stream=out, force_terminal=True)
    p.listing(3)
    listing = out.getvalue()
    assert "listing runs: 3" in listing
    assert "━" not in listing and "ETA" not in listing and "rows/s" not in listing
    p.planned(3, 3_000)
    drawn = out.getvalue()[len(listing):]
    assert "━" in drawn and "ETA" in drawn and "0/3 runs" in drawn and "0/~3,000 rows" in drawn
    p.run_started("e/p/r1", 1_000)
    p.rows("e/p/r1", 500)
    p.run_done("e/p/r1", "exported", 500, "steps [0, 500)")
    p.close()
    text = out.getvalue()
    assert text.endswith("\n") and "\x1b[?25h" in text  # the cursor is back
    final = text.rsplit("\x1b[2K", 1)[-1]  # after the live display was erased
    assert re.fullmatch(r"export: 1/3 runs, 500 rows in \d+\.\ds \([\d,]+ rows/s\)\n", final), repr(final)
    p.rows("e/p/r1", 1)
    p.close()
    assert out.getvalue() == text  # closed: nothing more


def test_terminal_is_detected_and_can_be_forced_off():
    assert Progress(stream=Tty()).terminal
    assert not Progress(stream=Tty(), force_terminal=False).terminal
    assert not Progress(stream=io.StringIO()).terminal
    assert Progress(stream=io.StringIO(), force_terminal=True).terminal
    p = Progress(stream=Tty(), force_terminal=False, interval=3600)
    p.planned(1, 1)
    assert p.stream.getvalue() == "export: 1 run planned, ~1 row\n"


def test_quiet_prints_nothing():
    for stream, force in ((Tty(), None), (io.StringIO(), None), (io.StringIO(), True)):
        p = Progress(stream=stream, quiet=True, interval=0.0, force_terminal=force)
        p.listing(1)
        p.planned(1, 10)
        p.run_started("e/p/r", 10)
        p.rows("e/p/r", 10)
        p.run_done("e/p/r", "failed", 10, "boom")
        p.close()
        assert stream.getvalue() == "" and p.total_rows == 10 and p.runs_done == 1


@pytest.mark.parametrize("terminal", [False, True])
def test_workers_in_threads(terminal):
    out = io.StringIO()
    p = Progress(stream=out, interval=0.0, force_terminal=terminal)
    p.listing(8)
    p.planned(8, 8 * 300)
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            path = f"e/p/r{i}"
            p.run_started(path, 300)
            for _ in range(300):
                p.rows(path, 1)
            p.run_done(path, "exported", 300, "steps [0, 300)")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        while not stop.is_set():
            p.lines()

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    p.close()
    assert not errors
    assert (p.total_rows, p.runs_done, p.view().left, p.view().running) == (2_400, 8, 0, ())
    text = out.getvalue()
    if terminal:
        assert "export: 8/8 runs, 2,400 rows in" in text.rsplit("\x1b[2K", 1)[-1]
        return
    overall = re.compile(r"export: \d/8 runs, [\d,]+ rows, [\d,]+ rows/s, ETA (\d\d:\d\d|--:--)")
    lines = text.splitlines()
    runs = [line for line in lines if line.startswith("[")]
    assert sorted(int(RUN_LINE.match(line).group(1)) for line in runs) == list(range(1, 9))
    assert lines[:2] == ["export: listing runs, 8 so far", "export: 8 runs planned, ~2,400 rows"]
    assert all(overall.fullmatch(line) for line in lines[2:] if not line.startswith("[")), lines  # none torn


# -- the CLI's reports -----------------------------------------------------------------------------
def _summary(**fields):
    from connector.export.runner import ExportSummary

    return ExportSummary("x.duckdb", **fields)


def test_human_summary_prints_failed_runs_one_line_each(capsys):
    _print_summary(_summary(rows=10, chunks=1, runs=3, failed={
        "e/p/a": "ValueError: bad value\nTraceback (most recent call last):", "e/p/b": "OSError: disk full",
    }))  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("exported 10 rows in 1 chunk from 3 runs to x.duckdb") and "2 failed" in err[0]
    assert err[1:] == ["  FAILED e/p/a: ValueError: bad value", "  FAILED e/p/b: OSError: disk full"]


def test_interrupt_report_says_what_was_committed_and_how_to_resume(capsys):
    from connector.export.runner import ExportInterrupted

    summary = _summary(rows=2_100, chunks=3, runs_exported=1, runs_up_to_date=1, interrupted=True)
    argv = ["export", "demo/mnist", "--to=postgresql://me:s3cret@db/wh", "--keys", "loss,acc"]
    assert report_interrupt(ExportInterrupted(summary), as_json=True, argv=argv) == 130
    out = capsys.readouterr()
    assert out.err.splitlines() == [
        "interrupted: committed 2,100 rows in 3 chunks (2 runs complete); nothing committed was lost",
        "resume with: wandb-history export demo/mnist '--to=postgresql://me:***@db/wh' --keys loss,acc",
        "  (the password is shown as ***: put it back, or leave it out and set PGPASSWORD)",
    ]
    data = json.loads(out.out)
    assert data["interrupted"] is True and data["rows"] == 2_100 and "s3cret" not in out.out + out.err
    assert report_interrupt(KeyboardInterrupt(), as_json=False, argv=["export", "e/p", "--to", "d"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "interrupted before the export started; nothing was committed",
        "resume with: wandb-history export e/p --to d",
    ]
    assert interrupt_message(None, ["-m", "pytest"])[-1].startswith("resume with: the same export")
    assert interrupt_message(None, ["-v", "export", "e/p"])[-1] == "resume with: wandb-history -v export e/p"


# -- end to end: the command line without a terminal -----------------------------------------------
@pytest.fixture
def demo(make_emulator):
    # exact line counts: the plan line's row estimate is compared with the demo's row count
    from connector.emulator.service import ServiceModel

    return make_emulator(demo_runs(), service=ServiceModel(parquet_history="none", stale_line_count=0.0))


def _history_rows(dest: str) -> int:
    con = duckdb.connect(dest, read_only=True)
    try:
        return con.execute("SELECT count(*) FROM history").fetchall()[0][0]
    finally:
        con.close()


def test_cli_prints_one_line_per_run_when_stderr_is_not_a_terminal(demo, tmp_path):
    dest = str(tmp_path / "d.duckdb")
    proc = run_cli(["demo/mnist", "--to", dest], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    err = proc.stderr
    assert not CONTROL.search(err), repr(err[:500])
    assert demo.api_key not in err and demo.base_url not in err and "://" not in err
    lines = err.splitlines()
    assert lines[0] == "export: 3 runs planned, ~9,500 rows"
    runs = [RUN_LINE.match(line) for line in lines if line.startswith("[")]
    assert len(runs) == 3 and all(runs), lines
    assert sorted(m.group(3) for m in runs) == sorted(demo.paths())
    assert [m.group(1, 2) for m in runs] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert lines[-1].startswith("exported 9,500 rows in 3 chunks from 3 runs to ")


def test_cli_json_has_per_run_results(demo, tmp_path):
    dest = str(tmp_path / "d.duckdb")
    proc = run_cli(["demo/mnist", "--to", dest, "--json"], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""  # --json: stdout is the summary, stderr stays quiet
    results = json.loads(proc.stdout)["results"]
    assert sorted(r["run"] for r in results) == sorted(demo.paths())
    for r in results:
        assert set(r) == RESULT_KEYS and r["status"] == "exported" and r["error"] is None
        assert isinstance(r["steps"], list) and len(r["steps"]) == 2 and r["watermark"] == r["steps"][1] - 1
    assert sum(r["rows"] for r in results) == 9_500
    again = json.loads(run_cli(["demo/mnist", "--to", dest, "--json"], cli_env(demo)).stdout)["results"]
    assert sorted(r["status"] for r in again) == ["exported", "up-to-date", "up-to-date"]  # the running run
    assert all(r["steps"] is None and r["rows"] == 0 for r in again if r["status"] == "up-to-date")


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_ctrl_c_says_what_was_committed_and_how_to_resume(as_json, demo, tmp_path):
    dest = str(tmp_path / "sigint.duckdb")
    args = ["demo/mnist", "--to", dest, "--chunk-steps", "700", "--concurrency", "2", "--page-size", "100",
            *(["--json"] if as_json else [])]  # fmt: skip
    demo.latency = 0.15  # the export takes > 5 s: the SIGINT at 3 s lands mid-way
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "export", *args],
        cwd=ROOT, env=cli_env(demo), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    demo.latency = 0.0
    assert proc.returncode == 130, err[-2000:]
    assert demo.api_key not in out + err and demo.base_url not in out + err
    m = re.search(
        r"^interrupted: committed ([\d,]+) rows? in ([\d,]+) chunks? \((\d+) runs? complete\); "
        r"nothing committed was lost$", err, re.M,
    )  # fmt: skip
    assert m, err[-2000:]
    committed = int(m.group(1).replace(",", ""))
    assert committed == _history_rows(dest)
    resume = re.search(r"^resume with: (.*)$", err, re.M)
    assert resume and resume.group(1) == "wandb-history export " + shlex.join(args)
    if as_json:
        data = json.loads(out)
        assert data["interrupted"] is True and data["rows"] == committed
        assert sum(r["rows"] for r in data["results"]) <= committed  # runs complete
    # the printed command resumes the export
    proc = run_cli(shlex.split(resume.group(1))[2:], cli_env(demo))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _history_rows(dest) == 9_500
