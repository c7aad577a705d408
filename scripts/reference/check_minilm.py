#!/usr/bin/env python3
"""Compares `llm2vec encode --model all-minilm-l6-v2` with sentence-transformers on the real weights:
the sentences of STSBenchmark's test split (first N pairs), max absolute difference of the embeddings.

    scripts/fetch-minilm.sh && cargo build --release -p llm2vec-cli
    .venv-ref/bin/python scripts/reference/check_minilm.py [N]
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL = Path(os.environ.get("LLM2VEC_MODELS_DIR", Path.home() / ".cache/llm2vec/models")) / "all-MiniLM-L6-v2"
DATA = Path(os.environ.get("STS_TEST", ROOT.parent / "shared/data/STSBenchmark/test.jsonl"))

n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
texts = []
for line in DATA.read_text().splitlines()[:n]:
    record = json.loads(line)
    texts += [record["sentence1"], record["sentence2"]]
with tempfile.TemporaryDirectory() as tmp:
    inputs, output = Path(tmp) / "in.jsonl", Path(tmp) / "out.npy"
    inputs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    subprocess.run([ROOT / "target/release/llm2vec", "encode", "--model", "all-minilm-l6-v2", "--input", inputs,
                    "--output", output], check=True)
    ours = np.load(output)
theirs = SentenceTransformer(str(MODEL), device="cpu").encode(texts, batch_size=32)
diff = np.abs(ours - theirs).max()
cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
print(f"{len(texts)} texts: max |ours - sentence-transformers| = {diff:.2e}, min cosine = {cos.min():.8f}")
sys.exit(0 if diff < 1e-4 else 1)
