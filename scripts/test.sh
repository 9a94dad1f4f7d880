#!/usr/bin/env bash
# Run every check and test of cojobs: the README's test command, and what
# .ci/run calls. On a fresh machine with only the Rust toolchain it installs
# what else it needs (the wasm32-wasip2 target, componentize-py in a local
# venv, componentize-js in a local node_modules) and builds every example
# plugin before the tests use them, and the tools of the serve tests
# (schemathesis in a local venv; Debian's chromium and chromium-driver).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

step() { printf '\n== %s\n' "$*"; }

step "formatting"
cargo fmt --all -- --check

step "example plugins (Rust, Python, JavaScript)"
scripts/build-plugins.sh
scripts/build-python-plugins.sh
scripts/build-js-plugins.sh

step "test tools: schemathesis (PyPI, local venv), headless Chromium and chromedriver (Debian)"
scripts/install-schemathesis.sh
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q chromium chromium-driver
fi

step "clippy"
cargo clippy --all-targets -- -D warnings

step "tests"
cargo test --all-targets
