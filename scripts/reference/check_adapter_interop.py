"""Interop check: an adapter trained by llm2vec-rs loads into the Python reference (llm2vec 0.2.3 + PEFT) and
gives the same embeddings as our encoder.

Run in the reference venv (scripts/reference/setup-venv.sh), with the base model as an f32 Hugging Face
directory holding the same weights as ours (scripts/reference/dequantize_gguf_to_hf.py):

    python scripts/reference/check_adapter_interop.py --base HF_DIR --adapter OUTPUT_DIR \
        --ours ours.npy --texts texts.txt [--tolerance 1e-4 (relative)]

`ours.npy` comes from `llm2vec encode --model <same weights> --adapter OUTPUT_DIR --input texts.txt --output ours.npy`
(bidirectional attention, mean pooling: the reference's defaults for a Llama model with enable_bidirectional).
Prints the largest absolute difference, the smallest cosine and how much the adapter itself moves the reference's
embeddings (it must move them far more than the difference); exits 1 when the check fails.
"""

import argparse
import json
import os
import sys

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--ours", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest difference relative to the largest value")
    p.add_argument("--output", help="write the result as JSON here")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from llm2vec import LLM2Vec

    texts = [l.rstrip("\n") for l in open(args.texts, encoding="utf-8") if l.strip()]
    model = LLM2Vec.from_pretrained(args.base, peft_model_name_or_path=args.adapter, enable_bidirectional=True,
                                    pooling_mode="mean", torch_dtype=torch.float32, attn_implementation="eager")
    # The GGUF's tokenizer.json has a post-processor that adds token_type_ids, which Llama models do not take.
    model.tokenizer.model_input_names = ["input_ids", "attention_mask"]
    loaded = [n for n, _ in model.model.named_modules() if n.endswith("lora_A.default")]
    with torch.no_grad():
        ref = model.encode(texts, batch_size=8, show_progress_bar=False).float().numpy()
        with model.model.disable_adapter():
            base = model.encode(texts, batch_size=8, show_progress_bar=False).float().numpy()
    ours = np.load(args.ours)
    diff = float(np.abs(ref - ours).max())
    cos = (ref * ours).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(ours, axis=1))
    result = {"texts": len(texts), "lora_modules_loaded": len(loaded), "max_abs_diff": diff,
              "adapter_effect_max_abs": float(np.abs(ref - base).max()),
              "max_abs_value": float(np.abs(ref).max()), "min_cosine": float(cos.min())}
    print(json.dumps(result))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
    if not loaded:
        sys.exit("the reference loaded no LoRA modules from the adapter")
    if result["adapter_effect_max_abs"] < 100 * diff:
        sys.exit("the adapter barely changes the embeddings: train it longer for a meaningful check")
    if diff > args.tolerance * result["max_abs_value"]:
        sys.exit(f"embeddings differ by {diff}, more than {args.tolerance} of the largest value")


if __name__ == "__main__":
    main()
