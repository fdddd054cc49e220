#!/usr/bin/env bash
# Sets everything up in .venv and runs the demo: a TPE study on the bundled digits task.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[examples]'
bash scripts/install-bubblewrap.sh
.venv/bin/ratchet demo "$@"
