"""Bad models, settings and inputs raise Python exceptions carrying the Rust library's message; none of them
brings the interpreter down."""

import shutil

import pytest

from llm2vec_rs import LLM2Vec


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    """A writable copy of the tiny model directory, to break."""
    return shutil.copytree(tiny_model, tmp_path / "model")


@pytest.mark.parametrize(
    "name, settings, error, message",
    [
        ("/nonexistent/model", {}, FileNotFoundError, "model not found: `/nonexistent/model` was not found locally"),
        ("no-such-short-name", {}, FileNotFoundError, "short name (smollm2-135m-instruct"),
        (None, {"peft_model_name_or_path": "/nonexistent/adapter"}, FileNotFoundError,
         "/nonexistent/adapter/adapter_config.json: No such file or directory"),
        (None, {"pooling_mode": "max"}, ValueError, "unknown pooling mode `max`; expected one of mean, weighted_mean"),
        (None, {"max_length": 1}, ValueError, "max_length must be at least 2, got 1"),
        (None, {"max_length": -3}, ValueError, "max_length must be an integer >= 1, got -3"),
        (None, {"device": "gpu"}, ValueError, "device `gpu`: expected cpu, cuda or cuda:N"),
        (None, {"device": "cuda:x"}, ValueError, "device `cuda:x`: bad ordinal"),
        (None, {"dtype": "int4"}, ValueError, "dtype `int4`: expected float32, bfloat16, float16 or q8"),
    ],
)
def test_load_errors(tiny_model, name, settings, error, message):
    with pytest.raises(error) as raised:
        LLM2Vec.from_pretrained(name or tiny_model, **settings)
    assert message in str(raised.value)


def test_cuda_without_the_feature_is_a_runtime_error(tiny_model):
    with pytest.raises(RuntimeError, match="device `cuda`"):
        LLM2Vec.from_pretrained(tiny_model, device="cuda")


def test_missing_weights_name_the_directory(model_copy):
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no model.safetensors"):
        LLM2Vec.from_pretrained(model_copy)


def test_bad_config_names_the_file(model_copy):
    (model_copy / "config.json").write_text("{bad json")
    with pytest.raises(ValueError, match=r"config\.json: invalid JSON"):
        LLM2Vec.from_pretrained(model_copy)


def test_truncated_gguf_is_a_value_error(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(ValueError, match="bad.gguf: truncated"):
        LLM2Vec.from_pretrained(path)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a GGUF file"):
        LLM2Vec.from_pretrained(path)


@pytest.fixture(scope="module")
def model(tiny_model):
    return LLM2Vec.from_pretrained(tiny_model)


@pytest.mark.parametrize(
    "sentences, error, message",
    [
        (["fine", ""], ValueError, "invalid input: input 2: empty text"),
        (["fine", ["instruction:", "   "]], ValueError, "invalid input: input 2: empty text"),
        (["fine", 5], TypeError, "input 2: expected a string, [instruction, text] or [instruction, text, 0]"),
        ([["only one"]], TypeError, "input 1: expected a string"),
        ([["instruction:", "text", "not an int"]], TypeError, "input 1: expected a string"),
        (["\ud800"], UnicodeEncodeError, "surrogates not allowed"),
    ],
)
def test_encode_errors(model, sentences, error, message):
    with pytest.raises(error) as raised:
        model.encode(sentences, show_progress_bar=False)
    assert message in str(raised.value)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_bad_batch_size(model, batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {batch_size}"):
        model.encode(["fine"], batch_size=batch_size, show_progress_bar=False)


@pytest.mark.parametrize("tokens", [0, -1])
def test_bad_max_batch_tokens(tiny_model, tokens):
    with pytest.raises(ValueError, match=f"max_batch_tokens must be an integer >= 1, got {tokens}"):
        LLM2Vec.from_pretrained(tiny_model, max_batch_tokens=tokens)


def test_model_still_works_after_errors(model):
    with pytest.raises(ValueError):
        model.encode(["fine", ""], show_progress_bar=False)
    assert model.encode(["fine"], show_progress_bar=False).shape == (1, model.dim)
