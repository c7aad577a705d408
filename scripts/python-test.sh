#!/usr/bin/env bash
# Builds and tests the Python package llm2vec_rs: a venv in .venv-py/ (maturin, pytest, numpy, and Ray with
# pyarrow for llm2vec_rs.ray, whose tests start a two-node Ray cluster on this machine), the abi3 wheel
# built by maturin into target/python-wheel (cargo's target/ is shared with the Rust build, so a second run
# rebuilds only what changed), installed into the venv, then pytest on python/tests. The tests compare with
# the `llm2vec` CLI (built here) and use the default model (fetched here) and the tiny test fixture.
#
#   scripts/python-test.sh [pytest arguments]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export CARGO_TARGET_DIR=$repo/target
venv=$repo/.venv-py
wheels=$repo/target/python-wheel

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.7,<2" pytest numpy \
    "ray[data]==2.60.0" "pyarrow==26.0.1"

scripts/fetch-default-model.sh
export LLM2VEC_REQUIRE_TEST_FILES=1
cargo build --release -p llm2vec-cli

rm -rf "$wheels"
"$venv/bin/maturin" build --release --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/llm2vec_rs-*.whl

exec "$venv/bin/python" -m pytest python/tests "$@"
