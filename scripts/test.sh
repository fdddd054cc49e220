#!/usr/bin/env bash
# Sets everything up in .venv and runs the linter and the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,examples,gp,tinygpt,ray]'
bash scripts/install-bubblewrap.sh
# The dashboard's browser test drives Debian's chromium; install it where we may (root + apt).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "test.sh: could not install chromium; the browser test will be skipped"
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
