"""One training step, llm2vec-rs against the reference stack (llm2vec 0.2.3 + PyTorch + PEFT), in one run.

MNTP: batch 8 x 128 tokens (blocks of ../shared/data/train/mntp_sample.jsonl, 20% masked with "_", all-mask);
SimCSE: 32 sentences (--simcse-batch) of wiki1m_sample.txt x 2 dropout views (max 128 tokens). Both sides: SmolLM2-135M-Instruct
in f32 on the CPU, bidirectional attention, LoRA r=16 (alpha 32, dropout 0.05) on q,k,v,o,gate,up,down, AdamW.
A step is forward + backward + optimizer update. Prints the median step time, real tokens/s and peak RSS of
each side and the ours/reference ratios; writes them to --output.

Ours is timed through the product: `llm2vec train` with a config made here, step times from its metrics.jsonl
(the first step, warm-up, is left out). The reference runs the same loop as its run_mntp.py / run_simcse.py
(LlamaBiForMNTP with labels; LLM2Vec with attention dropout), each in its own process.

    python scripts/bench/train_step.py --model-dir HF_DIR --llm2vec target/release/llm2vec [--threads 1] [--steps 6]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "train")


def peak_rss_mb(cmd, env):
    """Runs cmd; returns (stdout, peak RSS in MB of that process)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return out, usage.ru_maxrss / 1024


def ours(args, stage, env):
    work = tempfile.mkdtemp(prefix=f"bench-{stage}-")
    common = {
        "model_name_or_path": args.gguf,
        "per_device_train_batch_size": 8 if stage == "mntp" else args.simcse_batch,
        "max_seq_length": 128,
        "lora_r": 16,
        "lora_dropout": 0.05,
        "learning_rate": 5e-5,
        "bidirectional": True,
        "stop_after_n_steps": args.steps,
        "save_steps": 10_000,
        "logging_steps": 1,
        "output_dir": os.path.join(work, "out"),
        "seed": 42,
    }
    if stage == "mntp":
        common.update(train_file=os.path.join(DATA, "mntp_sample.jsonl"), mlm_probability=0.2, mask_token_type="blank",
                      data_collator_type="all_mask", validation_split_percentage=0, max_train_samples=400)
    else:
        common.update(train_file=os.path.join(DATA, "unsup", "wiki1m_sample.txt"), simcse_dropout=0.1, loss_scale=20,
                      pooling_mode="mean", max_train_samples=args.simcse_batch * (args.steps + 1))
    config = os.path.join(work, "config.json")
    with open(config, "w") as f:
        json.dump(common, f)
    cmd = [args.llm2vec, "train", stage, config, "--threads", str(args.threads)]
    _, rss = peak_rss_mb(cmd, env)
    steps = [json.loads(l) for l in open(os.path.join(work, "out", "metrics.jsonl")) if '"loss"' in l]
    times = [b["elapsed_seconds"] - a["elapsed_seconds"] for a, b in zip(steps, steps[1:])]
    tokens = [s["tokens"] for s in steps[1:]]
    return {"step_seconds": statistics.median(times), "tokens_per_step": statistics.mean(tokens), "peak_rss_mb": rss}


def reference_child(args):
    """Runs inside its own process: the reference's training step, timed."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none", task_type=None,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    if args.child == "mntp":
        from llm2vec.models.bidirectional_llama import LlamaBiForMNTP
        model = LlamaBiForMNTP.from_pretrained(args.model_dir, torch_dtype=torch.float32, attn_implementation="sdpa")
        model.set_model_for_peft(get_peft_model(model.get_model_for_peft(), lora))
        texts = [json.loads(l)["text"] for l, _ in zip(open(os.path.join(DATA, "mntp_sample.jsonl")), range(400))]
        ids = [i for t in texts for i in tok(t)["input_ids"]]
        blocks = torch.tensor(ids[: len(ids) // 128 * 128]).view(-1, 128)
        mask_id = tok.convert_tokens_to_ids("_")

        def batch(k):
            x = blocks[(k * 8) % (len(blocks) - 8):][:8].clone()
            sel = torch.rand(x.shape) < 0.2
            labels = torch.where(sel, x, torch.full_like(x, -100))
            x[sel] = mask_id
            return {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": labels}, x.numel()

        def loss_of(b):
            return model(**b).loss
    else:
        from llm2vec import LLM2Vec
        from llm2vec.loss.HardNegativeNLLLoss import HardNegativeNLLLoss
        l2v = LLM2Vec.from_pretrained(args.model_dir, pooling_mode="mean", max_length=128, attention_dropout=0.1,
                                      torch_dtype=torch.float32, attn_implementation="sdpa")
        l2v.model = get_peft_model(l2v.model, lora)
        model = l2v
        sentences = [l.strip() for l in open(os.path.join(DATA, "unsup", "wiki1m_sample.txt")) if l.strip()]
        criterion = HardNegativeNLLLoss(scale=20)

        def batch(k):
            s = sentences[k * args.simcse_batch:(k + 1) * args.simcse_batch]
            f = l2v.tokenize(s)
            f.pop("token_type_ids", None)  # this tokenizer.json's post-processor adds them; the model takes none
            return f, int(f["attention_mask"].sum())

        def loss_of(f):
            q = l2v(dict(f))
            d = l2v(dict(f))
            return criterion(q, d)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5)
    times, tokens = [], []
    for k in range(args.steps):
        b, n = batch(k)
        start = time.perf_counter()
        loss = loss_of(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
        tokens.append(n * (2 if args.child == "simcse" else 1))
    print(json.dumps({"step_seconds": statistics.median(times[1:]), "tokens_per_step": statistics.mean(tokens[1:])}))


def reference(args, stage, env):
    cmd = [sys.executable, __file__, "--child", stage, "--model-dir", args.model_dir, "--threads", str(args.threads),
           "--steps", str(args.steps), "--simcse-batch", str(args.simcse_batch)]
    out, rss = peak_rss_mb(cmd, env)
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = rss
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="f32 Hugging Face directory (reference side)")
    p.add_argument("--gguf", default="smollm2-135m-instruct", help="our model: the same weights (short name or path)")
    p.add_argument("--llm2vec", default="target/release/llm2vec")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--stages", default="mntp,simcse")
    p.add_argument("--simcse-batch", type=int, default=32, help="sentences per SimCSE batch (two views each)")
    p.add_argument("--output", default="target/bench/train_step.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return reference_child(args)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    results = {"threads": args.threads, "steps": args.steps}
    for stage in args.stages.split(","):
        r = reference(args, stage, env)
        o = ours(args, stage, env)
        results[stage] = {"ours": o, "reference": r,
                          "speed_ratio": (o["tokens_per_step"] / o["step_seconds"]) / (r["tokens_per_step"] / r["step_seconds"]),
                          "memory_ratio": o["peak_rss_mb"] / r["peak_rss_mb"]}
        for side in ("ours", "reference"):
            x = results[stage][side]
            print(f"{stage:7s} {side:9s} {x['step_seconds']:7.3f} s/step {x['tokens_per_step'] / x['step_seconds']:8.1f} tok/s "
                  f"peak {x['peak_rss_mb']:7.0f} MB")
        print(f"{stage:7s} ours/reference: speed {results[stage]['speed_ratio']:.2f}x, peak memory {results[stage]['memory_ratio']:.2f}x")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
