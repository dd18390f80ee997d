"""Shared pytest fixtures: a session-wide W&B API emulator, its API key, and SDK subprocess env.

* ``api_key``: the key the shared emulator accepts (46 chars, not the emulator's default key).
* ``emulator``: a session-scoped, started `connector.emulator.Emulator` serving
  ``SHARED_SPEC`` (project ``test/synthetic``: 3 runs x 2500 rows, 12 user keys, seed 7; run 0 dense
  from step 0, run 1 from step 1000, run 2 with a 5000-step gap). Treat it as read-only: do not
  append, truncate, change states or set faults on it (use ``make_emulator``).
* ``api``: a connector `Api` for the shared emulator; ``paths``: its three runs in a fixed order.
* ``live_emulator``, ``live_api``, ``live_paths``: the same runs served as live pages only, for
  suites that count live history requests (the shared emulator keeps finished runs in Parquet).
* ``make_emulator``: a factory ``make_emulator(spec_or_runs, **kwargs) -> Emulator`` for tests that
  mutate data or inject faults; every emulator it makes is stopped at the end of the test.
* ``sdk_env``: an environment dict for running the official ``wandb`` SDK in a subprocess with all
  of its files under a temporary folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SHARED_SPEC = "test/synthetic:runs=3,steps=2500,keys=12,seed=7"


def live_service() -> Any:
    """The service model of the shared emulators: the realistic defaults, every unkindness of the
    real service (finished runs' history in Parquet exports, random downsampling below `samples`,
    the SDK's request limits, stale line counts of running runs). Suites that count live page
    requests ask for ``ServiceModel(parquet_history="none")`` themselves."""
    from connector.emulator.service import ServiceModel

    return ServiceModel()


def live_pages_service() -> Any:
    """The realistic model with every history row served as live pages (no Parquet exports): for
    the suites whose subject is live paging (request counts, pushdown into GraphQL requests,
    faults on history requests, the official SDK's live-page rows)."""
    from connector.emulator.service import ServiceModel

    return ServiceModel(parquet_history="none")


@pytest.fixture(scope="session", autouse=True)
def parquet_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Downloaded Parquet exports go to a folder of this test session, never the user's cache."""
    import os

    folder = tmp_path_factory.mktemp("wandb-cache")
    old = os.environ.get("WANDB_CACHE_DIR")
    os.environ["WANDB_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("WANDB_CACHE_DIR", None)
    else:
        os.environ["WANDB_CACHE_DIR"] = old
TEST_API_KEY = "test-" + "5eed" * 10


@pytest.fixture(scope="session")
def api_key() -> str:
    return TEST_API_KEY


@pytest.fixture(scope="session")
def emulator(api_key: str) -> Iterator[Any]:
    from connector.emulator import Emulator, synthetic_runs

    emu = Emulator(synthetic_runs(SHARED_SPEC), api_key=api_key, service=live_service()).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="session")
def live_emulator(api_key: str) -> Iterator[Any]:
    """The shared runs (``SHARED_SPEC``) served as live pages only (`live_pages_service`)."""
    from connector.emulator import Emulator, synthetic_runs

    emu = Emulator(synthetic_runs(SHARED_SPEC), api_key=api_key, service=live_pages_service()).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="session")
def live_api(live_emulator: Any) -> Any:
    from connector import Api

    return Api(api_key=live_emulator.api_key, base_url=live_emulator.base_url)


@pytest.fixture(scope="session")
def live_paths(live_emulator: Any) -> list[str]:
    by_name = {live_emulator.run(*p.split("/")).meta.display_name: p for p in live_emulator.paths()}
    return [by_name["synthetic-1"], by_name["synthetic-2"], by_name["synthetic-3"]]


@pytest.fixture(scope="session")
def api(emulator: Any) -> Any:
    """A connector `Api` for the shared emulator."""
    from connector import Api

    return Api(api_key=emulator.api_key, base_url=emulator.base_url)


@pytest.fixture(scope="session")
def paths(emulator: Any) -> list[str]:
    """The shared runs: [dense from step 0, from step 1000 with sparse keys, a 5000-step gap]."""
    by_name = {emulator.run(*p.split("/")).meta.display_name: p for p in emulator.paths()}
    return [by_name["synthetic-1"], by_name["synthetic-2"], by_name["synthetic-3"]]


@pytest.fixture
def make_emulator(api_key: str) -> Iterator[Callable[..., Any]]:
    from connector.emulator import Emulator, synthetic_runs

    made: list[Any] = []

    def make(runs: Any = "e/p:runs=3,steps=300,keys=12,seed=3", **kwargs: Any) -> Any:
        if isinstance(runs, str):
            runs = synthetic_runs(runs)
        kwargs.setdefault("api_key", api_key)
        kwargs.setdefault("service", live_service())
        emu = Emulator(runs, **kwargs).start()
        made.append(emu)
        return emu

    try:
        yield make
    finally:
        for emu in made:
            emu.stop()


@pytest.fixture
def sdk_env(tmp_path: Path) -> dict[str, str]:
    from tests.wandb_files import sdk_env as offline_sdk_env

    env = offline_sdk_env(tmp_path / "sdk-home")
    env.pop("WANDB_MODE")  # online: the SDK talks to an emulator
    return env


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "export chaos test (tests/test_export_chaos.py)")
    group.addoption(
        "--chaos-long",
        action="store_true",
        default=False,
        help="run the export chaos test longer: more steps, more kill -9, several seeds",
    )
    group.addoption(
        "--chaos-seed",
        type=int,
        default=None,
        help="run the export chaos test with this one seed (the seeds are printed by the test)",
    )
    fuzz = parser.getgroup("fuzz", "hostile .wandb files fuzzer (tests/test_hostile_files.py)")
    fuzz.addoption(
        "--fuzz-long",
        action="store_true",
        default=False,
        help="fuzz thousands of mutated .wandb files (a random seed unless --fuzz-seed is given)",
    )
    fuzz.addoption(
        "--fuzz-seed",
        type=int,
        default=None,
        help="replay the .wandb fuzzer with this seed (printed with every failure)",
    )
