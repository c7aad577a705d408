#!/usr/bin/env python3
"""Writes crates/llm2vec/tests/fixtures/parity/<family>/: tiny random models and the reference's embeddings of them.

For each family (llama, mistral, qwen2, gemma, gemma2) it
  * trains a tiny tokenizer on STSBenchmark sentences (SentencePiece-style byte-fallback BPE, or byte-level BPE
    for qwen2) and writes it as tokenizer.json + tokenizer_config.json,
  * builds a tiny randomly initialised f32 model (seeded) and saves it with save_pretrained -> model/,
  * builds two random PEFT LoRA adapters on it -> adapter/, adapter2/,
  * runs llm2vec==0.2.3 (transformers==4.44.2, eager attention, f32, CPU) over a fixed set of inputs for a list of
    cases (attention x pooling x options) and writes what it computed -> expected.json.

Where the reference is wrong, the numbers come from the reference with a minimal monkeypatch, named in each case's
`patches` (see PATCH_DOC below); for each patch, each case also records how far the unpatched reference is from the
recorded numbers (`stock_max_abs_diff`).

Deterministic: fixed seeds, one torch thread; rerunning rewrites byte-identical files.

Run with the reference venv (scripts/reference/setup-venv.sh creates one, default .venv-ref/):
    .venv-ref/bin/python scripts/reference/make_parity_fixtures.py [--families llama,qwen2]
STS_TRAIN overrides the tokenizer training data (default ../shared/data/STSBenchmark/train.jsonl, next to the checkout).
"""

import argparse
import contextlib
import importlib.metadata as md
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never ask the Hub about "tiny-<family>"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma2Model,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from llm2vec import LLM2Vec  # noqa: E402
from llm2vec.models import MistralBiModel, Qwen2BiModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/llm2vec/tests/fixtures/parity"
DATA = Path(os.environ.get("STS_TRAIN", ROOT.parent / "shared/data/STSBenchmark/train.jsonl"))

PINNED = {"llm2vec": "0.2.3", "transformers": "4.44.2", "torch": "2.4.1", "peft": "0.12.0", "tokenizers": "0.19.1"}
SEP = "!@#$%^&*()"  # llm2vec's instruction/text separator
BATCH_SIZE = 3  # 8 inputs -> batches of 3, 3, 2 of mixed lengths, so left padding occurs
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

INPUTS = [
    ["Retrieve semantically similar text", "dogs are playing in the snow ."],
    ["", "a man is playing a large flute ."],
    ["  Given a news headline, find the article  ", "  a woman is slicing an onion .  "],
    ["Represent the sentence", "Café Müller: 3 dogs ran 12.5 km in 2024 — über fast! 🐶 (wow)"],
    ["", "hi"],
    ["Given a question, retrieve passages that answer it",
     "a man is spreading shredded cheese on an uncooked pizza while two women are slicing onions and tomatoes . "
     "some men are fighting near the old bridge , and a small girl is riding a horse across the green field . "
     "the dog is running in the snow while the cat sleeps on the warm bed . three men are playing chess in the "
     "park and a woman is singing on the stage tonight ."],
    ["Find a similar sentence", "two men are playing chess on the mat ."],
    ["", "a plane is taking off ."],
]


# --------------------------------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------------------------------

def sp_specials(family):
    if family in ("gemma", "gemma2"):
        return dict(specials=["<pad>", "<eos>", "<bos>", "<unk>"], bos="<bos>", eos="<eos>", unk="<unk>", pad="<pad>")
    return dict(specials=["<unk>", "<s>", "</s>"], bos="<s>", eos="</s>", unk="<unk>", pad="</s>")


FAMILIES = {
    "llama": dict(seed=101, tokenizer="sp", **sp_specials("llama")),
    "mistral": dict(seed=202, tokenizer="sp", **sp_specials("mistral")),
    "qwen2": dict(seed=303, tokenizer="bytelevel", specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                  bos=None, eos="<|endoftext|>", unk=None, pad="<|endoftext|>"),
    "gemma": dict(seed=404, tokenizer="sp", **sp_specials("gemma")),
    "gemma2": dict(seed=505, tokenizer="sp", **sp_specials("gemma2")),
}
MISTRAL_WINDOW = 5
GEMMA2_WINDOW = 4


def make_config(family, vocab_size, ids):
    common = dict(vocab_size=vocab_size, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, torch_dtype="float32", use_cache=True)
    if family == "llama":
        return LlamaConfig(hidden_size=32, intermediate_size=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                           hidden_act="silu", bos_token_id=ids["<s>"], eos_token_id=ids["</s>"],
                           pad_token_id=ids["</s>"], tie_word_embeddings=False,
                           architectures=["LlamaForCausalLM"], **common)
    if family == "mistral":
        return MistralConfig(hidden_size=32, intermediate_size=64, rms_norm_eps=1e-5, rope_theta=1000000.0,
                             hidden_act="silu", sliding_window=MISTRAL_WINDOW, bos_token_id=ids["<s>"],
                             eos_token_id=ids["</s>"], pad_token_id=ids["</s>"], tie_word_embeddings=False,
                             architectures=["MistralForCausalLM"], **common)
    if family == "qwen2":
        eot = ids["<|endoftext|>"]
        return Qwen2Config(hidden_size=32, intermediate_size=64, rms_norm_eps=1e-6, rope_theta=1000000.0,
                           hidden_act="silu", use_sliding_window=False, bos_token_id=eot, eos_token_id=eot,
                           pad_token_id=eot, tie_word_embeddings=True, architectures=["Qwen2ForCausalLM"], **common)
    if family == "gemma":
        return GemmaConfig(hidden_size=32, intermediate_size=64, head_dim=16, rms_norm_eps=1e-6, rope_theta=10000.0,
                           hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                           bos_token_id=ids["<bos>"], eos_token_id=ids["<eos>"], pad_token_id=ids["<pad>"],
                           tie_word_embeddings=True, architectures=["GemmaForCausalLM"], **common)
    if family == "gemma2":
        common = dict(common, num_hidden_layers=4)
        return Gemma2Config(hidden_size=32, intermediate_size=64, head_dim=16, rms_norm_eps=1e-6, rope_theta=10000.0,
                            hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24,
                            sliding_window=GEMMA2_WINDOW, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                            bos_token_id=ids["<bos>"], eos_token_id=ids["<eos>"], pad_token_id=ids["<pad>"],
                            tie_word_embeddings=True, architectures=["Gemma2ForCausalLM"], **common)
    raise ValueError(family)


