"""Writes a Llama-architecture GGUF of a given shape with random weights (speed and memory do not depend on
the values): Q4_0 linear layers, Q8_0 token embeddings (tied, no separate output matrix), f32 norms, and the
tokenizer and settings of an existing GGUF (SmolLM2's by default), so that it loads and encodes like a real model.

    .venv-ref/bin/python scripts/bench/make_sized_gguf.py --out /tmp/mistral7b-shape.q4_0.gguf \
        --hidden 4096 --layers 32 --heads 32 --kv-heads 8 --intermediate 14336   # Mistral-7B's shape, 4.1 GB

Blocks are random bytes with a small fixed f16 step, so every Q4_0 block uses the whole 16-level grid.
"""

import argparse
import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

SHAPE_KEYS = ("block_count", "embedding_length", "feed_forward_length", "attention.head_count",
              "attention.head_count_kv", "rope.dimension_count")
BLOCK = 32


def quantized(rng, rows, cols, kind):
    """`rows x cols` weights as raw Q4_0 or Q8_0 blocks: a f16 step of 0.01, then random codes."""
    code_bytes = {GGMLQuantizationType.Q4_0: BLOCK // 2, GGMLQuantizationType.Q8_0: BLOCK}[kind]
    blocks = rows * cols // BLOCK
    data = np.empty((blocks, 2 + code_bytes), dtype=np.uint8)
    data[:, :2] = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)
    data[:, 2:] = rng.integers(0, 256, size=(blocks, code_bytes), dtype=np.uint8)
    return data.reshape(rows, cols // BLOCK * (2 + code_bytes))


def copy_settings(reader, writer, shape):
    """Every key of `reader` but the shape's, which `shape` gives."""
    arch = reader.fields["general.architecture"].contents()
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        name = key.removeprefix(f"{arch}.")
        if name in shape:
            continue
        types = field.types
        sub = types[1] if types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), types[0], sub_type=sub)
    for name, value in shape.items():
        writer.add_uint32(f"llama.{name}", value)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--like", default="~/.cache/llm2vec/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--intermediate", type=int, default=14336)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    reader = GGUFReader(os.path.expanduser(args.like))
    if reader.fields["general.architecture"].contents() != "llama":
        raise SystemExit(f"{args.like}: a llama-architecture GGUF is needed for its tokenizer")
    vocab = len(reader.fields["tokenizer.ggml.tokens"].contents())
    h, hd = args.hidden, args.hidden // args.heads
    shape = dict(zip(SHAPE_KEYS, (args.layers, h, args.intermediate, args.heads, args.kv_heads, hd)))

    writer = GGUFWriter(args.out, "llama")
    copy_settings(reader, writer, shape)
    rng = np.random.default_rng(args.seed)
    q4, q8 = GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q8_0
    writer.add_tensor("token_embd.weight", quantized(rng, vocab, h, q8), raw_dtype=q8)
    for i in range(args.layers):
        for name, rows, cols in [("attn_q", h, h), ("attn_k", args.kv_heads * hd, h), ("attn_v", args.kv_heads * hd, h),
                                 ("attn_output", h, h), ("ffn_gate", args.intermediate, h),
                                 ("ffn_up", args.intermediate, h), ("ffn_down", h, args.intermediate)]:
            writer.add_tensor(f"blk.{i}.{name}.weight", quantized(rng, rows, cols, q4), raw_dtype=q4)
        for name in ("attn_norm", "ffn_norm"):
            writer.add_tensor(f"blk.{i}.{name}.weight", np.ones(h, dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(h, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {args.out}: {args.layers} layers, hidden {h}, vocab {vocab}")


if __name__ == "__main__":
    main()
