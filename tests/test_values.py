"""`history_keys_from_rows` (column-wise) equals a row-by-row count of flattened value types."""

from __future__ import annotations

from collections import Counter

from connector.core.values import flatten_row, history_keys_from_rows, value_type
from connector.emulator import synthetic_runs


def row_by_row(rows):
    counts: dict[str, Counter[str]] = {}
    last = -1
    for row in rows:
        step = row.get("_step")
        if isinstance(step, int) and step > last:
            last = step
        for key, value in flatten_row(row)[0].items():
            counts.setdefault(key, Counter())[value_type(value)] += 1
    keys = {k: {"typeCounts": [{"type": t, "count": n} for t, n in sorted(c.items())]}
            for k, c in counts.items()}
    return {"keys": keys, "lastStep": last}


def test_column_wise_counts_equal_row_by_row_counts():
    run = synthetic_runs("e/p:runs=3,steps=9000,keys=14,seed=3")[2]  # sparse keys, a gap
    rows = run.rows(0, len(run.steps()))
    rows.append({"_step": 10**7, "a": {"b": None, "c": {"_type": "image-file"}, "d": {}},
                 "l": (1, 2), "n": None, "flag": True, "m": [1], "loss": "diverged"})
    assert history_keys_from_rows(rows) == row_by_row(rows)
    assert history_keys_from_rows([]) == {"keys": {}, "lastStep": -1}