CAUSAL_LM = {"llama": LlamaForCausalLM, "mistral": MistralForCausalLM, "qwen2": Qwen2ForCausalLM,
             "gemma": GemmaForCausalLM, "gemma2": Gemma2ForCausalLM}


# --------------------------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------------------------

def training_sentences(n_lines=1000):
    out = []
    with open(DATA, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= n_lines:
                break
            d = json.loads(line)
            out += [d["sentence1"], d["sentence2"]]
    return out


def build_sp_tokenizer(spec, sentences):
    """SentencePiece-style (Llama/Mistral/Gemma tokenizer.json layout): BPE with byte fallback, no pre-tokenizer."""
    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Training splits words before each "▁" (as sentencepiece does), so no merge crosses a word boundary; the
    # written tokenizer has no pre-tokenizer, like the real Llama/Mistral/Gemma tokenizer.json files.
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.normalizer = normalizer
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer_tok.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=160, show_progress=False))
    trained = json.loads(trainer_tok.to_str())["model"]
    vocab = {}
    for s in spec["specials"]:
        vocab[s] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for tok, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=spec["unk"], byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizer
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in spec["specials"]])
    bos = spec["bos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, vocab[bos])])
    return tok


def build_bytelevel_tokenizer(spec, sentences):
    """Qwen2-style byte-level BPE: ByteLevel pre-tokenizer (GPT-2 regex, no prefix space), no BOS."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(sentences, trainers.BpeTrainer(
        vocab_size=256 + 150, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in spec["specials"]])
    # as in Qwen2's tokenizer.json (the Python constructors of tokenizers 0.19 ignore these flags)
    j = json.loads(tok.to_str())
    for key in ("post_processor", "decoder"):
        j[key] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return Tokenizer.from_str(json.dumps(j))


def write_tokenizer(family, spec, model_dir, sentences):
    tok = (build_sp_tokenizer if spec["tokenizer"] == "sp" else build_bytelevel_tokenizer)(spec, sentences)
    tok.save(str(model_dir / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "unk_token": spec["unk"],
        "pad_token": spec["pad"],
        "clean_up_tokenization_spaces": False,
        "model_max_length": 512,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    if family == "qwen2":
        cfg["additional_special_tokens"] = ["<|im_start|>", "<|im_end|>"]
    write_json(model_dir / "tokenizer_config.json", cfg)
    return tok


# --------------------------------------------------------------------------------------------------------------------
# Models and adapters
# --------------------------------------------------------------------------------------------------------------------

def randomize(model, seed, gemma_norms, qk_gain=1.0):
    """Weights big enough that attention is far from uniform (HF's 0.02-std init would hide masking differences)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif "norm" in name:
                base = 0.0 if gemma_norms else 1.0  # Gemma's RMSNorm scales by (1 + w)
                p.copy_(base + (torch.rand(p.shape, generator=g) * 0.4 - 0.2))
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.dim() == 2:
                std = p.shape[1] ** -0.5
                if name.split(".")[-2] in ("q_proj", "k_proj"):
                    std *= qk_gain
                p.copy_(torch.randn(p.shape, generator=g) * std)
            else:
                raise ValueError(f"unexpected parameter {name}")


def write_model(family, spec, model_dir, tok):
    vocab = tok.get_vocab(with_added_tokens=True)
    config = make_config(family, len(vocab), vocab)
    config._name_or_path = f"tiny-{family}"
    torch.manual_seed(spec["seed"])
    model = CAUSAL_LM[family](config)
    # gemma2: larger q/k so that raw attention logits reach the softcap (50) range
    randomize(model, spec["seed"], gemma_norms=family.startswith("gemma"), qk_gain=4.0 if family == "gemma2" else 1.0)
    model.eval()
    model.save_pretrained(str(model_dir), safe_serialization=True)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["_name_or_path"] = f"tiny-{family}"
    cfg["torch_dtype"] = "float32"
    write_json(model_dir / "config.json", cfg)
    gen = model_dir / "generation_config.json"
    if gen.exists():
        gen.unlink()


def write_adapter(family, model_dir, adapter_dir, seed):
    base = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", torch_dtype=torch.float32)
    lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none",
                      init_lora_weights=False)
    peft_model = get_peft_model(base, lcfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(peft_model.named_parameters(), key=lambda kv: kv[0]):
            if "lora_A" in name:
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[1] ** -0.5)
            elif "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
    peft_model.peft_config["default"].base_model_name_or_path = f"tiny-{family}"
    peft_model.save_pretrained(str(adapter_dir), safe_serialization=True)
    readme = adapter_dir / "README.md"
    if readme.exists():
        readme.unlink()
    # PEFT writes target_modules from a set (hash-seed dependent order): sort it for reproducible files.
    acfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    acfg["target_modules"] = sorted(acfg["target_modules"])
    write_json(adapter_dir / "adapter_config.json", acfg, sort_keys=True)


# --------------------------------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------------------------------

def padding_only_mask(attention_mask, input_tensor):
    """llm2vec's bidirectional mask (LlamaBiModel._update_causal_mask): 0 everywhere except padded keys."""
    dtype = input_tensor.dtype
    b, n = input_tensor.shape[:2]
    mask = torch.zeros((b, 1, n, n), dtype=dtype)
    if attention_mask is not None:
        mask = mask.masked_fill(attention_mask[:, None, None, :].eq(0), torch.finfo(dtype).min)
    return mask


def band_mask(mask, window):
    n = mask.shape[-1]
    pos = torch.arange(n)
    outside = (pos[:, None] - pos[None, :]).abs() >= window
    return mask.masked_fill(outside[None, None], torch.finfo(mask.dtype).min)


def qwen2_bidirectional_update_causal_mask(self, attention_mask, input_tensor, *args, **kwargs):
    return padding_only_mask(attention_mask, input_tensor)


def mistral_band_update_causal_mask(self, attention_mask, input_tensor, *args, **kwargs):
    return band_mask(padding_only_mask(attention_mask, input_tensor), self.config.sliding_window)


class Gemma2BiModel(Gemma2Model):
    """llm2vec-style bidirectional Gemma2 (llm2vec 0.2.3 has none): padding-only mask; the sliding layers' window
    handling depends on GEMMA2_WINDOW_MODE: "ignored" (all layers global), "band" (|i-j| < window on the sliding
    layers) or "one-sided" (transformers' Gemma2DecoderLayer left as is: it masks j <= i - window on top of the
    padding-only mask, so a token sees every later token but only window-1 earlier ones)."""

    window_mode = "ignored"

    def __init__(self, config):
        super().__init__(config)
        for layer in self.layers:
            layer.self_attn.is_causal = False
            if not layer.is_sliding or self.window_mode == "one-sided":
                continue
            layer.is_sliding = False
            if self.window_mode == "band":
                layer.register_forward_pre_hook(self._band_hook, with_kwargs=True)

    def _band_hook(self, module, args, kwargs):
        kwargs["attention_mask"] = band_mask(kwargs["attention_mask"], self.config.sliding_window)
        return args, kwargs

    def _update_causal_mask(self, attention_mask, input_tensor, *args, **kwargs):
        return padding_only_mask(attention_mask, input_tensor)


def make_gemma2_bimodel(mode):
    return type(f"Gemma2BiModel_{mode.replace('-', '_')}", (Gemma2BiModel,), {"window_mode": mode})


def offset_tokenize(self, texts):
    """Patched LLM2Vec.tokenize: the pooled (embed) mask marks the tokens of the joint encoding whose character
    span reaches the text part (end offset >= index where the text starts, so the separator space, which
    SentencePiece-style tokenizers turn into the text's word-start marker, counts as text); special tokens added by the
    post-processor (offsets (0, 0)) and padding are never pooled."""
    original_texts, starts = [], []
    for text in texts:
        t = text.split(SEP)
        original_texts.append("".join(t))
        starts.append(len(t[0]) if len(t) > 1 else len(text))
    original = self.tokenizer(original_texts, return_tensors="pt", padding=True, truncation=True,
                              max_length=self.max_length, return_offsets_mapping=True)
    offsets = original.pop("offset_mapping")
    added = (offsets[..., 0] == 0) & (offsets[..., 1] == 0)
    embed = (offsets[..., 1] >= torch.tensor(starts)[:, None]) & ~added & original["attention_mask"].bool()
    original["embed_mask"] = embed.to(original["attention_mask"].dtype)
    return original


STOCK_TOKENIZE = LLM2Vec.tokenize
STOCK_PREPARE = LLM2Vec.prepare_for_tokenization
STOCK_GET_MODEL_CLASS = LLM2Vec._get_model_class.__func__
STOCK_QWEN2_MASK = Qwen2BiModel._update_causal_mask
STOCK_MISTRAL_MASK = MistralBiModel._update_causal_mask


def eos_prepare(self, text):
    """Patched prepare_for_tokenization: for eos_token pooling append the tokenizer's own EOS token (no space)."""
    if self.pooling_mode != "eos_token":
        return STOCK_PREPARE(self, text)
    assert self.model.config._name_or_path.startswith("tiny-"), "name-based chat templates must not apply"
    return text.strip() + self.tokenizer.eos_token


PATCH_DOC = {
    "offset-instruction-mask": (
        "LLM2Vec.tokenize: the embed (pooled) mask is computed from the joint encoding's offsets "
        "(return_offsets_mapping): token k is pooled iff offsets[k].end >= c, c = character index in the joint "
        "string (instruction.strip() + ' ' + text, or text alone) where the text starts, and offsets[k] != (0, 0) "
        "(special tokens added by the post-processor) and k is not padding. Offsets are Python character "
        "(code point) offsets. Stock: the last len(tokenize(text, add_special_tokens=False, truncation to "
        "max_length)) positions of the padded row."),
    "eos-token-id": (
        "LLM2Vec.prepare_for_tokenization, pooling_mode eos_token only: text.strip() + tokenizer.eos_token "
        "(no space). Stock: Llama/Mistral configs get ' </s>' (with a space), GemmaConfig '<eos>', Qwen2Config "
        "'<|endoftext|>', any other config (Gemma2Config) nothing."),
    "qwen2-bidirectional": (
        "Qwen2BiModel._update_causal_mask replaced by llm2vec's bidirectional mask (0 everywhere, finfo.min on "
        "padded keys), as LlamaBiModel does; stock Qwen2BiModel inherits Qwen2Model's causal mask under "
        "eager/sdpa, so it is causal."),
    "gemma2-bidirectional": (
        "llm2vec 0.2.3 has no Gemma2 support (LLM2Vec._get_model_class raises for Gemma2Config): "
        "_get_model_class returns a Gemma2Model subclass with llm2vec's padding-only mask (and is_causal=False), "
        "all layers global: the sliding window is not applied in bidirectional mode (as for Mistral in the "
        "reference)."),
    "bidirectional-sliding-window-band": (
        "in bidirectional mode the sliding-window layers (all Mistral layers; Gemma2 even layers) additionally "
        "mask |i - j| >= sliding_window (symmetric band), on top of the padding mask."),
    "bidirectional-sliding-window-one-sided": (
        "Gemma2 only: the padding-only bidirectional mask fed into transformers 4.44.2's Gemma2DecoderLayer, "
        "which on even layers masks j <= i - sliding_window (tril(-window)): a token sees all later tokens and the "
        "window-1 previous ones. This is what a naive port of llm2vec's GemmaBiModel to Gemma2 computes."),
}


@contextlib.contextmanager
def patched(patches):
    """Apply the named monkeypatches for the duration of the block."""
    saved = []
    missing = object()

    def setattr_(obj, name, value):
        saved.append((obj, name, obj.__dict__.get(name, missing)))
        setattr(obj, name, value)

    gemma2_mode = None
    if "gemma2-bidirectional" in patches:
        gemma2_mode = "ignored"
        if "bidirectional-sliding-window-band" in patches:
            gemma2_mode = "band"
        if "bidirectional-sliding-window-one-sided" in patches:
            gemma2_mode = "one-sided"
    try:
        if "offset-instruction-mask" in patches:
            setattr_(LLM2Vec, "tokenize", offset_tokenize)
        if "eos-token-id" in patches:
            setattr_(LLM2Vec, "prepare_for_tokenization", eos_prepare)
        if "qwen2-bidirectional" in patches:
            setattr_(Qwen2BiModel, "_update_causal_mask", qwen2_bidirectional_update_causal_mask)
        if "bidirectional-sliding-window-band" in patches and gemma2_mode is None:
            setattr_(MistralBiModel, "_update_causal_mask", mistral_band_update_causal_mask)
        if gemma2_mode is not None:
            cls = make_gemma2_bimodel(gemma2_mode)

            def get_model_class(klass, config_class_name, enable_bidirectional):
                if enable_bidirectional and config_class_name == "Gemma2Config":
                    return cls
                return STOCK_GET_MODEL_CLASS(klass, config_class_name, enable_bidirectional)

            setattr_(LLM2Vec, "_get_model_class", classmethod(get_model_class))
        yield
    finally:
        for obj, name, value in reversed(saved):
            if value is missing:
                delattr(obj, name)
            else:
                setattr(obj, name, value)


# --------------------------------------------------------------------------------------------------------------------
# Running the reference
# --------------------------------------------------------------------------------------------------------------------

def load_encoder(fam_dir, case):
    """LLM2Vec as LLM2Vec.from_pretrained builds it. Stacked adapters: the base merged with `adapter`
    (merge_and_unload), `adapter2` loaded on top unmerged -- what from_pretrained does for an MNTP base directory
    holding an adapter plus peft_model_name_or_path."""
    model_dir = fam_dir / "model"
    enc_args = dict(pooling_mode=case["pooling"], max_length=case["max_length"],
                    doc_max_length=case["doc_max_length"], skip_instruction=case["skip_instruction"])
    bidir = case["attention"] == "bidirectional"
    adapters = case["adapters"]
    if len(adapters) <= 1:
        return LLM2Vec.from_pretrained(
            str(model_dir), peft_model_name_or_path=str(fam_dir / adapters[0]) if adapters else None,
            enable_bidirectional=bidir, attn_implementation="eager", torch_dtype=torch.float32, **enc_args)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    config = AutoConfig.from_pretrained(str(model_dir))
    model_class = LLM2Vec._get_model_class(config.__class__.__name__, enable_bidirectional=bidir)
    model = model_class.from_pretrained(str(model_dir), attn_implementation="eager", torch_dtype=torch.float32)
    model.config._name_or_path = json.loads((model_dir / "config.json").read_text())["_name_or_path"]
    model = PeftModel.from_pretrained(model, str(fam_dir / adapters[0])).merge_and_unload()
    for name in adapters[1:]:
        model = PeftModel.from_pretrained(model, str(fam_dir / name))
    return LLM2Vec(model=model, tokenizer=tokenizer, **enc_args)


def run_case(fam_dir, case, indices, patches):
    """Encode the inputs `indices` under `patches`; returns (embeddings, per-input features)."""
    with patched(patches):
        enc = load_encoder(fam_dir, case)
        captured = []
        stock_forward = enc.forward

        def capture_forward(features):
            captured.append({k: v.clone() for k, v in features.items()})
            return stock_forward(features)

        enc.forward = capture_forward
        if case["with_instructions"]:
            sentences = [list(INPUTS[i]) for i in indices]
            joint = [enc._convert_to_str(s[0], s[1]) for s in sentences]
        else:
            sentences = [INPUTS[i][1] for i in indices]
            joint = [enc._convert_to_str("", s) for s in sentences]
        emb = enc.encode(sentences, batch_size=BATCH_SIZE, show_progress_bar=False, convert_to_numpy=False,
                         device="cpu")
        # map captured rows back to input order (encode sorts by length; rows come in batches)
        order = np.argsort([-enc._text_length(s) for s in joint])
        rows = []
        for feats in captured:
            for r in range(feats["input_ids"].shape[0]):
                rows.append({k: v[r] for k, v in feats.items()})
        per_input = [None] * len(indices)
        for pos, idx in enumerate(order):
            per_input[idx] = rows[pos]
        # also the stock embed mask of the same strings, for comparison
        prepared = [enc.prepare_for_tokenization(s) for s in joint]
        stock_masks, variant_masks = [], []
        for s in prepared:
            f = STOCK_TOKENIZE(enc, [s])
            stock_masks.append(f["embed_mask"][0].tolist())
            t = s.split(SEP)
            c = len(t[0])
            e = enc.tokenizer("".join(t), truncation=True, max_length=enc.max_length, return_offsets_mapping=True)
            variant_masks.append([int(b >= c and b > 0) for a, b in e["offset_mapping"]])
        bos_id = enc.tokenizer.bos_token_id
    return emb, per_input, (stock_masks, variant_masks), bos_id


def describe_rows(case, per_input, bos_id):
    token_ids, embed_masks, pooled_masks = [], [], []
    for f in per_input:
        am = f["attention_mask"].tolist()
        start = am.index(1)
        assert all(am[start:]), "left padding expected"
        ids = f["input_ids"].tolist()
        em = f["embed_mask"].tolist()
        n_pad = start
        use = em if case["skip_instruction"] else am
        length = sum(use)
        row_len = len(am)
        if case["pooling"] in ("mean", "weighted_mean"):
            pooled = [1 if (k >= row_len - length and length > 0) else 0 for k in range(row_len)]
            if length == 0:  # the reference's -0: slice
                pooled = [1] * row_len
        elif case["pooling"] in ("eos_token", "last_token"):
            pooled = [0] * (row_len - 1) + [1]
        elif case["pooling"] == "bos_token":
            pooled = [1 if t == bos_id else 0 for t in ids]
        else:
            raise ValueError(case["pooling"])
        assert not any(pooled[:n_pad]), "pooling reached into padding"
        token_ids.append(ids[n_pad:])
        embed_masks.append(em[n_pad:])
        pooled_masks.append(pooled[n_pad:])
    return token_ids, embed_masks, pooled_masks


def max_abs(a, b):
    return float((a - b).abs().max()) if a.numel() else 0.0


def build_cases(family, has_bos):
    poolings = ["mean", "weighted_mean", "eos_token", "last_token"] + (["bos_token"] if has_bos else [])
    base = dict(skip_instruction=True, max_length=512, doc_max_length=400, adapters=[], with_instructions=True)
    windowed = family in ("mistral", "gemma2")
    cases = []

    def add(name, window, extra_patches=(), **kw):
        c = dict(base, name=name, **kw)
        patches = ["offset-instruction-mask"]
        if c["pooling"] == "eos_token":
            patches.append("eos-token-id")
        if c["attention"] == "bidirectional":
            if family == "qwen2":
                patches.append("qwen2-bidirectional")
            if family == "gemma2":
                patches.append("gemma2-bidirectional")
        patches += list(extra_patches)
        c["patches"] = patches
        c["sliding_window"] = window
        cases.append(c)

    causal_window = "causal: token i sees j iff 0 <= i-j < sliding_window" if windowed else "none"
    ignored = "ignored: every token sees every non-padding token" if windowed else "none"
    band = "band: token i sees j iff |i-j| < sliding_window (on the sliding layers)"
    one_sided = "one-sided: token i sees j iff j-i > -sliding_window, i.e. all later tokens (on the sliding layers)"
    for p in poolings:
        add(f"causal-{p}", causal_window, attention="causal", pooling=p)
    for p in poolings:
        add(f"bidirectional-{p}", ignored, attention="bidirectional", pooling=p)
        if windowed:
            add(f"bidirectional-{p}+band", band, ["bidirectional-sliding-window-band"],
                attention="bidirectional", pooling=p)
    if family == "gemma2":
        add("bidirectional-mean+one-sided", one_sided, ["bidirectional-sliding-window-one-sided"],
            attention="bidirectional", pooling="mean")
    bm = dict(attention="bidirectional", pooling="mean")
    add("bidirectional-mean-no-instructions", ignored, with_instructions=False, **bm)
    add("bidirectional-mean-no-skip-instruction", ignored, **dict(bm, skip_instruction=False))
    add("bidirectional-mean-doc-max-length-10", ignored, **dict(bm, doc_max_length=10))
    add("bidirectional-mean-max-length", ignored, **dict(bm, max_length=None))  # set from the token counts
    add("bidirectional-mean-adapter", ignored, **dict(bm, adapters=["adapter"]))
    add("bidirectional-mean-adapter-stacked", ignored, **dict(bm, adapters=["adapter", "adapter2"]))
    return cases


def stock_reference_possible(patch):
    # without it the reference raises ValueError (Gemma2Config is not supported with enable_bidirectional)
    return patch != "gemma2-bidirectional"


def run_family(family, spec, fam_dir, checks):
    tok = Tokenizer.from_file(str(fam_dir / "model" / "tokenizer.json"))
    has_bos = spec["bos"] is not None
    cases = build_cases(family, has_bos)
    out_cases = []
    mask_diffs = {}
    variant_diffs = set()
    prefix_lens = None
    for case in cases:
        indices = list(range(len(INPUTS)))
        if case["name"] == "bidirectional-mean-max-length":
            # small enough to cut the long texts, large enough to keep >= 4 text tokens of every input
            case["max_length"] = max(prefix_lens) + 4
            case["name"] += f"-{case['max_length']}"
        emb, per_input, stock_masks, bos_id = run_case(fam_dir, case, indices, case["patches"])
        dropped = []
        if case["pooling"] in ("mean", "weighted_mean") and case["skip_instruction"]:
            dropped = [i for i, f in zip(indices, per_input) if int(f["embed_mask"].sum()) == 0]
        if dropped:
            indices = [i for i in indices if i not in dropped]
            emb, per_input, stock_masks, bos_id = run_case(fam_dir, case, indices, case["patches"])
        token_ids, embed_masks, pooled_masks = describe_rows(case, per_input, bos_id)
        if case["name"] == "bidirectional-mean":
            prefix_lens = [len(ids) - sum(m) for ids, m in zip(token_ids, embed_masks)]
        if case["pooling"] == "bos_token":
            assert all(sum(m) == 1 for m in pooled_masks), "bos_token pooling needs exactly one BOS per row"
        # patched vs stock embed masks (same strings, unpadded)
        stock_masks, variant_masks = stock_masks
        for i, ids, em, sm, vm in zip(indices, token_ids, embed_masks, stock_masks, variant_masks):
            sm = sm[len(sm) - len(ids):] if len(sm) >= len(ids) else [0] * (len(ids) - len(sm)) + sm
            if vm != sm:
                variant_diffs.add((case["name"], i))
            if em != sm:
                key = (i, tuple(ids), tuple(em), tuple(sm))
                if key not in mask_diffs:
                    mask_diffs[key] = dict(input=i, tokens=[tok.id_to_token(t) for t in ids], patched=em, stock=sm,
                                           cases=[])
                mask_diffs[key]["cases"].append(case["name"])
        stock = {}
        for p in case["patches"]:
            if not stock_reference_possible(p):
                stock[p] = None
                continue
            reverted = [q for q in case["patches"] if q != p]
            if p.startswith("bidirectional-sliding-window"):
                reverted = [q for q in reverted if not q.startswith("bidirectional-sliding-window")]
            e2, _, _, _ = run_case(fam_dir, case, indices, reverted)
            stock[p] = max_abs(emb, e2)
        c = {k: case[k] for k in ("name", "attention", "pooling", "skip_instruction", "max_length",
                                  "doc_max_length", "adapters", "with_instructions", "patches", "sliding_window")}
        c["batch_size"] = BATCH_SIZE
        c["input_indices"] = indices
        if dropped:
            c["dropped_inputs"] = dropped
        c["stock_max_abs_diff"] = stock
        c["token_ids"] = token_ids
        c["embed_mask"] = embed_masks
        c["pooled_mask"] = pooled_masks
        c["embeddings"] = emb.to(torch.float32).tolist()
        out_cases.append(c)
        print(f"  {family:8s} {case['name']:45s} dropped={dropped} stock_diff={stock}", flush=True)
    checks["embed_mask_stock_vs_offset_differences"] = list(mask_diffs.values())
    checks["embed_mask_stock_vs_variant_end_ge_c_differences"] = [list(x) for x in sorted(variant_diffs)]
    return out_cases


# --------------------------------------------------------------------------------------------------------------------
# Feature checks (recorded in notes; do the tiny models exercise each feature?)
# --------------------------------------------------------------------------------------------------------------------

def hidden(model_dir, cls, ids, config_changes=None):
    config = AutoConfig.from_pretrained(str(model_dir))
    for k, v in (config_changes or {}).items():
        setattr(config, k, v)
    config._attn_implementation = "eager"
    model = cls.from_pretrained(str(model_dir), config=config, attn_implementation="eager", torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


def feature_checks(family, fam_dir, checks):
    model_dir = fam_dir / "model"
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tok([INPUTS[5][1]], return_tensors="pt")["input_ids"]
    if family == "mistral":
        with patched([]):
            ref_c = hidden(model_dir, AutoModel, ids)
            nowin_c = hidden(model_dir, AutoModel, ids, {"sliding_window": None})
            ref_b = hidden(model_dir, MistralBiModel, ids)
            nowin_b = hidden(model_dir, MistralBiModel, ids, {"sliding_window": None})
        with patched(["bidirectional-sliding-window-band"]):
            band_b = hidden(model_dir, MistralBiModel, ids)
        checks["mistral_causal_window_effect"] = max_abs(ref_c, nowin_c)
        checks["mistral_stock_bidirectional_window_effect"] = max_abs(ref_b, nowin_b)
        checks["mistral_band_vs_stock_bidirectional"] = max_abs(band_b, ref_b)
    if family == "gemma2":
        ref_c = hidden(model_dir, AutoModel, ids)
        checks["gemma2_causal_window_effect"] = max_abs(ref_c, hidden(model_dir, AutoModel, ids,
                                                                      {"sliding_window": 10 ** 6}))
        checks["gemma2_attn_softcap_effect"] = max_abs(ref_c, hidden(model_dir, AutoModel, ids,
                                                                     {"attn_logit_softcapping": None}))
        checks["gemma2_query_pre_attn_scalar_effect"] = max_abs(ref_c, hidden(model_dir, AutoModel, ids,
                                                                              {"query_pre_attn_scalar": 16}))
        bi = {m: hidden(model_dir, make_gemma2_bimodel(m), ids) for m in ("ignored", "band", "one-sided")}
        checks["gemma2_bidirectional_band_vs_ignored"] = max_abs(bi["band"], bi["ignored"])
        checks["gemma2_bidirectional_one_sided_vs_ignored"] = max_abs(bi["one-sided"], bi["ignored"])
        checks["gemma2_bidirectional_band_vs_causal"] = max_abs(bi["band"], ref_c)
    if family == "qwen2":
        with patched([]):
            stock_b = hidden(model_dir, Qwen2BiModel, ids)
            causal = hidden(model_dir, AutoModel, ids)
        with patched(["qwen2-bidirectional"]):
            patched_b = hidden(model_dir, Qwen2BiModel, ids)
        checks["qwen2_stock_bidirectional_vs_causal"] = max_abs(stock_b, causal)
        checks["qwen2_patched_bidirectional_vs_causal"] = max_abs(patched_b, causal)
        assert checks["qwen2_patched_bidirectional_vs_causal"] > 1e-3


def batching_check(fam_dir, cases, checks):
    """How much batch composition (left padding) alone moves the numbers: every case rerun with batch_size 1."""
    global BATCH_SIZE
    saved, BATCH_SIZE = BATCH_SIZE, 1
    try:
        worst = 0.0
        for c in cases:
            emb, _, _, _ = run_case(fam_dir, c, c["input_indices"], c["patches"])
            worst = max(worst, max_abs(emb, torch.tensor(c["embeddings"])))
    finally:
        BATCH_SIZE = saved
    checks["batch_size_1_vs_recorded_max_abs_diff"] = worst


def stacked_from_pretrained_check(family, fam_dir, checks, case):
    """The real from_pretrained path for stacked adapters: a base directory holding config.json + model weights +
    an adapter (as the McGill-NLP *-mntp repositories do) and peft_model_name_or_path = the second adapter."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "mntp"
        shutil.copytree(fam_dir / "model", base)
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(fam_dir / "adapter" / f, base / f)
        acfg = json.loads((base / "adapter_config.json").read_text())
        acfg["base_model_name_or_path"] = str(fam_dir / "model")
        (base / "adapter_config.json").write_text(json.dumps(acfg))
        reference_embeddings = torch.tensor(case["embeddings"])
        with patched(case["patches"]):
            try:
                enc = LLM2Vec.from_pretrained(str(base), peft_model_name_or_path=str(fam_dir / "adapter2"),
                                              enable_bidirectional=True, attn_implementation="eager",
                                              torch_dtype=torch.float32, pooling_mode="mean")
                emb = enc.encode([list(x) for x in INPUTS], batch_size=BATCH_SIZE, show_progress_bar=False,
                                 device="cpu")
                checks["stacked_via_from_pretrained_max_abs_diff"] = max_abs(emb, reference_embeddings)
            except Exception as e:  # noqa: BLE001 - recorded, not fatal
                checks["stacked_via_from_pretrained_error"] = f"{type(e).__name__}: {e}"[:300]


# --------------------------------------------------------------------------------------------------------------------

def write_json(path, obj, sort_keys=False):
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n", encoding="utf-8")


def write_expected(path, doc):
    """JSON with one case per line block; floats as Python writes them (exact f32 values, round-trip)."""
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = ["{"]
    for k, v in head.items():
        if k in ("notes", "checks"):
            continue
        lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append(' "cases": [')
    for i, c in enumerate(doc["cases"]):
        parts = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in c.items()]
        lines.append("  {\n" + ",\n".join(parts) + "\n  }" + ("," if i + 1 < len(doc["cases"]) else ""))
    lines.append(" ],")
    lines.append(f' "checks": {json.dumps(doc["checks"], ensure_ascii=False)},')
    lines.append(f' "notes": {json.dumps(doc["notes"], ensure_ascii=False)}')
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # well-formed
    Path(path).write_text(text, encoding="utf-8")


def family_notes(family, spec, cases, checks):
    n = []
    n.append("Numbers: llm2vec 0.2.3 LLM2Vec.encode (batch_size 3, left padding, CPU, float32, "
             "attn_implementation='eager') with the monkeypatches named in each case's `patches` (descriptions in "
             "`patch_descriptions`). `stock_max_abs_diff[p]` = max |recorded - reference with patch p reverted| "
             "over the case's embeddings (null: the reference cannot run without it).")
    n.append("embed_mask = the (patched) instruction-skip mask over the unpadded tokens; pooled_mask = the positions "
             "the pooling actually used (mean/weighted_mean: the last sum(mask) positions, mask = embed_mask if "
             "skip_instruction else attention mask; eos_token/last_token: last position; bos_token: positions "
             "whose id is bos_token_id). weighted_mean weights are 1..n over the pooled positions, normalised.")
    n.append("The reference pads on the left with pad_token = eos_token and gives padded rows position ids "
             "0..L-1 over the padded length (RoPE is relative, so this only shifts rounding: batch_size 1 vs "
             f"the recorded batches differ by at most {checks.get('batch_size_1_vs_recorded_max_abs_diff')}).")
    diffs = checks.get("embed_mask_stock_vs_offset_differences", [])
    if spec["tokenizer"] == "sp":
        if not diffs:
            n.append("offset-instruction-mask: identical to the stock embed mask for every case and input.")
        else:
            n.append("offset-instruction-mask: NOT identical to the stock embed mask for inputs "
                     f"{sorted({d['input'] for d in diffs})}. With an instruction, the joint string is "
                     "instruction + ' ' + text; when that separator space does not merge into the text's first "
                     "token (text starts with whitespace, or with a character that has no '▁x' token and goes "
                     "through byte fallback, e.g. 'C' here), it becomes a standalone '▁' token whose span is the "
                     "separator alone. Stock counts it (tokenizing the text alone yields the same '▁' from the "
                     "Prepend normalizer) and pools it, and so does the offset rule (end >= c). Plus the max_length case: stock "
                     "pools the last min(len(text alone), max_length) positions, i.e. BOS and instruction tokens "
                     "too when the text was cut. See checks.embed_mask_stock_vs_offset_differences (token "
                     "pieces, both masks, the cases). The variant rule 'end offset >= c' (a token made of the "
                     "separator space alone counts as text) differs from stock only at (case, input) "
                     + json.dumps(checks["embed_mask_stock_vs_variant_end_ge_c_differences"]) + ".")
    else:
        n.append(f"offset-instruction-mask: stock differs for inputs {sorted({d['input'] for d in diffs})} "
                 "(byte-level BPE: the text's first word tokenizes differently after the separator space: "
                 "' two' in the joint string -> 'Ġt','wo' but 'two' alone -> 'two'; ' dogs' -> 'Ġdog','s' but "
                 "'dogs' alone -> 'd','o','g','s'; so the stock suffix count is off by one or more), plus the "
                 "max_length truncation; see "
                 "checks.embed_mask_stock_vs_offset_differences.")
    per_patch = {}
    for c in cases:
        for p, v in c["stock_max_abs_diff"].items():
            if v is None:
                per_patch.setdefault(p, None)
            else:
                per_patch[p] = max(v, per_patch.get(p) or 0.0)
    n.append("Max stock-vs-patched |diff| per patch over all cases: " + json.dumps(per_patch) + ".")
    if family in ("llama", "mistral"):
        n.append("eos-token-id: stock appends ' </s>' with a space; with this SentencePiece-style tokenizer the "
                 "space becomes an extra '▁' token before </s>, which the patch removes.")
    if family == "gemma":
        n.append("eos-token-id: stock appends '<eos>' = tokenizer.eos_token, so the patch changes nothing.")
    if family == "qwen2":
        n.append("eos-token-id: stock appends '<|endoftext|>' = tokenizer.eos_token, so the patch changes nothing. "
                 "No BOS is added by this tokenizer, so there is no bos_token case. qwen2-bidirectional: the stock "
                 "Qwen2BiModel is causal (stock bidirectional vs stock causal hidden states max diff "
                 f"{checks.get('qwen2_stock_bidirectional_vs_causal')}); patched vs causal "
                 f"{checks.get('qwen2_patched_bidirectional_vs_causal')}.")
    if family == "gemma2":
        n.append("eos-token-id: stock appends nothing for Gemma2Config (not a GemmaConfig subclass), so stock "
                 "eos_token pooling = the last text token; the patch appends '<eos>'.")
        n.append("gemma2: 4 layers, even layers (0, 2) sliding (window 4), odd layers global; "
                 "query_pre_attn_scalar 24 (scale 24^-0.5, head_dim 16); attn logits softcapped "
                 "tanh(x/50)*50 after scaling and before the mask; final_logit_softcapping only affects lm_head "
                 "logits, never the embeddings. Causal sliding layers: token i sees j iff 0 <= i-j < 4. "
                 "Bidirectional cases: unsuffixed = window ignored (all layers global), '+band' = |i-j| < 4 on "
                 "the sliding layers, '+one-sided' = what transformers' Gemma2DecoderLayer does to a padding-only "
                 "mask (j > i-4, all later tokens visible). Feature effects on the hidden states of the long input: "
                 + json.dumps({k: v for k, v in checks.items() if k.startswith("gemma2_") and k != "gemma2_note"})
                 + ".")
    if family == "mistral":
        n.append("mistral sliding_window 5. Causal (stock MistralModel, eager): token i sees j iff 0 <= i-j < 5. "
                 "Bidirectional (stock MistralBiModel): the window is IGNORED (its mask starts from zeros, so the "
                 "window exclusion multiplies zeros): every token sees every non-padding token -- unsuffixed "
                 "bidirectional cases. '+band' cases: patched symmetric band |i-j| < 5. Effects on the hidden "
                 "states of the long input: "
                 + json.dumps({k: v for k, v in checks.items() if k.startswith("mistral_")}) + ".")
    if "stacked_via_from_pretrained_max_abs_diff" in checks or "stacked_via_from_pretrained_error" in checks:
        n.append("bidirectional-mean-adapter-stacked was built by hand (base merged with adapter via "
                 "merge_and_unload, adapter2 on top via PeftModel.from_pretrained). Cross-check through "
                 "LLM2Vec.from_pretrained on a directory holding model + adapter files (adapter base path set to "
                 "model/) with peft_model_name_or_path=adapter2: "
                 + json.dumps({k: v for k, v in checks.items() if k.startswith("stacked_via")}) + ".")
    return " ".join(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--skip-checks", action="store_true", help="skip the extra feature checks recorded in notes")
    args = ap.parse_args()
    for pkg, want in PINNED.items():
        have = md.version(pkg)
        if have.split("+")[0] != want:
            sys.exit(f"{pkg}=={have} installed, {want} expected (run scripts/reference/setup-venv.sh)")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    sentences = training_sentences()
    for family in args.families.split(","):
        spec = FAMILIES[family]
        fam_dir = OUT / family
        if fam_dir.exists():
            shutil.rmtree(fam_dir)
        (fam_dir / "model").mkdir(parents=True)
        tok = write_tokenizer(family, spec, fam_dir / "model", sentences)
        write_model(family, spec, fam_dir / "model", tok)
        write_adapter(family, fam_dir / "model", fam_dir / "adapter", spec["seed"] + 1)
        write_adapter(family, fam_dir / "model", fam_dir / "adapter2", spec["seed"] + 2)
        if family == "llama":
            write_json(fam_dir / "adapter" / "llm2vec_config.json",
                       {"pooling_mode": "mean", "max_length": 512, "doc_max_length": 400, "skip_instruction": True})
        checks = {}
        cases = run_family(family, spec, fam_dir, checks)
        if not args.skip_checks:
            feature_checks(family, fam_dir, checks)
            stacked = next(c for c in cases if c["name"] == "bidirectional-mean-adapter-stacked")
            stacked_from_pretrained_check(family, fam_dir, checks, stacked)
            batching_check(fam_dir, cases, checks)
        doc = {
            "family": family,
            "reference": "llm2vec==0.2.3 transformers==4.44.2 torch==2.4.1 peft==0.12.0 tokenizers==0.19.1",
            "inputs": INPUTS,
            "patch_descriptions": {p: PATCH_DOC[p] for p in PATCH_DOC
                                   if any(p in c["patches"] for c in cases)},
            "cases": cases,
            "checks": checks,
            "notes": family_notes(family, spec, cases, checks),
        }
        write_expected(fam_dir / "expected.json", doc)
        print(f"{family}: {len(cases)} cases written", flush=True)


if __name__ == "__main__":
    main()
