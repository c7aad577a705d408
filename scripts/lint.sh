#!/usr/bin/env bash
# The style checks CI runs before the tests: formatting (rustfmt.toml), clippy on every target with warnings as
# errors, and the documentation built without warnings (broken links, stray HTML in doc comments).
#
#   scripts/lint.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo fmt --all --check
(cd fuzz && cargo fmt --all --check)
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
