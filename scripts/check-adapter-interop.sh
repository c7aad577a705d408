#!/usr/bin/env bash
# Trains a short MNTP adapter on SmolLM2 with `llm2vec train` (or takes ADAPTER_DIR), encodes STS-B dev sentences
# with it through our encoder and through the Python reference (llm2vec 0.2.3 + PEFT, the adapter loaded
# unmerged), and compares. Result: target/interop/result.json.
#
#   scripts/check-adapter-interop.sh [ADAPTER_DIR]
#
# Needs the reference venv ($REF_VENV, else .venv-ref; scripts/reference/venv.sh makes it when missing), the f32
# Hugging Face copy of SmolLM2 ($REF_MODEL_DIR, default ~/.cache/llm2vec/reference/smollm2-hf, as
# scripts/bench/run-encode-bench.sh prepares it) and the data folder ($DATA_DIR, default ../shared/data):
# train/mntp_sample.jsonl and STSBenchmark/dev.jsonl.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv=$(scripts/reference/venv.sh)
data=${DATA_DIR:-../shared/data}
hf=${REF_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm2vec/reference/smollm2-hf}
work=target/interop
mkdir -p "$work"
cargo build --release -p llm2vec-cli >&2
adapter=${1:-}
if [ -z "$adapter" ]; then
  adapter=$work/adapter
  cat > "$work/mntp.json" <<JSON
{"model_name_or_path": "smollm2-135m-instruct", "train_file": "$data/train/mntp_sample.jsonl",
 "max_train_samples": 200, "validation_split_percentage": 0, "max_seq_length": 64, "per_device_train_batch_size": 4,
 "learning_rate": 1e-3, "lora_r": 8, "lora_dropout": 0.05, "mask_token_type": "blank", "data_collator_type": "all_mask",
 "mlm_probability": 0.2, "bidirectional": true, "stop_after_n_steps": 4, "save_steps": 100, "output_dir": "$adapter",
 "seed": 1}
JSON
  target/release/llm2vec train mntp "$work/mntp.json" --restart
fi
"$venv/bin/python" -c "
import json
rows = [json.loads(l) for l in open('$data/STSBenchmark/dev.jsonl')][:16]
open('$work/texts.txt', 'w').write('\n'.join(r['sentence1'] for r in rows) + '\n')"
target/release/llm2vec encode --model smollm2-135m-instruct --adapter "$adapter" --input "$work/texts.txt" --output "$work/ours.npy"
HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/reference/check_adapter_interop.py --base "$hf" --adapter "$adapter" \
  --ours "$work/ours.npy" --texts "$work/texts.txt" --output "$work/result.json"
