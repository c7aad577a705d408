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

has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }
# AVX-VNNI adds a path to the 8-bit products only, whose unit tests run every path natively; the
# end-to-end 8-bit tests run on it here.
if has avx512f && has avx_vnni; then
    echo "== the 8-bit products' tests on the avxvnni path (LLM2VEC_CPU_ISA=avxvnni)"
    LLM2VEC_CPU_ISA=avxvnni cargo test --release -p llm2vec --test quantized "$@"
fi
narrower=()
if has avx512f || has avx_vnni; then narrower+=(avx2); fi
if has avx2 && has fma; then narrower+=(scalar); fi
for isa in "${narrower[@]}"; do
    echo "== the CPU kernels' tests on the $isa path (LLM2VEC_CPU_ISA=$isa)"
    LLM2VEC_CPU_ISA=$isa cargo test --release -p llm2vec --lib --test parity --test encoder --test quantized "$@"
    LLM2VEC_CPU_ISA=$isa cargo test --release -p llm2vec-train --test model_gradients --test gradients "$@"
done
