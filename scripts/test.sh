#!/usr/bin/env bash
# Installs everything, then runs ruff, mypy and the whole test suite. Exits non-zero on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh

echo "== ruff"
.venv/bin/ruff check desktop tests bench
.venv/bin/ruff format --check desktop tests bench
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
