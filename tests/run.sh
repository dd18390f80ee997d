#!/usr/bin/env bash
# The test command: installs the project with its test extras into .venv (unless VENV is set),
# provisions a throwaway PostgreSQL server when none is reachable, runs pytest, stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install --quiet -e '.[test]'

# shellcheck source=tests/postgres.sh
source tests/postgres.sh
start_postgres
trap stop_postgres EXIT

lint=(connector tests)
[ -d benchmarks ] && lint+=(benchmarks)
"$VENV/bin/python" -m ruff check "${lint[@]}"
# the type check: the whole connector package, core and remote strictly ([tool.mypy] in pyproject.toml)
"$VENV/bin/python" -m mypy --config-file pyproject.toml
# both cores, one test file per worker (a file's fixtures — emulators, Ray, Spark — stay in one
# process); PYTEST_WORKERS=0 runs in one process
"$VENV/bin/python" -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile -m "not alone" "$@"
# then the tests marked `alone` (Ctrl-C timed against a multi-process export, whose worker processes
# another file's load would slow past the moment), one at a time; 5 = none selected by "$@"
"$VENV/bin/python" -m pytest -p no:xdist -m alone "$@" || [ $? -eq 5 ]
