"""The core every adapter shares: values, the Arrow column policy, the `HistorySource` seam, windows and scans.

Nothing here imports an adapter (`connector.remote`, `connector.local`, `connector.engines`,
`connector.export`, `connector.cli`); `tests/test_layers.py` holds it so.
"""
