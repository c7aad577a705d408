"""The Python API: the input forms `encode` accepts, numpy and torch outputs, settings, progress reporting."""

import importlib.util
import warnings

import numpy as np
import pytest

import llm2vec_rs
from conftest import PARITY
from llm2vec_rs import LLM2Vec

INSTRUCTION = "Retrieve semantically similar text:"


@pytest.fixture(scope="module")
def model(tiny_model):
    return LLM2Vec.from_pretrained(tiny_model)


def encode(model, sentences, **kwargs):
    return model.encode(sentences, show_progress_bar=False, **kwargs)


def test_returns_float32_rows_in_input_order(model):
    texts = ["a man is playing a flute .", "dogs are playing in the snow .", "a woman slices an onion ."]
    out = encode(model, texts)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (3, model.dim)
    for i, text in enumerate(texts):  # alone, each is its own batch: equal up to rounding
        np.testing.assert_allclose(out[i], encode(model, [text])[0], rtol=0, atol=1e-5)


def test_bare_string_is_one_text(model):
    out = encode(model, "summit define")
    assert out.shape == (1, model.dim)
    assert np.array_equal(out, encode(model, ["summit define"]))


def test_pairs_and_reference_triples(model):
    pairs_in = [[INSTRUCTION, "summit define"], (INSTRUCTION, "a man is playing a flute .")]
    pairs = encode(model, pairs_in)
    triples = encode(model, [[INSTRUCTION, "summit define", 0], [INSTRUCTION, "a man is playing a flute .", 0]])
    assert np.array_equal(pairs, triples)
    assert np.array_equal(encode(model, [INSTRUCTION, "summit define", 0]), encode(model, [pairs_in[0]]))
    assert not np.array_equal(pairs[:1], encode(model, ["summit define"]))


def test_list_of_two_strings_is_two_texts(model):
    assert encode(model, [INSTRUCTION, "summit define"]).shape == (2, model.dim)


def test_empty_list_gives_zero_rows(model):
    out = encode(model, [])
    assert out.shape == (0, model.dim) and out.dtype == np.float32


def test_token_budget_gives_the_same_rows(tiny_model, model):
    texts = ["a man is playing a flute .", "dogs are playing in the snow .", "a woman slices an onion ."] * 3
    assert llm2vec_rs.GPU_MAX_BATCH_TOKENS == 32 * llm2vec_rs.DEFAULT_MAX_LENGTH
    one_by_one = LLM2Vec.from_pretrained(tiny_model, max_batch_tokens=1)  # each input alone
    assert (one_by_one.max_batch_tokens, model.max_batch_tokens) == (1, llm2vec_rs.CPU_MAX_BATCH_TOKENS)
    np.testing.assert_allclose(encode(one_by_one, texts), encode(model, texts), rtol=0, atol=1e-5)


def test_normalize(model):
    raw = encode(model, ["summit define", "a man is playing a flute ."])
    unit = encode(model, ["summit define", "a man is playing a flute ."], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_array_owns_its_rows_and_is_writable(model):
    out = encode(model, ["summit define"])
    out[0, 0] = 1.0
    assert out[0, 0] == 1.0


def test_settings_default_and_override(tiny_model):
    default = LLM2Vec.from_pretrained(tiny_model)
    assert (default.pooling_mode, default.max_length, default.doc_max_length) == ("mean", 512, 400)
    assert default.skip_instruction and default.enable_bidirectional
    custom = LLM2Vec.from_pretrained(
        tiny_model, pooling_mode="last_token", max_length=64, doc_max_length=32, skip_instruction=False,
        enable_bidirectional=False,
    )
    assert (custom.pooling_mode, custom.max_length, custom.doc_max_length) == ("last_token", 64, 32)
    assert not custom.skip_instruction and not custom.enable_bidirectional
    assert "last_token" in repr(custom)


def test_adapter_llm2vec_config_supplies_settings(tiny_model, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (adapter / name).write_bytes((PARITY / "llama" / "adapter" / name).read_bytes())
    (adapter / "llm2vec_config.json").write_text('{"pooling_mode": "weighted_mean", "max_length": 128}')
    model = LLM2Vec.from_pretrained(tiny_model, peft_model_name_or_path=adapter)
    assert (model.pooling_mode, model.max_length) == ("weighted_mean", 128)
    assert LLM2Vec.from_pretrained(tiny_model, peft_model_name_or_path=adapter, max_length=99).max_length == 99


@pytest.mark.parametrize(
    "dtype, precision", [("float32", "f32"), ("torch.float32", "f32"), ("bfloat16", "bf16"), ("f16", "f16")]
)
def test_dtype_names(tiny_model, dtype, precision):
    model = LLM2Vec.from_pretrained(tiny_model, dtype=dtype)
    out = encode(model, ["summit define"])
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert model.precision == precision


def test_q8_is_close_to_float32(tiny_model, model):
    texts = ["a man is playing a flute .", "dogs are playing in the snow ."]
    quantized = LLM2Vec.from_pretrained(tiny_model, dtype="q8")
    assert (model.precision, quantized.precision, quantized.device) == ("f32", "q8", "cpu")
    assert "precision='q8'" in repr(quantized)
    full, eight = encode(model, texts), encode(quantized, texts)
    cosines = (full * eight).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(eight, axis=1)
    assert cosines.min() > 0.999 and not np.array_equal(full, eight)


def test_truncation_warns(tiny_model):
    model = LLM2Vec.from_pretrained(tiny_model, max_length=8)
    with pytest.warns(UserWarning, match=r"1 input\(s\) longer than max_length 8 were truncated \(first: index 1\)"):
        encode(model, ["short", "a much longer sentence that cannot fit in eight tokens at all"])


def test_stderr_progress_without_tqdm(model, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)
    monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)
    model.encode(["summit define"] * 5, batch_size=2)
    err = capsys.readouterr().err
    assert "Encoding: 0/5 (0%)" in err and "\rEncoding: 5/5 (100%)\n" in err


def test_no_progress_output_when_disabled(model, capsys):
    encode(model, ["summit define"] * 3)
    assert capsys.readouterr().err == ""


def test_set_num_threads_and_version():
    llm2vec_rs.set_num_threads(2)
    assert llm2vec_rs.__version__.count(".") == 2


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_torch_output_without_torch_says_so(model):
    with pytest.raises(ImportError, match="torch is not installed"):
        model.encode(["summit define"], show_progress_bar=False, convert_to_tensor=True)


def test_torch_output(model):
    torch = pytest.importorskip("torch")
    array = encode(model, ["summit define", "a man is playing a flute ."])
    tensor = encode(model, ["summit define", "a man is playing a flute ."], convert_to_tensor=True)
    also_tensor = encode(model, ["summit define", "a man is playing a flute ."], convert_to_numpy=False)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32 and tensor.shape == array.shape
    assert np.array_equal(tensor.numpy(), array) and torch.equal(tensor, also_tensor)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LLM2Vec.from_pretrained(PARITY / "llama" / "model", torch_dtype=torch.bfloat16)
