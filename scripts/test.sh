#!/usr/bin/env bash
# Sets everything up in .venv and runs the linter and the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,examples,gp,tinygpt]'
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
