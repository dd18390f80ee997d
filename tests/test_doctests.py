"""Every module's docstring examples run: one test per module of the `connector` package.

The modules are found with `pkgutil.walk_packages` (``__main__`` modules, which run a program on
import, are left out), and `test_every_module_file_is_collected` checks that walk against the files
on disk, so a new module is tested without being listed anywhere. The optional engines
(`connector.engines.ray`, `connector.engines.spark`) run too: the ``test`` extra installs Ray and
PySpark.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import connector

ROOT = Path(connector.__file__).resolve().parent


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} to look for its submodules")


def doctest_modules() -> list[str]:
    """Every module of the package, ``__main__`` modules left out, sorted."""
    found = {"connector"}
    for info in pkgutil.walk_packages(connector.__path__, "connector.", onerror=_raise):
        if info.name.rpartition(".")[2] != "__main__":
            found.add(info.name)
    return sorted(found)


MODULES = doctest_modules()


def test_every_module_file_is_collected() -> None:
    on_disk = set()
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        on_disk.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert on_disk == set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
