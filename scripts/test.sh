#!/usr/bin/env bash
# Runs the test suite: fetches the models the tests use (idempotent, checksummed; with
# LLM2VEC_REQUIRE_TEST_FILES set, a test whose model is missing fails instead of skipping), then the Rust
# tests, then the tests that run the CPU kernels again on each narrower instruction set this processor
# has (LLM2VEC_CPU_ISA), so that every path is tested on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-default-model.sh
scripts/fetch-gemma3.sh
scripts/fetch-minilm.sh
export LLM2VEC_REQUIRE_TEST_FILES=1
cargo test --release --workspace "$@"

narrower=()
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then narrower+=(avx2); fi
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then narrower+=(scalar); fi
for isa in "${narrower[@]}"; do
    echo "== the CPU kernels' tests on the $isa path (LLM2VEC_CPU_ISA=$isa)"
    LLM2VEC_CPU_ISA=$isa cargo test --release -p llm2vec --lib --test parity --test encoder --test quantized "$@"
    LLM2VEC_CPU_ISA=$isa cargo test --release -p llm2vec-train --test model_gradients --test gradients "$@"
done
