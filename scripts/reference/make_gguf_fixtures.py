#!/usr/bin/env python3
"""Writes the GGUF test fixtures under crates/llm2vec/tests/fixtures/gguf/.

quants.gguf, the dequantization and reader fixture:

For each ggml type it holds a tensor of random (seeded) blocks -- random bytes with sane f16/f32 scales --
and, beside it as `<name>.expected`, the f32 values the `gguf` Python package's independent implementation
(`gguf.quants.dequantize`) gives for it (Q8_K, which that package does not dequantize, by hand: d * q).
It also carries metadata of every GGUF value type, nested arrays and a non-default alignment, for the reader.

tiny_llama.gguf + tiny_llama.expected.safetensors, a two-layer random llama model written the way llama.cpp's
convert_hf_to_gguf writes one (q/k rows permuted, Llama 3 rope divisors in rope_freqs.weight, a byte-level BPE
vocabulary), beside the original Hugging Face tensors it must load back to.

Run with the reference venv:  .venv-ref/bin/python scripts/reference/make_gguf_fixtures.py
"""

from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V

DIR = Path(__file__).resolve().parents[2] / "crates/llm2vec/tests/fixtures/gguf"
OUT = DIR / "quants.gguf"

# Byte offsets of the f16 scales inside one block, per type.
F16_SCALES = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0], T.IQ2_XXS: [0],
}
ROWS = 3


def sane_scales(rng, n, dtype):
    """Magnitudes between 2^-12 and 2, random signs."""
    mag = 2.0 ** rng.uniform(-12, 1, n)
    return (mag * rng.choice([-1.0, 1.0], n)).astype(dtype)


def random_blocks(rng, qtype, n_blocks):
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for off in F16_SCALES.get(qtype, []):
        raw[:, off:off + 2] = sane_scales(rng, n_blocks, np.float16).view(np.uint8).reshape(n_blocks, 2)
    if qtype == T.Q8_K:
        raw[:, 0:4] = sane_scales(rng, n_blocks, np.float32).view(np.uint8).reshape(n_blocks, 4)
    return raw


