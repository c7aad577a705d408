#!/usr/bin/env bash
# Runs the test suite: fetches the models the tests use (idempotent, checksummed), then the Rust tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-default-model.sh
scripts/fetch-gemma3.sh
cargo test --release --workspace "$@"
