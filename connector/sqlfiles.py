"""Load the SQL files shipped in `sql/` (installed as the package `connector.sql`).

>>> "CREATE TABLE" in sql_text("runs_table")
True
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent / "sql"


@cache
def sql_text(name: str) -> str:
    """The text of `sql/<name>.sql`, from the checkout or the installed package."""
    local = _CHECKOUT / f"{name}.sql"
    if local.is_file():
        return local.read_text(encoding="utf-8")
    return resources.files("connector.sql").joinpath(f"{name}.sql").read_text(encoding="utf-8")
