#!/usr/bin/env python3
"""Converts a GGUF model (llama or gemma3 architecture) into a Hugging Face directory, independently of the
Rust loader: the `gguf` package dequantizes, numpy undoes llama.cpp's q/k row permutation (llama) or the
+1 on norm weights (gemma3).

Writes config.json, model.safetensors (f32), tokenizer.json (BPE merges as "a b" strings, readable by
tokenizers 0.19) and tokenizer_config.json. A llama output loads with transformers 4.44.2 (LlamaForCausalLM).

Usage: .venv-ref/bin/python scripts/reference/dequantize_gguf_to_hf.py MODEL.gguf OUT_DIR
"""

import json
import sys
from pathlib import Path

import numpy as np
import gguf
from safetensors.numpy import save_file

LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
SANDWICH_NAMES = {
    "ffn_norm": "pre_feedforward_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
GPT2_SPLIT = {
    # llama.cpp's pre-tokenizers, as Hugging Face pre_tokenizer JSON.
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
    "default": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
}


class Gguf:
    def __init__(self, path):
        self.reader = gguf.GGUFReader(path)
        self.arch = self.get("general.architecture")

    def get(self, key, default=None):
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def hp(self, suffix, default=None):
        return self.get(f"{self.arch}.{suffix}", default)


def hf_name(arch, name):
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    _, layer, module, suffix = name.split(".")
    names = dict(LAYER_NAMES)
    if arch == "gemma3":
        names.update(SANDWICH_NAMES)
    else:
        names["ffn_norm"] = "post_attention_layernorm"
    return f"model.layers.{layer}.{names[module]}.{suffix}"


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf's permute: reshape(n_head, 2, hd/2, ...).swapaxes(1, 2)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensors(g):
    n_head = g.hp("attention.head_count")
    n_kv = g.hp("attention.head_count_kv", n_head)
    out = {}
    for t in g.reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        name = hf_name(g.arch, t.name)
        if g.arch == "llama" and ".q_proj." in name:
            w = unpermute(w, n_head)
        elif g.arch == "llama" and ".k_proj." in name:
            w = unpermute(w, n_kv)
        elif g.arch == "gemma3" and name.endswith("norm.weight"):
            w = w - np.float32(1.0)
        out[name] = np.ascontiguousarray(w)
    return out


def config(g, weights):
    n_head = g.hp("attention.head_count")
    hidden = g.hp("embedding_length")
    head_dim = g.hp("attention.key_length", hidden // n_head)
    c = {
        "hidden_size": hidden,
        "intermediate_size": g.hp("feed_forward_length"),
        "num_hidden_layers": g.hp("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": g.hp("attention.head_count_kv", n_head),
        "head_dim": head_dim,
        "rms_norm_eps": float(str(np.float32(g.hp("attention.layer_norm_rms_epsilon")))),
        "rope_theta": float(str(np.float32(g.hp("rope.freq_base", 10000.0)))),
        "vocab_size": weights["model.embed_tokens.weight"].shape[0],
        "max_position_embeddings": g.hp("context_length"),
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "bos_token_id": g.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": g.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": g.get("tokenizer.ggml.padding_token_id"),
        "torch_dtype": "float32",
        "rope_scaling": None,
        "attention_bias": False,
    }
    if g.arch == "llama":
        c.update(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", mlp_bias=False)
    elif g.arch == "gemma3":
        c.update(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", hidden_activation="gelu_pytorch_tanh",
                 sliding_window=g.hp("attention.sliding_window"), sliding_window_pattern=6,
                 rope_local_base_freq=10000.0, query_pre_attn_scalar=head_dim,
                 attn_logit_softcapping=None, final_logit_softcapping=None)
    return c


def spm_merges(tokens, types, scores):
    """SentencePiece BPE merges: a + b is a normal piece; ranked by its score, then by ids."""
    normal = {t: i for i, t in enumerate(tokens) if types[i] == 1}
    ranked = []
    for piece, pid in normal.items():
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in normal and b in normal:
                ranked.append((-scores[pid], pid, normal[a], normal[b]))
    ranked.sort()
    return [f"{tokens[a]} {tokens[b]}" for _, _, a, b in ranked]


def tokenizer_json(g):
    tokens = list(g.get("tokenizer.ggml.tokens"))
    types = list(g.get("tokenizer.ggml.token_type"))
    model_kind = g.get("tokenizer.ggml.model")
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": ty in (2, 3)}
             for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (2, 3, 4)]
    vocab = {t: i for i, t in enumerate(tokens)}
    bos = g.get("tokenizer.ggml.bos_token_id")
    add_bos = g.get("tokenizer.ggml.add_bos_token", model_kind == "llama")
    post = None
    if add_bos and bos is not None:
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": tokens[bos], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": tokens[bos], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": tokens[bos], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {tokens[bos]: {"id": tokens[bos], "ids": [bos], "tokens": [tokens[bos]]}}}
    unk = g.get("tokenizer.ggml.unknown_token_id")
    if model_kind == "gpt2":
        merges = list(g.get("tokenizer.ggml.merges"))
        pre = g.get("tokenizer.ggml.pre", "default")
        model = {"type": "BPE", "dropout": None, "unk_token": tokens[unk] if unk is not None else None,
                 "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
                 "byte_fallback": False, "vocab": vocab, "merges": merges}
        return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
                "pre_tokenizer": GPT2_SPLIT[pre],
                "post_processor": post or {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                           "use_regex": True},
                "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
                "model": model}
    scores = list(g.get("tokenizer.ggml.scores"))
    model = {"type": "BPE", "dropout": None, "unk_token": tokens[unk] if unk is not None else None,
             "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
             "byte_fallback": True, "vocab": vocab, "merges": spm_merges(tokens, types, scores)}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
            "pre_tokenizer": None, "post_processor": post,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]},
            "model": model}


def tokenizer_config(g):
    tokens = g.get("tokenizer.ggml.tokens")
    token = lambda key: None if g.get(key) is None else tokens[g.get(key)]
    return {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
            "bos_token": token("tokenizer.ggml.bos_token_id"), "eos_token": token("tokenizer.ggml.eos_token_id"),
            "pad_token": token("tokenizer.ggml.padding_token_id"), "unk_token": token("tokenizer.ggml.unknown_token_id"),
            "model_max_length": g.hp("context_length")}


def main(src, dst):
    g = Gguf(src)
    if g.arch not in ("llama", "gemma3"):
        sys.exit(f"unsupported architecture {g.arch}")
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    weights = tensors(g)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    files = {"config.json": config(g, weights), "tokenizer.json": tokenizer_json(g),
             "tokenizer_config.json": tokenizer_config(g)}
    for name, content in files.items():
        (out / name).write_text(json.dumps(content, ensure_ascii=False, indent=1))
    print(f"wrote {out}: {len(weights)} tensors")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
