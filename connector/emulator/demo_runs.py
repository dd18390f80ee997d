"""The demo project ``demo/mnist``: 3 runs built with the synthetic generator (seed 2024).

======  ==========  =======  ============================================================
index   state       rows     notes
======  ==========  =======  ============================================================
0       finished    3000     dense: 12 user keys on every row, steps 0..2999
1       running     2500     starts at step 1000 (steps 1000..3499); sparse keys
2       failed      4000     a gap of 5000 steps after row 2000; sparse keys
======  ==========  =======  ============================================================

Each run has 12 user keys (``loss`` .. ``tokens_seen``: nested ``train``, a histogram, a string),
a config (``lr``, ``batch_size``, ``optimizer``, ``epochs``, ``architecture``, nested ``model``),
a summary (the last row) and tags.

>>> [r.meta.state for r in demo_runs()]
['finished', 'running', 'failed']
"""

from __future__ import annotations

from .synthetic import SyntheticRun, SyntheticSpec, synthetic_runs

DEMO_SPEC = SyntheticSpec("demo", "mnist", runs=3, steps=4000, keys=12, seed=2024)
_ROWS = (3000, 2500, 4000)
_STATES = ("finished", "running", "failed")
_NAMES = ("baseline-cnn", "wide-resnet", "lr-sweep-high")
_TAGS = (["baseline", "cnn"], ["resnet", "wide"], ["sweep", "unstable"])


def demo_runs() -> list[SyntheticRun]:
    """The three demo runs (fresh objects on every call)."""
    runs = synthetic_runs(DEMO_SPEC)
    for r, run in enumerate(runs):
        run.truncate(run.base_step(_ROWS[r] - 1) + 1)
        run.meta.state = _STATES[r]
        run.meta.display_name = _NAMES[r]
        run.meta.tags = list(_TAGS[r])
        run.meta.config.update(
            {"epochs": 3 + r, "architecture": "cnn" if r == 0 else "resnet", "dataset": "mnist"}
        )
        last = run.row(len(run.steps()) - 1)
        run.meta.summary = {k: v for k, v in last.items() if not isinstance(v, float) or v == v}
    return runs
