#!/usr/bin/env python3
"""Random-weight models of real shapes, made where they are used (a GPU machine cannot download them and they are
too big to copy there): a Hugging Face directory with config.json, model.safetensors and a given tokenizer. Speed does
not depend on the values, and the checks compare our CPU and CUDA paths on the same weights.

Shapes: smollm2-135m (Llama, 30 layers, hidden 576) and mistral-7b (Mistral-7B-v0.1's layers, 32 x hidden 4096);
--tiny keeps a shape's family but makes it 2 layers of hidden 64, for checking the scripts on a CPU. The vocabulary
is the tokenizer's (SmolLM2's 49,152 tokens for every shape; Mistral's own is 32,000), embeddings tied. Weights are
N(0, 0.02), norms near 1.
--shared S adds one random direction of scale S to every token embedding, as trained models have one (anisotropy):
without it every sentence's embedding is already far from every other's and a contrastive loss starts near zero.

    python scripts/gpu/make_models.py --shape mistral-7b --tokenizer DIR --out DIR [--dtype bfloat16] [--device cuda]
"""

import argparse
import json
import os
import shutil
import sys

SHAPES = {
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0,
                         max_position_embeddings=8192),
    "mistral-7b": dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, rope_theta=10000.0,
                       max_position_embeddings=32768, sliding_window=4096),
}
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}
DTYPES = {"f32": "float32", "bf16": "bfloat16", "float32": "float32", "bfloat16": "bfloat16"}


def config(shape, vocab, tokenizer_config, dtype_name, tiny):
    c = dict(SHAPES[shape], **(TINY if tiny else {}))
    c.update(architectures=[ARCHITECTURES[c["model_type"]]], vocab_size=vocab, hidden_act="silu", rms_norm_eps=1e-5,
             tie_word_embeddings=True, attention_bias=False, mlp_bias=False, rope_scaling=None,
             torch_dtype=dtype_name, _name_or_path=f"random-{shape}",
             head_dim=c["hidden_size"] // c["num_attention_heads"])
    for key in ("bos", "eos", "pad"):
        token = tokenizer_config.get(f"{key}_token")
        c[f"{key}_token_id"] = tokenizer_config.get("_ids", {}).get(token) if token else None
    return c


def weights(c, dtype, device, seed, shared=0.0):
    """Every tensor of a Llama/Mistral decoder with tied embeddings, named as transformers saves them."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    h, inter, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd

    def normal(*shape):
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * 0.02).to(dtype).cpu()

    def norm(n):
        return (1 + torch.randn(n, generator=g, device=device, dtype=torch.float32) * 0.02).to(dtype).cpu()

    embeddings = normal(c["vocab_size"], h) + normal(1, h) * (shared / 0.02)
    out = {"model.embed_tokens.weight": embeddings, "model.norm.weight": norm(h)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out.update({
            p + "input_layernorm.weight": norm(h), p + "post_attention_layernorm.weight": norm(h),
            p + "self_attn.q_proj.weight": normal(q, h), p + "self_attn.k_proj.weight": normal(kv, h),
            p + "self_attn.v_proj.weight": normal(kv, h), p + "self_attn.o_proj.weight": normal(h, q),
            p + "mlp.gate_proj.weight": normal(inter, h), p + "mlp.up_proj.weight": normal(inter, h),
            p + "mlp.down_proj.weight": normal(h, inter),
        })
    return out


def make(shape, tokenizer_dir, out, dtype_name="bfloat16", device="cpu", seed=0, layers=None, shared=0.0, tiny=False):
    """Writes the model directory `out` (atomically: built beside it, then renamed) and returns its config.
    dtype_name: f32/float32 or bf16/bfloat16; device: where the numbers are drawn (cpu, cuda, cuda:N)."""
    import torch

    dtype_name = DTYPES[dtype_name]
    from safetensors.torch import save_file

    with open(os.path.join(tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        tokenizer = json.load(f)
    with open(os.path.join(tokenizer_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        tokenizer_config = json.load(f)
    tokenizer_config["_ids"] = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])}
    vocab = max(len(tokenizer["model"]["vocab"]), 1 + max(tokenizer_config["_ids"].values(), default=0))
    c = config(shape, vocab, tokenizer_config, dtype_name, tiny)
    if layers:
        c["num_hidden_layers"] = layers
    partial = out.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    save_file(weights(c, getattr(torch, dtype_name), device, seed, shared), os.path.join(partial, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(partial, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, name), partial)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(partial, out)
    return c


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), required=True)
    p.add_argument("--tokenizer", required=True, help="folder with tokenizer.json and tokenizer_config.json")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    p.add_argument("--device", default="cpu", help="where the random numbers are drawn (cuda is much faster)")
    p.add_argument("--layers", type=int, help="fewer layers than the shape has (a quick check)")
    p.add_argument("--tiny", action="store_true", help="the shape's family in 2 layers of hidden 64 (a quick check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shared", type=float, default=0.0, help="scale of a direction shared by all token embeddings")
    args = p.parse_args()
    c = make(args.shape, args.tokenizer, args.out, args.dtype, args.device, args.seed, args.layers, args.shared,
             args.tiny)
    print(f"wrote {args.out}: {args.shape}, {c['num_hidden_layers']} layers, {args.dtype}", file=sys.stderr)


if __name__ == "__main__":
    main()
