#!/usr/bin/env bash
# Creates (or completes) the Python reference environment the fixture scripts in this folder run in:
# llm2vec 0.2.3 on transformers 4.44.2 / torch 2.4.1 (CPU use) / peft 0.12.0, plus gguf, safetensors and
# sentence-transformers 2.7.0 (the BERT fixtures; its 3.x releases import datasets, which wants numpy 2).
#
#   scripts/reference/setup-venv.sh [VENV_DIR]      (default: $REF_VENV, else .venv-ref in the repository root)
#
# Idempotent: an existing venv is reused and pip only installs what is missing or at another version.
# Environment: PYTHON (interpreter for the venv, default python3; torch 2.4.1 needs Python 3.8-3.12),
#              TORCH_INDEX_URL (optional: e.g. https://download.pytorch.org/whl/cpu for the CPU-only torch wheel
#              instead of PyPI's, which pulls the CUDA libraries; the fixtures only use the CPU).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${1:-${REF_VENV:-$repo/.venv-ref}}
python=${PYTHON:-python3}

# peft 0.12.0 is the release contemporary with transformers 4.44.2 / llm2vec 0.2.3 (llm2vec does not pin peft).
pins=(
  "llm2vec==0.2.3"
  "transformers==4.44.2"
  "tokenizers==0.19.1"
  "torch==2.4.1"
  "peft==0.12.0"
  "numpy<2"
  "gguf==0.19.0"
  "safetensors"
  "sentence-transformers==2.7.0"
)

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv"
  "$python" -m venv "$venv"
fi
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "$venv/bin/python" -m pip install -q "torch==2.4.1" --index-url "$TORCH_INDEX_URL"
fi
"$venv/bin/python" -m pip install -q "${pins[@]}"

"$venv/bin/python" - <<'EOF'
import importlib.metadata as md
want = {"llm2vec": "0.2.3", "transformers": "4.44.2", "tokenizers": "0.19.1", "torch": "2.4.1", "peft": "0.12.0",
        "gguf": "0.19.0", "sentence-transformers": "2.7.0"}
bad = {k: md.version(k) for k, v in want.items() if md.version(k).split("+")[0] != v}
assert not bad, f"unexpected versions: {bad}"
assert int(md.version("numpy").split(".")[0]) < 2, "numpy<2 expected"
import llm2vec, peft, transformers, torch, gguf, safetensors, sentence_transformers  # noqa: F401  (imports work together)
print("reference venv ready:", {k: md.version(k) for k in [*want, "numpy", "safetensors"]})
EOF
echo "use: $venv/bin/python scripts/reference/make_parity_fixtures.py"
