#!/usr/bin/env bash
# The test command of the README: set up (idempotent) and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh test/model -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
# shellcheck disable=SC1091
source "$ROOT/.venv/protoocc_env.sh"
cd "$ROOT"
# Lint (ruff) and type check (mypy) of the package, with the settings of pyproject.toml; then the tests.
ruff check protoocc_ros
mypy
exec python -m pytest -q "$@"
