#!/usr/bin/env python3
"""How far rounding the inputs of every linear layer moves a model's embeddings and its score on an STS task.

Runs the reference LLM2Vec (PyTorch) on an f32 model directory and rounds what each linear layer receives,
one way per pass:
  - f16, bf16: the inputs rounded to that type (the weights stay f32);
  - q8: `--dtype q8`'s rounding on AVX2 and the portable path, emulated: weights whose every block of 32
    inputs spans a 16-level grid (as Q4_1 GGUF weights do once read) kept exactly, their inputs in 8 bits
    per block of 32 (scale max|x| / 127, rounded to nearest, ties to even), their products centred on the
    grid's middle code and the centre times the block's exact input sum added; other weights in 8 bits per
    block of 32 inputs of each output, their inputs in 16 bits per block (scale max|x| / 32767);
  - q8-vnni: as q8, with every input in 8 bits (the AVX-512 VNNI path's rounding);
  - q8-per-output: as q8-vnni, with the 8-bit weights' scales per output (`--dtype q8` before its block
    scales).
It encodes sentence1 and sentence2 of each of the task's pairs (STSBenchmark: test; SICK-R: train, dev and
test, as `llm2vec eval` scores it; mean pooling, no instruction) and prints, per pass, the cosine of each
embedding with the unrounded one (mean, 5th percentile, lowest) and the Spearman correlation x 100 of the
pairs' cosines with the gold scores, against the unrounded pass's.

  .venv-ref/bin/python scripts/bench/rounding_sensitivity.py --model-dir DIR [--adapter DIR ...] \
      --data-dir ../shared/data \
      [--task STSBenchmark|SICK-R] [--attention bidirectional|causal] [--modes f16,bf16,q8,...] [--threads N]
      [--limit PAIRS]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from llm2vec import LLM2Vec
from peft import PeftModel
from scipy.stats import spearmanr

BLOCK = 32
MODES = ["f16", "bf16", "q8", "q8-vnni", "q8-per-output"]


def read_pairs(task_dir, limit):
    """The task's pairs over the splits its `task.json` lists, in order (as `llm2vec eval` scores them)."""
    splits = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))["splits"]
    pairs = []
    for split in splits:
        path = task_dir / f"{split}.jsonl"
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    record = json.loads(line)
                    pairs.append((record["sentence1"], record["sentence2"], float(record["score"])))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    sys.exit(f"{path}:{number}: not an STS record with sentence1, sentence2 and score: {e}")
                if limit and len(pairs) == limit:
                    return pairs
    return pairs


def round_blocks(x, levels=127, block=BLOCK):
    """`x` rounded to `levels` steps each side of 0 per block of its last dimension (zero-padded to whole
    blocks), as floats."""
    k = x.shape[-1]
    padded = torch.nn.functional.pad(x, (0, -k % block)).reshape(*x.shape[:-1], -1, block)
    scale = padded.abs().amax(-1, keepdim=True) / levels
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    return (torch.round(padded / safe) * scale).reshape(*x.shape[:-1], -1)[..., :k]


def grid_centres(weight):
    """Per value, the middle level `min + 8 * step` of its block's 4-bit grid, or None when a block of
    the weight does not lie on 16 levels from its minimum to its maximum."""
    o, k = weight.shape
    if k % BLOCK:
        return None
    blocks = weight.reshape(o, k // BLOCK, BLOCK).double()
    low, high = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)
    step = (high - low) / 15
    codes = (blocks - low) / torch.where(step == 0, torch.ones_like(step), step)
    off = (codes - codes.round()).abs().amax()
    if off > 1e-3:
        return None
    return (low + 8 * step).expand_as(blocks).reshape(o, k).float()


