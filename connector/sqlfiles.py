"""Load the SQL files shipped in `sql/` (installed as the package `connector.sql`).

>>> "CREATE TABLE" in sql_text("runs_table")
True
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def sql_text(name: str) -> str:
    """The text of `sql/<name>.sql`, read through the package `connector.sql` (one lookup path:
    an editable install maps it onto the checkout's `sql/` folder, a wheel ships the files)."""
    return resources.files("connector.sql").joinpath(f"{name}.sql").read_text(encoding="utf-8")