def expected(raw, qtype):
    if qtype == T.Q8_K:
        d = raw[:, 0:4].copy().view(np.float32)
        q = raw[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(-1)
    return gguf.quants.dequantize(raw, qtype).reshape(-1)


def add_quant(writer, rng, qtype, with_expected=True):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks_per_row = 2 if block_size == 32 else 1
    raw = random_blocks(rng, qtype, ROWS * blocks_per_row)
    name = qtype.name.lower()
    writer.add_tensor(name, raw.reshape(ROWS, blocks_per_row * type_size), raw_dtype=qtype)
    if with_expected:
        writer.add_tensor(name + ".expected", expected(raw, qtype).reshape(ROWS, blocks_per_row * block_size))


def add_floats(writer, rng):
    f16 = rng.normal(0, 3, (ROWS, 40)).astype(np.float16)
    writer.add_tensor("f16", f16)
    writer.add_tensor("f16.expected", f16.astype(np.float32))
    bits = rng.integers(0, 1 << 16, (ROWS, 24), dtype=np.uint16)
    bits &= ~np.uint16(0x7F80) | np.uint16(0x3F00)  # keep exponents finite
    writer.add_tensor("bf16", bits.view(np.uint8), raw_dtype=T.BF16)
    writer.add_tensor("bf16.expected", gguf.quants.dequantize(bits.view(np.uint8), T.BF16))
    f32 = rng.normal(0, 1, (2, 3, 4)).astype(np.float32)
    writer.add_tensor("f32", f32)
    writer.add_tensor("f32.expected", f32.copy())


def add_metadata(writer):
    kv = writer.add_key_value
    kv("test.u8", 200, V.UINT8)
    kv("test.i8", -100, V.INT8)
    kv("test.u16", 60000, V.UINT16)
    kv("test.i16", -30000, V.INT16)
    kv("test.u32", 4000000000, V.UINT32)
    kv("test.i32", -2000000000, V.INT32)
    kv("test.u64", 1 << 62, V.UINT64)
    kv("test.i64", -(1 << 62), V.INT64)
    kv("test.f32", 0.5, V.FLOAT32)
    kv("test.f64", -0.25, V.FLOAT64)
    kv("test.bool", True, V.BOOL)
    kv("test.string", "héllo ▁ world", V.STRING)
    kv("test.array.u16", [1, 2, 65535], V.ARRAY, sub_type=V.UINT16)
    kv("test.array.f32", [1.5, -2.0], V.ARRAY, sub_type=V.FLOAT32)
    kv("test.array.bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    kv("test.array.string", ["a", "bc", ""], V.ARRAY, sub_type=V.STRING)
    kv("test.array.nested", [[1, 2], [3]], V.ARRAY)


def bytes_to_unicode():
    """GPT-2's byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def permute(w, n_head):
    """convert_hf_to_gguf's LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_divisors(base, dim, factor, low=1.0, high=4.0, original=8192):
    """convert_hf_to_gguf's rope_freqs for rope_type llama3."""
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * np.pi / (1.0 / base ** (i / dim))
        if wavelen < original / high:
            out.append(1.0)
        elif wavelen > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


TINY = dict(layers=2, hidden=16, ffn=24, heads=2, kv_heads=1, head_dim=8, base=500000.0, factor=32.0)
TINY_MERGES = ["t h", "th e", "Ġ the", "Ġ a", "1 2"]


def tiny_vocab():
    tokens = ["<|bos|>", "<|eos|>"] + list(bytes_to_unicode().values())
    tokens += ["".join(m.split(" ")) for m in TINY_MERGES] + ["<|user|>"]
    types = [3, 3] + [1] * (len(tokens) - 3) + [4]
    return tokens, types


def tiny_hf_weights(rng, vocab):
    c = TINY
    h, q_rows, kv_rows = c["hidden"], c["heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"]
    r = lambda *shape: rng.normal(0, 1, shape).astype(np.float32)
    w = {"model.embed_tokens.weight": r(vocab, h), "model.norm.weight": r(h)}
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        w.update({p + "input_layernorm.weight": r(h), p + "post_attention_layernorm.weight": r(h),
                  p + "self_attn.q_proj.weight": r(q_rows, h), p + "self_attn.k_proj.weight": r(kv_rows, h),
                  p + "self_attn.v_proj.weight": r(kv_rows, h), p + "self_attn.o_proj.weight": r(h, q_rows),
                  p + "mlp.gate_proj.weight": r(c["ffn"], h), p + "mlp.up_proj.weight": r(c["ffn"], h),
                  p + "mlp.down_proj.weight": r(h, c["ffn"])})
    # f16-exact values for the tensor stored as F16
    w["model.layers.1.mlp.up_proj.weight"] = w["model.layers.1.mlp.up_proj.weight"].astype(np.float16).astype(np.float32)
    return w


GGUF_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
              "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    _, _, layer, rest = hf.split(".", 3)
    module = rest.rsplit(".", 1)[0]
    return f"blk.{layer}.{GGUF_NAMES[module]}.weight"


def write_tiny_llama(rng):
    from safetensors.numpy import save_file
    c = TINY
    tokens, types = tiny_vocab()
    hf = tiny_hf_weights(rng, len(tokens))
    writer = gguf.GGUFWriter(str(DIR / "tiny_llama.gguf"), "llama")
    writer.add_block_count(c["layers"])
    writer.add_context_length(4096)
    writer.add_embedding_length(c["hidden"])
    writer.add_feed_forward_length(c["ffn"])
    writer.add_head_count(c["heads"])
    writer.add_head_count_kv(c["kv_heads"])
    writer.add_rope_freq_base(c["base"])
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(c["head_dim"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(TINY_MERGES)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_add_bos_token(True)
    writer.add_tensor("rope_freqs.weight", llama3_rope_divisors(c["base"], c["head_dim"], c["factor"]))
    for name, w in hf.items():
        if ".q_proj." in name:
            w = permute(w, c["heads"])
        elif ".k_proj." in name:
            w = permute(w, c["kv_heads"])
        if name == "model.layers.1.mlp.up_proj.weight":
            w = w.astype(np.float16)
        writer.add_tensor(gguf_name(name), w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(hf, str(DIR / "tiny_llama.expected.safetensors"))
    print(f"wrote {DIR / 'tiny_llama.gguf'} and its expected tensors")


def main():
    rng = np.random.default_rng(20240611)
    writer = gguf.GGUFWriter(str(OUT), "test")
    writer.data_alignment = 64
    writer.add_uint32("general.alignment", 64)
    add_metadata(writer)
    add_floats(writer, rng)
    for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K,
                  T.IQ4_NL, T.IQ4_XS]:
        add_quant(writer, rng, qtype)
    add_quant(writer, rng, T.IQ2_XXS, with_expected=False)  # a type we do not dequantize
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    write_tiny_llama(rng)


if __name__ == "__main__":
    main()
