"""The wheel ships every package of the tree and the SQL files (packages are listed explicitly)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "connector").rglob("__init__.py")
    }
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"
    assert config["package-dir"]["connector.sql"] == "sql"
    assert (ROOT / "sql" / "__init__.py").exists() and list((ROOT / "sql").glob("*.sql"))


def test_wheel_ships_the_typed_marker() -> None:
    """PEP 561: type checkers read the package's annotations only if py.typed is installed."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert (ROOT / "connector" / "py.typed").is_file()
    assert "py.typed" in config["package-data"]["connector"]
