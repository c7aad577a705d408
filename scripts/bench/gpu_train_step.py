#!/usr/bin/env python3
"""The training step benchmark on a GPU: `train_step.py`'s two sides (ours through `llm2vec train --device
--dtype`, the reference's PyTorch + PEFT loop) at the paper's sizes, on random-weight models of real shapes made
there with torch (scripts/gpu/make_models.py):

  smollm2   MNTP 32 x 512 tokens and SimCSE at batch 128 (sentences of at most 128 tokens), SmolLM2-135M shape
  mistral7b MNTP 8 x 512 tokens, Mistral-7B shape (bf16 weights, 14.5 GB)

Both sides in --dtype (bf16 by default). Prints each case's step time, tokens/s, peak GPU memory and the
ours/reference ratios (goal: <= 0.5x the reference's step time and peak memory); writes them to --output.

    python scripts/bench/gpu_train_step.py --llm2vec BIN --data DIR --tokenizer DIR --work DIR [--device cuda:0]
    # a quick check of the logic on a CPU: --device cpu --dtype f32 --tiny --steps 3 --scale 0.0625
"""

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gpu"))
import train_step  # noqa: E402
from make_models import make  # noqa: E402

# (case, model shape, stages, MNTP blocks, SimCSE batch, block length / longest sentence)
CASES = [
    ("smollm2-mntp", "smollm2-135m", "mntp", 32, 128, 512),
    ("smollm2-simcse", "smollm2-135m", "simcse", 32, 128, 128),
    ("mistral7b-mntp", "mistral-7b", "mntp", 8, 128, 512),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llm2vec", required=True, help="our binary, built with --features cuda")
    p.add_argument("--data", required=True, help="training data folder (mntp_sample.jsonl, unsup/wiki1m_sample.txt)")
    p.add_argument("--tokenizer", required=True, help="folder with tokenizer.json and tokenizer_config.json")
    p.add_argument("--work", required=True, help="scratch folder for the models (14.5 GB for the 7B shape)")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--steps", type=int, default=5, help="steps per side (the first is warm-up)")
    p.add_argument("--cases", default=",".join(c[0] for c in CASES))
    p.add_argument("--tiny", action="store_true", help="tiny models of the shapes' families (a quick run)")
    p.add_argument("--scale", type=float, default=1.0, help="batch sizes times this (a quick run)")
    p.add_argument("--output", default="target/bench/gpu_train_step.json")
    args = p.parse_args()
    wanted = args.cases.split(",")
    results = {}
    for shape in dict.fromkeys(c[1] for c in CASES):
        cases = [c for c in CASES if c[1] == shape and c[0] in wanted]
        if not cases:
            continue
        model = os.path.join(args.work, f"model-{shape}")
        make(shape, args.tokenizer, model, args.dtype, args.device, tiny=args.tiny)
        for case, _, stage, mntp_batch, simcse_batch, seq_len in cases:
            print(f"== {case}", flush=True)
            case_args = train_step.parse_args([
                "--model-dir", model, "--gguf", model, "--llm2vec", args.llm2vec, "--data", args.data,
                "--steps", str(args.steps), "--stages", stage, "--device", args.device, "--dtype", args.dtype,
                "--mntp-batch", str(max(1, round(mntp_batch * args.scale))),
                "--simcse-batch", str(max(2, round(simcse_batch * args.scale))), "--seq-len", str(seq_len),
                "--threads", str(os.cpu_count()), "--output", os.path.join(args.work, f"{case}.json")])
            results[case] = train_step.bench(case_args)
        shutil.rmtree(model)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(args.output + ".tmp", args.output)


if __name__ == "__main__":
    main()
