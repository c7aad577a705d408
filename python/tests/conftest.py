"""Shared fixtures: the repository's models (the tiny parity fixture and the default SmolLM2 GGUF) and a
runner for the `llm2vec` CLI, the reference the Python package must match bit for bit."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PARITY = REPO / "crates" / "llm2vec" / "tests" / "fixtures" / "parity"
SHARED_DATA = REPO.parent / "shared" / "data"
MODELS_DIR = Path(os.environ.get("LLM2VEC_MODELS_DIR", Path.home() / ".cache" / "llm2vec" / "models"))


@pytest.fixture(scope="session")
def tiny_model():
    """A random two-layer Llama with its tokenizer (a Hugging Face directory)."""
    return str(PARITY / "llama" / "model")


@pytest.fixture(scope="session")
def default_model():
    """SmolLM2-135M-Instruct (Q4_1 GGUF), fetched by scripts/fetch-default-model.sh."""
    path = MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        missing = f"{path} is missing (run scripts/fetch-default-model.sh)"
        if os.environ.get("LLM2VEC_REQUIRE_TEST_FILES"):
            pytest.fail(f"{missing}, and LLM2VEC_REQUIRE_TEST_FILES is set")
        pytest.skip(missing)
    return str(path)


@pytest.fixture(scope="session")
def cli():
    """Runs `llm2vec encode` on `(instruction, text)` pairs and returns the .npy it writes."""
    binary = Path(os.environ.get("LLM2VEC_CLI", REPO / "target" / "release" / "llm2vec"))
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with `cargo build --release -p llm2vec-cli`")

    def run(model, pairs, tmp_path, *args):
        source = tmp_path / "inputs.jsonl"
        with open(source, "w", encoding="utf-8") as f:
            for instruction, text in pairs:
                f.write(json.dumps({"instruction": instruction, "text": text}) + "\n")
        output = tmp_path / "embeddings.npy"
        cmd = [str(binary), "encode", "--model", model, "--input", str(source), "--output", str(output), *args]
        subprocess.run(cmd, check=True, capture_output=True)
        return np.load(output)

    return run

