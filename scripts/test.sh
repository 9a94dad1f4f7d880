#!/usr/bin/env bash
# Run every check and test of cojobs: the README's test command, and what
# .ci/run calls. On a fresh machine with only the Rust toolchain it installs
# what else it needs (the wasm32-wasip2 target, componentize-py in a local
# venv, componentize-js in a local node_modules) and builds every example
# plugin before the tests use them.
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

step "clippy"
cargo clippy --all-targets -- -D warnings

step "tests"
cargo test --all-targets
