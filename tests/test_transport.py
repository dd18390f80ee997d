"""Transport over real HTTP against the emulator: retries, typed errors, and no leaked API key."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from connector import Api
from connector.emulator import FaultSpec
from connector.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from connector.remote.transport import RetryPolicy, Transport, _retry_after_seconds
from tests.compare import assert_same_rows

FAST = RetryPolicy(max_attempts=30, deadline=30, initial_wait=0.001, max_wait=0.01)


def _api(emu: Any, **kw: Any) -> Api:
    return Api(api_key=emu.api_key, base_url=emu.base_url, retry=kw.pop("retry", FAST), **kw)


def _truth(emu: Any, path: str) -> list[dict[str, Any]]:
    run = emu.run(*path.split("/"))
    return run.rows(0, len(run.steps()))


@pytest.mark.parametrize("kinds", [("429",), ("500", "502", "503"), ("reset",), ("truncate",)])
def test_scans_survive_faults_with_identical_rows(make_emulator: Any, kinds: tuple[str, ...]) -> None:
    emu = make_emulator("f/p:runs=1,steps=1500,keys=12,seed=5")
    path = emu.paths()[0]
    api = _api(emu)
    run = api.run(path)
    emu.set_faults(FaultSpec(rate=0.4, kinds=kinds, seed=11, retry_after=0.01))
    rows = list(run.scan_history(page_size=100))
    table = run.scan(page_size=100).to_arrow()
    emu.set_faults(None)
    assert_same_rows(rows, _truth(emu, path))
    assert_same_rows(table.to_pylist(), _truth(emu, path))
    status = emu.counters()["status"]
    injected = sum(status.get(k, 0) for k in ("429", "500", "502", "503", "reset", "truncate"))
    assert injected > 0 and api.transport.stats["retries"] >= injected


def test_retry_after_is_honoured(make_emulator: Any) -> None:
    emu = make_emulator("f/p:runs=1,steps=10,keys=3,seed=5")
    api = _api(emu, retry=RetryPolicy(max_attempts=5, initial_wait=0.001, max_wait=0.001))
    emu.set_faults(FaultSpec(rate=1.0, kinds=("429",), retry_after=0.2))
    start = time.monotonic()
    with pytest.raises(RateLimitedError, match="HTTP 429"):
        api.run(emu.paths()[0])
    assert time.monotonic() - start >= 4 * 0.2  # four waits of Retry-After between five attempts
    assert emu.counters()["status"]["429"] == 5


def test_persistent_5xx_raises_server_error_after_the_budget(make_emulator: Any) -> None:
    emu = make_emulator("f/p:runs=1,steps=10,keys=3,seed=5")
    api = _api(emu, retry=RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.001))
    emu.set_faults(FaultSpec(rate=1.0, kinds=("503",)))
    with pytest.raises(ServerError, match="HTTP 503"):
        api.run(emu.paths()[0])
    assert emu.counters()["status"]["503"] == 3


def test_wrong_key_is_not_retried_and_not_leaked(make_emulator: Any, caplog: Any) -> None:
    emu = make_emulator("f/p:runs=1,steps=10,keys=3,seed=5")
    secret = "wrong-" + "s3cr3t" * 8
    api = Api(api_key=secret, base_url=emu.base_url, retry=FAST)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as info:
        api.run(emu.paths()[0])
    assert emu.counters()["status"].get("401") == 1
    for text in (str(info.value), repr(info.value), repr(api), repr(api.transport), caplog.text,
                 repr(api.settings)):
        assert secret not in text


def test_no_key_is_an_authentication_error(make_emulator: Any) -> None:
    emu = make_emulator("f/p:runs=1,steps=10,keys=3,seed=5")
    with pytest.raises(AuthenticationError):
        Transport(emu.base_url, None, retry=FAST).execute("{ viewer { id } }")


def test_graphql_errors_raise_protocol_error_with_the_server_message(emulator: Any) -> None:
    transport = Transport(emulator.base_url, emulator.api_key, retry=FAST)
    run_id = emulator.paths()[0].split("/")[2]
    with pytest.raises(ProtocolError, match="server error: .*spec"):
        transport.execute(
            'query($s: [JSONString!]!, $r: String!) { project(name: "synthetic", entityName: "test")'
            " { run(name: $r) { sampledHistory(specs: $s) } } }",
            {"s": ["not json"], "r": run_id},
        )


def test_invalid_document_is_a_clear_error(emulator: Any) -> None:
    transport = Transport(emulator.base_url, emulator.api_key, retry=FAST)
    with pytest.raises(TransportError, match="HTTP 400"):
        transport.execute("{ viewer { nosuchfield } }")


def test_unreachable_server_is_a_transport_error() -> None:
    api = Api(api_key="k" * 40, base_url="http://127.0.0.1:9",
              retry=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.001))
    with pytest.raises(TransportError, match="gave up after .* and 2 attempts: connection refused to http://127.0.0.1:9"):
        api.run("e/p/r")


def test_unknown_run_and_bad_paths(emulator: Any) -> None:
    api = _api(emulator)
    with pytest.raises(NotFoundError, match="test/synthetic/nosuchrun"):
        api.run("test/synthetic/nosuchrun")
    for bad in ("a/b/c/d/e", "", "e/p/r n"):
        with pytest.raises(ConfigurationError, match="run path"):
            api.run(bad)


def test_path_forms_resolve_to_the_same_run(emulator: Any) -> None:
    api = _api(emulator)
    path = emulator.paths()[0]
    e, p, r = path.split("/")
    forms = [path, f"{e}/{p}/runs/{r}", f"{e}/{p}:{r}", f"https://wandb.ai/{e}/{p}/runs/{r}?x=1",
             f"{p}/{r}"]  # project/run with the viewer's entity (asked once, like the SDK)
    assert {api.run(form).id for form in forms} == {r}
    run = api.run(path)
    assert run.path == [e, p, r] and run.storage_id and run.name == "synthetic-1"


def test_environment_configuration(emulator: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("WANDB_API_KEY", emulator.api_key)
    monkeypatch.setenv("WANDB_BASE_URL", emulator.base_url + "/")
    monkeypatch.setenv("WANDB_ENTITY", "test")
    monkeypatch.setenv("WANDB_PROJECT", "synthetic")
    run_id = emulator.paths()[0].split("/")[2]
    assert Api().run(run_id).id == run_id


def test_netrc_supplies_the_key(emulator: Any, monkeypatch: Any, tmp_path: Any) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login user\n  password {emulator.api_key}\n")
    netrc.chmod(0o600)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    api = Api(base_url=emulator.base_url)
    assert api.viewer()["entity"] == "test"


@pytest.mark.parametrize("value,expected", [("2", 2.0), ("0.5", 0.5), (None, None), ("soon", None)])
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert _retry_after_seconds(value) == expected


def test_retry_after_http_date() -> None:
    from email.utils import formatdate

    assert 8 <= _retry_after_seconds(formatdate(time.time() + 10, usegmt=True)) <= 10


def test_slow_answers_time_out_and_are_retried(make_emulator: Any) -> None:
    emu = make_emulator("f/p:runs=1,steps=300,keys=3,seed=5")
    path = emu.paths()[0]
    api = _api(emu, timeout=0.2)
    run = api.run(path)
    emu.set_faults(FaultSpec(rate=0.5, kinds=("slow",), seed=4, slow_seconds=1.0))
    rows = list(run.scan_history(page_size=50))
    emu.set_faults(None)
    assert_same_rows(rows, _truth(emu, path))
    assert api.transport.stats["retries"] > 0  # only slow answers were injected: timeouts retried
