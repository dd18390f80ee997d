"""Damaged and missing `.wandb` inputs: one bad file never hides the good runs of its folder.

The good files are written by the official `wandb` SDK in offline mode (see `tests/wandb_files.py`);
the damaged ones are a zero-length file, a file of random bytes named ``run-x.wandb`` and a
truncated copy of an SDK file. `connector.local.load_runs(on_damaged=...)` must report the files it
cannot read and return every other run; a path that does not exist is a `LocalFileError` naming it.
"""

from __future__ import annotations

import random
import shutil
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from wandb_files import Produced, diff_rows, produce, sdk_decode  # noqa: E402

import connector  # noqa: E402
from connector.core.rundata import RunData  # noqa: E402
from connector.errors import ConnectorError, LocalFileError  # noqa: E402
from connector.local import DamagedRecordWarning, load_run, load_runs  # noqa: E402
from connector.resolve import is_local_path, open_local, open_local_run, resolve_run  # noqa: E402

pytest.importorskip("wandb", reason="the official SDK produces the test files")


@dataclass
class Folder:
    """A ``wandb/`` folder of good SDK runs plus damaged files, and what each holds."""

    root: Path
    good: dict[str, tuple[Produced, dict[str, Any]]]  # run id -> (SDK output, oracle decoding)
    truncated: tuple[str, Path, dict[str, Any]]  # run id, file, oracle decoding of the full file
    empty: Path
    garbage: Path


def _place(folder: Path, run_dir: str, name: str, data: bytes) -> Path:
    target = folder / run_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


@pytest.fixture(scope="module")
def sdk_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Produced, dict[str, Any]]]:
    """Three SDK scenarios (two kept whole, one to truncate) with the oracle's decoding."""
    work = tmp_path_factory.mktemp("sdk-damaged")

    def one(name: str) -> tuple[str, tuple[Produced, dict[str, Any]]]:
        produced = produce(name, work)
        return name, (produced, sdk_decode(produced.file, work / "_sdk"))

    with ThreadPoolExecutor(3) as pool:
        return dict(pool.map(one, ("basic", "steps", "killed")))


