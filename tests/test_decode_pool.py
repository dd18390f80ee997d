"""``Api(processes=N)``: live pages decoded into Arrow by worker processes (`connector.core.decode`).

Against the emulator's live pages over real HTTP: the same batches as decoding in-process (a
second code path of the same definition), whatever the mix of pages decoded here and elsewhere; a
worker killed mid-scan costs nothing but time. The hostile-server suite runs every corrupted answer
through this path too (``to_arrow_processes`` in `tests/test_hostile_server.py`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from connector import Api
from tests.compare import assert_same_rows


@pytest.fixture(scope="module")
def papi(live_emulator: Any) -> Iterator[Api]:
    api = Api(api_key=live_emulator.api_key, base_url=live_emulator.base_url, processes=2)
    try:
        yield api
    finally:
        api.close()


def _same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema == want.schema
    assert got.num_rows == want.num_rows > 0
    assert_same_rows(got.to_pylist(), want.to_pylist())  # NaN-aware, integral floats stay floats


def test_processes_give_the_same_batches_as_in_process_decoding(papi, live_api, live_paths):
    for path in live_paths:
        want = live_api.run(path).scan_history(page_size=300).to_arrow()
        got = papi.run(path).scan_history(page_size=300).to_arrow()
        _same(got, want)
        with_steps = dict(min_step=700, max_step=1900, page_size=250)
        _same(papi.run(path).scan(**with_steps).to_arrow(), live_api.run(path).scan(**with_steps).to_arrow())
    assert papi.decode_pool is not None and papi.decode_pool.started  # the pages went to the workers


def test_pages_decoded_here_and_elsewhere_keep_one_order(papi, live_api, live_paths):
    """Keyed and column scans read `sampledHistory` pages, decoded here; full rows go to the
    workers. Both kinds in one stream of batches stay in step order with the same rows."""
    path = live_paths[0]
    for scan in (lambda a: a.run(path).scan(columns=["loss"], page_size=200),
                 lambda a: a.run(path).scan_history(keys=["loss"], page_size=200)):  # fmt: skip
        _same(scan(papi).to_arrow(), scan(live_api).to_arrow())


def test_a_worker_killed_mid_scan_costs_only_time(live_emulator, live_api, live_paths):
    api = Api(api_key=live_emulator.api_key, base_url=live_emulator.base_url, processes=2)
    try:
        path = live_paths[1]
        batches = api.run(path).scan_history(page_size=100).to_batches()
        got = [next(batches)]
        pool = api.decode_pool
        executor = pool.workers.current if pool is not None else None
        assert executor is not None
        victims = list(executor._processes)  # type: ignore[attr-defined]  # the executor's workers
        os.kill(victims[0], signal.SIGKILL)
        got += list(batches)
        assert pool.restarts >= 1  # the pool was replaced, the pages it held decoded again
        want = live_api.run(path).scan_history(page_size=100).to_arrow()
        _same(pa.Table.from_batches(got, schema=want.schema), want)
        # the replacement pool serves the next scan
        _same(api.run(path).scan_history(page_size=100).to_arrow(), want)
    finally:
        api.close()


def test_processes_must_be_a_whole_number(live_emulator):
    from connector.errors import ConfigurationError

    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ConfigurationError, match="processes"):
            Api(api_key=live_emulator.api_key, base_url=live_emulator.base_url, processes=bad)