def q8_layer(linear, mode):
    """The emulated `--dtype q8` product for one linear layer, rounded as `mode` says."""
    weight = linear.weight.data
    centres = grid_centres(weight)
    if centres is not None:
        spread = weight - centres
        per_block = centres.reshape(weight.shape[0], -1, BLOCK)[..., 0]

        def product(x):
            # The block's exact input sum carries the centre, constant over the block.
            sums = x.reshape(*x.shape[:-1], -1, BLOCK).sum(-1)
            return round_blocks(x) @ spread.T + sums @ per_block.T

        return product
    eight_bit = round_blocks(weight, block=weight.shape[-1] if mode == "q8-per-output" else BLOCK)
    levels = 32767 if mode == "q8" else 127
    return lambda x: round_blocks(x, levels) @ eight_bit.T


def encode(model, sentences, batch_size):
    with torch.no_grad():
        return model.encode(sentences, batch_size=batch_size, show_progress_bar=False).float().numpy()


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="f32 model directory (HF layout)")
    p.add_argument("--adapter", action="append", default=[], help="PEFT LoRA directory to merge; repeat to merge in order")
    p.add_argument("--data-dir", required=True, help="the data folder holding TASK/task.json and its splits")
    p.add_argument("--task", default="STSBenchmark", choices=["STSBenchmark", "SICK-R"])
    p.add_argument("--attention", default="bidirectional", choices=["bidirectional", "causal"])
    p.add_argument("--modes", default="f16,bf16,q8", help=f"comma-separated: {', '.join(MODES)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=0, help="only the first PAIRS pairs (0: all)")
    args = p.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        p.error(f"--modes: unknown {sorted(unknown)}; choose from {', '.join(MODES)}")

    torch.set_num_threads(args.threads)
    pairs = read_pairs(Path(args.data_dir) / args.task, args.limit)
    sentences = [s for a, b, _ in pairs for s in (a, b)]
    gold = np.array([score for _, _, score in pairs])

    model = LLM2Vec.from_pretrained(
        args.model_dir,
        enable_bidirectional=args.attention == "bidirectional",
        pooling_mode="mean",
        torch_dtype=torch.float32,
    )
    for adapter in args.adapter:
        model.model = PeftModel.from_pretrained(model.model, adapter).merge_and_unload()
    # An f32 directory made from a GGUF also returns token_type_ids, which the model rejects.
    model.tokenizer.model_input_names = ["input_ids", "attention_mask"]
    linears = [m for m in model.model.modules() if isinstance(m, torch.nn.Linear)]
    rounding = {"mode": None}
    products = {}  # per (linear, mode)

    def hook(linear, inputs, output):
        x, mode = inputs[0], rounding["mode"]
        if mode in ("f16", "bf16"):
            dtype = torch.float16 if mode == "f16" else torch.bfloat16
            return torch.nn.functional.linear(x.to(dtype).float(), linear.weight, linear.bias)
        if mode and mode.startswith("q8"):
            if (linear, mode) not in products:
                products[linear, mode] = q8_layer(linear, mode)
            y = products[linear, mode](x)
            return y if linear.bias is None else y + linear.bias
        return output

    for linear in linears:
        linear.register_forward_hook(hook)

    def score(embeddings):
        similarity = cosines(embeddings[0::2], embeddings[1::2])
        return 100 * spearmanr(similarity, gold).statistic

    base = encode(model, sentences, args.batch_size)
    base_score = score(base)
    print(f"{args.task}: {len(pairs)} pairs, {len(sentences)} sentences, {args.attention} attention")
    print(f"{'rounding':<8} {'cos mean':>9} {'cos p5':>8} {'cos min':>8} {'score':>7} {'diff':>6}")
    print(f"{'f32':<8} {'':>9} {'':>8} {'':>8} {base_score:7.2f}")
    for mode in modes:
        rounding["mode"] = mode
        rounded = encode(model, sentences, args.batch_size)
        c = cosines(base, rounded)
        s = score(rounded)
        print(f"{mode:<8} {c.mean():9.4f} {np.percentile(c, 5):8.4f} {c.min():8.4f} {s:7.2f} {s - base_score:+6.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