@pytest.fixture
def folder(sdk_files: dict[str, tuple[Produced, dict[str, Any]]], tmp_path: Path) -> Folder:
    root = tmp_path / "wandb"
    good = {}
    for name in ("basic", "steps"):
        produced, oracle = sdk_files[name]
        shutil.copytree(produced.run_dir, root / produced.run_dir.name)
        good[produced.expected["run_id"]] = (produced, oracle)
    killed, killed_oracle = sdk_files["killed"]
    data = killed.file.read_bytes()
    truncated = _place(root, killed.run_dir.name, killed.file.name, data[: len(data) // 2 + 1234])
    empty = _place(root, "offline-run-20200101_000000-empty0", "run-empty0.wandb", b"")
    noise = random.Random(7).randbytes(70_000)
    garbage = _place(root, "offline-run-20200101_000001-x", "run-x.wandb", b"\x00junk" + noise)
    return Folder(root, good, (killed.expected["run_id"], truncated, killed_oracle), empty, garbage)


def _rows(run: RunData) -> list[dict[str, Any]]:
    return [run.row(i) for i in range(len(run.steps()))]


def test_on_damaged_reports_unreadable_files_and_returns_every_other_run(folder: Folder) -> None:
    reported: list[tuple[Path, LocalFileError]] = []
    runs = load_runs(folder.root, on_damaged=lambda f, e: reported.append((f, e)), running_grace=0)

    assert sorted(f for f, _ in reported) == sorted([folder.empty, folder.garbage])
    for file, error in reported:
        assert isinstance(error, LocalFileError) and file.name in str(error)
    by_id = {r.meta.run_id: r for r in runs}
    truncated_id, truncated_file, truncated_oracle = folder.truncated
    assert set(by_id) == {*folder.good, truncated_id}
    for run_id, (_, oracle) in folder.good.items():
        assert diff_rows(_rows(by_id[run_id]), oracle["rows"]) == []
        assert by_id[run_id].meta.state == "finished"

    # the truncated copy is not damaged: it reads as the run up to its last complete record
    short = by_id[truncated_id]
    full = truncated_oracle["rows"]
    assert 0 < len(short.steps()) < len(full)
    assert list(short.steps()) == [r["_step"] for r in full[: len(short.steps())]]
    assert diff_rows(_rows(short), full[: len(short.steps())]) == []
    assert short.meta.state == "crashed" and short.exit_code is None
    assert short.files == [truncated_file]

    # without on_damaged the first damaged file (in path order) stops the reading, named
    first = min(folder.empty, folder.garbage)
    with pytest.raises(LocalFileError, match=first.name):
        load_runs(folder.root)


def test_open_local_threads_on_damaged(folder: Folder) -> None:
    reported: list[Path] = []
    runs = open_local(folder.root, on_damaged=lambda f, e: reported.append(f))
    assert {r.id for r in runs} == {*folder.good, folder.truncated[0]}
    assert all(len(list(r.scan_history())) > 0 for r in runs)
    assert sorted(reported) == sorted([folder.empty, folder.garbage])

    # one run directory holding a good file and a zero-length one: still one run
    produced, oracle = next(iter(folder.good.values()))
    run_dir = folder.root / produced.run_dir.name
    (run_dir / "run-zero.wandb").write_bytes(b"")
    seen: list[Path] = []
    run = open_local_run(run_dir, on_damaged=lambda f, e: seen.append(f))
    assert run.id == produced.expected["run_id"] and seen == [run_dir / "run-zero.wandb"]
    with pytest.warns(DamagedRecordWarning, match="run-zero.wandb"):
        assert load_run(run_dir, skip_damaged=True).meta.run_id == produced.expected["run_id"]
    with pytest.raises(LocalFileError, match="run-zero.wandb"):
        open_local_run(run_dir)


def test_skip_damaged_skips_a_zero_length_file(folder: Folder, tmp_path: Path) -> None:
    with pytest.warns(DamagedRecordWarning, match=r"run-empty0\.wandb.*0 bytes"):
        assert load_runs(folder.empty, skip_damaged=True) == []
    header_start = _place(tmp_path / "w", "offline-run-20200101_000002-part", "run-part.wandb", b":W&")
    with pytest.warns(DamagedRecordWarning, match=r"run-part\.wandb"):
        assert load_runs(header_start, skip_damaged=True) == []

    folder.garbage.unlink()
    with pytest.warns(DamagedRecordWarning, match=r"run-empty0\.wandb"):
        runs = load_runs(folder.root, skip_damaged=True)
    assert {r.meta.run_id for r in runs} == {*folder.good, folder.truncated[0]}

    # with on_damaged the empty file is reported there, not warned about
    reported: list[Path] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedRecordWarning)
        runs = load_runs(folder.root, skip_damaged=True, on_damaged=lambda f, e: reported.append(f))
    assert reported == [folder.empty] and len(runs) == 3

    # a file that is not a .wandb file at all is still an error without on_damaged
    garbage = _place(tmp_path / "g", "offline-run-20200101_000003-x", "run-x.wandb", b"not a wandb file")
    with pytest.raises(LocalFileError, match=r"run-x\.wandb.*not a \.wandb file"):
        load_runs(garbage.parent, skip_damaged=True)


def test_a_missing_path_is_a_typed_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "wandb"
    message = f"no such file or folder: {missing}"
    for call in (
        lambda: load_runs(missing),
        lambda: load_runs(str(missing), on_damaged=lambda f, e: None),
        lambda: open_local(missing),
        lambda: connector.open_local(str(missing / "run-abc.wandb")),
        lambda: resolve_run(missing),  # a Path is never a run path
        lambda: resolve_run(str(missing)),  # an absolute path under an existing folder
    ):
        with pytest.raises(LocalFileError) as info:
            call()
        assert isinstance(info.value, ConnectorError)
        assert message in str(info.value) or f"{message}/run-abc.wandb" in str(info.value)

    assert is_local_path("./wandb/nowhere") and is_local_path(missing)
    assert is_local_path("wandb/offline-run-20260101_120000-abc123")
    assert not is_local_path("acme/vision/abc123") and not is_local_path("/acme/vision/abc123")
    with pytest.raises(LocalFileError, match=r"no such file or folder: \./wandb/nowhere"):
        resolve_run("./wandb/nowhere")
