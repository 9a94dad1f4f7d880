#!/usr/bin/env bash
# Install schemathesis (PyPI) into a project-local venv, for the test that
# checks `cojobs serve` against its OpenAPI document (tests/schemathesis.rs).
#
#   scripts/install-schemathesis.sh     prints nothing when already installed
#
# Idempotent: the venv and the pinned version are installed once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="4.32.5"
VENV="$ROOT/.cache/venv-st"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m
try: print(m.version("schemathesis"))
except m.PackageNotFoundError: pass')" != "$VERSION" ]; then
    echo "installing schemathesis==$VERSION" >&2
    "$VENV/bin/pip" install --disable-pip-version-check -q "schemathesis==$VERSION"
fi
