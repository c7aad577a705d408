#!/usr/bin/env bash
# The serving load test in one command: builds the release `llm2vec` and the encode_latency example, fetches the
# default model when missing, sets up .venv-tools (the official openai client) when missing, then runs
# loadtest.py: offline `llm2vec encode` throughput and `llm2vec serve` on 127.0.0.1 at concurrency 1, 8 and 64
# (300 requests per level, at most 60 s each), the concurrency-1 latency probe (100 offline encodes alternating
# with 100 served requests), and the correctness, openai-client and graceful-shutdown checks.
#
#   scripts/loadtest/run.sh [loadtest.py options]      e.g. --requests 200, --levels 1,64 (see --help)
#
# Results: printed, and target/loadtest/results.json. Exit 1 when a check fails.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

echo "== building (release)" >&2
cargo build --release -p llm2vec-cli >&2
cargo build --release -p llm2vec-server --example encode_latency >&2
echo "== default model" >&2
scripts/fetch-default-model.sh >&2
echo "== openai client (.venv-tools)" >&2
if ! .venv-tools/bin/python -c "import openai" 2>/dev/null; then
  python3 -m venv .venv-tools && .venv-tools/bin/pip install -q openai >&2
fi
exec python3 scripts/loadtest/loadtest.py --openai-python .venv-tools/bin/python "$@"
