#!/usr/bin/env bash
# The encode benchmark in one command, on the 2,758 STS-B test sentences with SmolLM2-135M-Instruct, mean
# pooling, CPU, 1 and 2 threads: llm2vec-rs in f32 and with 8-bit integer matrix products (bench_encode
# --dtype q8), the Python reference (llm2vec 0.2.3, f32) and llama.cpp's embedding mode (llama-cpp-python) on
# the same GGUF. Prints sentences/s, real tokens/s, peak RSS and the ratios to the reference per side and
# thread count, with the CPU (model, AVX-512, VNNI); checks ours f32 agrees with the reference (exit 1 when
# it does not; ours q8 and llama.cpp are compared with ours f32 by cosine and reported; speed is reported,
# not asserted). Results: target/bench/encode_stsb.json.
#
#   scripts/bench/run-encode-bench.sh [driver options]     e.g. --limit 300, --threads 2, --attn eager,
#                                                           --ours-dtypes f32, --output FILE
#                                                           (see encode_stsb.py --help)
#
# What it prepares when missing:
#   - the release build (`cargo build --release`, plus the bench_encode example);
#   - the default model, SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-default-model.sh);
#   - the reference venv: $REF_VENV, else .venv-ref in the repository root (scripts/reference/venv.sh);
#   - the same weights as an f32 Hugging Face directory, used by ours and the reference so they are
#     bit-identical: $REF_MODEL_DIR, else ~/.cache/llm2vec/reference/smollm2-hf, made by
#     scripts/reference/dequantize_gguf_to_hf.py.
# Not prepared (a long native build): the llama.cpp venv, $LLAMACPP_VENV, else ~/.cache/llm2vec/venv-llamacpp;
# make it once with scripts/bench/setup-llamacpp-venv.sh. Without it the llama.cpp side is skipped with a note.
# Environment: STSB_TEST (the STS-B test JSONL; default ../shared/data/STSBenchmark/test.jsonl).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/llm2vec

echo "== building (release)" >&2
cargo build --release >&2
cargo build --release -p llm2vec --example bench_encode >&2

echo "== default model" >&2
scripts/fetch-default-model.sh >&2
gguf=${LLM2VEC_MODELS_DIR:-$cache/models}/SmolLM2-135M-Instruct.Q4_1.gguf

echo "== reference venv" >&2
venv=$(scripts/reference/venv.sh)
echo "reference venv: $venv" >&2

echo "== f32 Hugging Face directory of the same weights" >&2
hf=${REF_MODEL_DIR:-$cache/reference/smollm2-hf}
if [ ! -f "$hf/config.json" ] || [ ! -f "$hf/model.safetensors" ]; then
  rm -rf "$hf.part" && mkdir -p "$(dirname "$hf")"
  "$venv/bin/python" scripts/reference/dequantize_gguf_to_hf.py "$gguf" "$hf.part" >&2
  rm -rf "$hf" && mv "$hf.part" "$hf"
fi
echo "model directory: $hf" >&2

llamacpp=${LLAMACPP_VENV:-$cache/venv-llamacpp}
if [ -x "$llamacpp/bin/python" ]; then
  echo "llama.cpp venv: $llamacpp" >&2
else
  echo "llama.cpp venv: none at $llamacpp (scripts/bench/setup-llamacpp-venv.sh makes it); that side is skipped" >&2
fi

data=${STSB_TEST:-$repo/../shared/data/STSBenchmark/test.jsonl}
echo "== benchmark (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
exec env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$venv/bin/python" scripts/bench/encode_stsb.py \
  --model-dir "$hf" --gguf "$gguf" --data "$data" --ours-bin "$repo/target/release/examples/bench_encode" \
  --llamacpp-venv "$llamacpp" "$@"
