#!/usr/bin/env bash
# Prints the path of the reference venv, ready for use: $REF_VENV, else .venv-ref in the repository root (the
# default of setup-venv.sh, which creates or completes it from PyPI's wheels when it cannot import the
# reference packages). The scripts that compare with the reference take their Python from here.
#
#   venv=$(scripts/reference/venv.sh)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${REF_VENV:-$repo/.venv-ref}
ready() { [ -x "$venv/bin/python" ] && HF_HUB_OFFLINE=1 "$venv/bin/python" -c "import llm2vec, peft, torch, transformers, numpy" 2>/dev/null; }
if ! ready; then
  bash "$repo/scripts/reference/setup-venv.sh" "$venv" >&2
  ready || { echo "error: no usable reference venv at $venv (set REF_VENV)" >&2; exit 2; }
fi
echo "$venv"
