#!/usr/bin/env bash
# The encode benchmark in one command: llm2vec-rs against the Python reference (llm2vec 0.2.3) on the 2,758
# STS-B test sentences, SmolLM2-135M-Instruct, bidirectional attention, mean pooling, f32, CPU, 1 and 2
# threads; prints sentences/s, real tokens/s, peak RSS and the ours/reference ratios, checks the embeddings
# agree (exit 1 when they do not; speed is reported, not asserted). Results: target/bench/encode_stsb.json.
#
#   scripts/bench/run-encode-bench.sh [driver options]     e.g. --limit 300, --threads 2, --attn eager,
#                                                           --output FILE (see encode_stsb.py --help)
#
# What it prepares when missing:
#   - the release build (`cargo build --release`, plus the bench_encode example);
#   - the default model, SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-default-model.sh);
#   - the reference venv: $REF_VENV, else the default of scripts/reference/setup-venv.sh (.venv-ref in the
#     repository root), else /work/ref/venv if that exists; created with setup-venv.sh when none is usable;
#   - the same weights as an f32 Hugging Face directory, used by BOTH sides so they are bit-identical:
#     $REF_MODEL_DIR, else ~/.cache/llm2vec/reference/smollm2-hf, made by
#     scripts/reference/dequantize_gguf_to_hf.py (falls back to /work/ref/smollm2-hf without that script).
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
ref_ok() { [ -x "$1/bin/python" ] && HF_HUB_OFFLINE=1 "$1/bin/python" -c "import llm2vec, torch, transformers, numpy" 2>/dev/null; }
if [ -n "${REF_VENV:-}" ]; then
  venv=$REF_VENV
elif [ -x "$repo/.venv-ref/bin/python" ]; then
  venv=$repo/.venv-ref
elif [ -x /work/ref/venv/bin/python ]; then
  venv=/work/ref/venv
else
  venv=$repo/.venv-ref
fi
if ! ref_ok "$venv"; then
  if [ -f scripts/reference/setup-venv.sh ]; then
    bash scripts/reference/setup-venv.sh "$venv" >&2
  fi
  ref_ok "$venv" || { echo "error: no usable reference venv at $venv (set REF_VENV)" >&2; exit 2; }
fi
echo "reference venv: $venv" >&2

echo "== f32 Hugging Face directory of the same weights" >&2
hf=${REF_MODEL_DIR:-$cache/reference/smollm2-hf}
if [ ! -f "$hf/config.json" ] || [ ! -f "$hf/model.safetensors" ]; then
  if [ -f scripts/reference/dequantize_gguf_to_hf.py ]; then
    rm -rf "$hf.part" && mkdir -p "$(dirname "$hf")"
    "$venv/bin/python" scripts/reference/dequantize_gguf_to_hf.py "$gguf" "$hf.part" >&2
    rm -rf "$hf" && mv "$hf.part" "$hf"
  elif [ -f /work/ref/smollm2-hf/config.json ]; then
    hf=/work/ref/smollm2-hf
  else
    echo "error: no f32 Hugging Face directory of the model (set REF_MODEL_DIR)" >&2; exit 2
  fi
fi
echo "model directory: $hf" >&2

data=${STSB_TEST:-$repo/../shared/data/STSBenchmark/test.jsonl}
echo "== benchmark (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
exec env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$venv/bin/python" scripts/bench/encode_stsb.py \
  --model-dir "$hf" --gguf "$gguf" --data "$data" --ours-bin "$repo/target/release/examples/bench_encode" "$@"
