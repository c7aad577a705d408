"""The Python package gives the Rust library's embeddings bit for bit (compared with the `llm2vec` CLI's
.npy output), and the reference's embeddings (the parity fixtures) to 1e-4."""

import json
import warnings

import numpy as np
import pytest

from conftest import PARITY
from llm2vec_rs import LLM2Vec

INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query:"
QUERIES = ["how much protein should a female eat", "summit define"]
DOCUMENTS = [
    "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per day. "
    "But, as you can see from this chart, you'll need to increase that if you're expecting or training for a "
    "marathon. Check out the chart below to see how much protein you should be eating each day.",
    "Definition of summit for English Language Learners. : 1 the highest point of a mountain : the top of a "
    "mountain. : 2 the highest level. : 3 a meeting or series of meetings between the leaders of two or more "
    "governments.",
]


def cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def test_protein_summit_cosine_matrix_equals_cli(default_model, cli, tmp_path):
    model = LLM2Vec.from_pretrained(default_model)
    q = model.encode([[INSTRUCTION, query] for query in QUERIES], show_progress_bar=False)
    d = model.encode(DOCUMENTS, show_progress_bar=False)
    q_cli = cli(default_model, [(INSTRUCTION, query) for query in QUERIES], tmp_path)
    d_cli = cli(default_model, [("", doc) for doc in DOCUMENTS], tmp_path)
    assert np.array_equal(q, q_cli) and np.array_equal(d, d_cli)
    matrix = cosine(q, d)
    assert np.array_equal(matrix, cosine(q_cli, d_cli))
    assert matrix[0, 0] > matrix[0, 1] and matrix[1, 1] > matrix[1, 0], matrix


def test_normalized_rows_match_cli_normalize(default_model, cli, tmp_path):
    model = LLM2Vec.from_pretrained(default_model)
    got = model.encode(DOCUMENTS, normalize=True, show_progress_bar=False)
    want = cli(default_model, [("", doc) for doc in DOCUMENTS], tmp_path, "--normalize")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("batch_size", [32, 5])
def test_bit_identical_to_cli_at_each_batch_size(default_model, cli, tmp_path, batch_size):
    pairs = [("Retrieve semantically similar text:" if i % 3 else "", s) for i, s in enumerate(_sentences(12))]
    got = LLM2Vec.from_pretrained(default_model).encode(pairs, batch_size=batch_size, show_progress_bar=False)
    want = cli(default_model, pairs, tmp_path, "--batch-size", str(batch_size))
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want)


@pytest.mark.parametrize(
    "settings, flags",
    [
        ({"pooling_mode": "weighted_mean"}, ["--pooling", "weighted_mean"]),
        ({"pooling_mode": "eos_token", "enable_bidirectional": False}, ["--pooling", "eos_token", "--attention", "causal"]),
        ({"skip_instruction": False, "max_length": 12}, ["--include-instruction", "--max-length", "12"]),
        ({"doc_max_length": 5}, ["--doc-max-length", "5"]),
    ],
)
def test_settings_bit_identical_to_cli(tiny_model, cli, tmp_path, settings, flags):
    pairs = [("Retrieve semantically similar text:", s) for s in _sentences(20)]
    model = LLM2Vec.from_pretrained(tiny_model, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_length 12 truncates: tested in test_api.py
        got = model.encode(pairs, show_progress_bar=False)
    assert np.array_equal(got, cli(tiny_model, pairs, tmp_path, *flags))


def test_stacked_adapters_bit_identical_to_cli(tiny_model, cli, tmp_path):
    adapters = [str(PARITY / "llama" / "adapter"), str(PARITY / "llama" / "adapter2")]
    pairs = [("", s) for s in _sentences(10)]
    got = LLM2Vec.from_pretrained(tiny_model, peft_model_name_or_path=adapters).encode(pairs, show_progress_bar=False)
    flags = [arg for path in adapters for arg in ("--adapter", path)]
    assert np.array_equal(got, cli(tiny_model, pairs, tmp_path, *flags))


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "gemma", "gemma2"])
def test_matches_reference_parity_fixtures(family):
    """The reference's `LLM2Vec.from_pretrained(...).encode(...)` outputs (llm2vec 0.2.3 on tiny random models,
    with the documented fixes) for every case of each family, through the same Python arguments."""
    directory = PARITY / family
    expected = json.loads((directory / "expected.json").read_text())
    for case in (c for c in expected["cases"] if "+" not in c["name"]):
        model = LLM2Vec.from_pretrained(
            directory / "model",
            peft_model_name_or_path=[directory / a for a in case["adapters"]] or None,
            pooling_mode=case["pooling"],
            max_length=case["max_length"],
            doc_max_length=case["doc_max_length"],
            skip_instruction=case["skip_instruction"],
            enable_bidirectional=case["attention"] == "bidirectional",
        )
        inputs = [expected["inputs"][i] for i in case["input_indices"]]
        sentences = inputs if case["with_instructions"] else [text for _, text in inputs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = model.encode(sentences, batch_size=3, show_progress_bar=False)
        np.testing.assert_allclose(got, np.array(case["embeddings"]), rtol=0, atol=1e-4, err_msg=case["name"])


def _sentences(n):
    words = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches".split()
    return [" ".join(words[(i * 5) % len(words):] + words[: i % 7 + 1]) + f" number {i}." for i in range(n)]
