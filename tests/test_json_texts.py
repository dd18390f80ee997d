"""The vectorised JSON text of columnar cells equals the per-value text (`dumps_json`), its definition."""

from __future__ import annotations

import json
import math
import random
import struct

import pyarrow as pa
import pytest

from connector.core.arrow import _json_text, json_texts


def _random_float(rng: random.Random) -> float:
    pick = rng.random()
    if pick < 0.4:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        return value if math.isfinite(value) else 0.25
    if pick < 0.7:
        return rng.uniform(-1e6, 1e6)
    if pick < 0.85:
        return float(rng.randint(-(10**17), 10**17))
    return rng.choice([0.0, -0.0, 1e-7, 1e15, 1e16, 1e21, 5e-324, 1.7976931348623157e308, 0.1, 123456789.0])


def _random_text(rng: random.Random) -> str:
    chars = [chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)])) for _ in range(rng.randint(0, 6))]
    if rng.random() < 0.05:
        chars.append("null")  # the text dumps_json re-encodes with the standard library
    return "".join(chars)


def _histogram(rng: random.Random) -> dict[str, object]:
    n = rng.randint(0, 5)
    return {
        "_type": "histogram",
        "bins": [_random_float(rng) for _ in range(n + 1)],
        "values": [rng.randint(-(2**63), 2**63 - 1) for _ in range(n)],
        "caption": _random_text(rng),
        "ok": rng.random() < 0.5,
    }


def _same(vectorised: str | None, per_value: str | None) -> None:
    if per_value is None or vectorised is None:
        assert vectorised == per_value
        return
    if "null" in per_value:  # the standard library's float spelling may differ (1e+16 vs 1e16)
        assert json.loads(vectorised) == json.loads(per_value)
    else:
        assert vectorised == per_value


@pytest.mark.parametrize("seed", range(4))
def test_media_structs_and_lists_encode_as_per_value(seed: int) -> None:
    rng = random.Random(seed)
    cells = [None if rng.random() < 0.1 else _histogram(rng) for _ in range(3000)]
    array = pa.array(cells)
    for got, want in zip(json_texts(array).to_pylist(), [_json_text(v) for v in array.to_pylist()], strict=True):
        _same(got, want)
    lists = pa.array([None if c is None else c["bins"] for c in cells])
    for got, want in zip(json_texts(lists).to_pylist(), [_json_text(v) for v in lists.to_pylist()], strict=True):
        _same(got, want)


def test_non_finite_and_inner_nulls_keep_the_logged_value() -> None:
    array = pa.array([{"_type": "h", "bins": [1.0, float("nan")], "x": None}, {"_type": "h", "bins": [float("-inf")], "x": 2}])
    assert json_texts(array).to_pylist() == ['{"_type":"h","bins":[1.0,NaN]}', '{"_type":"h","bins":[-Infinity],"x":2}']
    assert json_texts(pa.array([[1.5, float("inf")], None])).to_pylist() == ["[1.5,Infinity]", None]


def test_types_the_vectorised_encoder_would_spell_differently_go_value_by_value() -> None:
    single = pa.array([[0.1]], pa.list_(pa.float32()))
    assert json_texts(single).to_pylist() == [json.dumps([float(pa.scalar(0.1, pa.float32()).as_py())], separators=(",", ":"))]
    assert json_texts(pa.array([b'{"a": NaN}'])).to_pylist() == ['{"a":NaN}']
    assert json_texts(pa.nulls(2)).to_pylist() == [None, None]
