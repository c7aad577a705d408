"""One training step, llm2vec-rs against the reference stack (llm2vec 0.2.3 + PyTorch + PEFT), in one run.

MNTP: batch --mntp-batch x --seq-len tokens (blocks of mntp_sample.jsonl, 20% masked with "_", all-mask);
SimCSE: --simcse-batch sentences of wiki1m_sample.txt x 2 dropout views (at most --seq-len tokens). Both sides: the
same model (SmolLM2-135M-Instruct by default) on --device in --dtype, bidirectional attention, LoRA r=16 (alpha 32,
dropout 0.05) on q,k,v,o,gate,up,down, AdamW. A step is forward + backward + optimizer update. Prints the median
step time, real tokens/s and peak memory of each side (RSS on the CPU; on a GPU the driver's per-process memory,
polled with nvidia-smi, and the reference's torch.cuda.max_memory_allocated) and the ours/reference ratios;
writes them to --output.

Ours is timed through the product: `llm2vec train` with a config made here, step times from its metrics.jsonl
(the first step, warm-up, is left out). The reference runs the same loop as its run_mntp.py / run_simcse.py
(LlamaBiForMNTP with labels; LLM2Vec with attention dropout), each in its own process.

    python scripts/bench/train_step.py --model-dir HF_DIR --llm2vec target/release/llm2vec [--threads 1] [--steps 6]
    (on a GPU: --device cuda:0 --dtype bf16 --mntp-batch 32 --seq-len 512 --simcse-batch 128; see gpu_train_step.py)
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from gpu_memory import GpuMemoryPoller

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "train")


def mntp_texts(batch, seq_len, steps):
    """MNTP texts both sides read: enough ~40-token lines for every step's blocks, at least 400."""
    return max(400, batch * seq_len * (steps + 2) // 30)


def train_config(stage, model, data_dir, batch, seq_len, steps, output_dir, learning_rate=5e-5):
    """A reference-format training config for `llm2vec train` (data from data_dir, the layout of shared/data/train)."""
    config = {
        "model_name_or_path": model,
        "per_device_train_batch_size": batch,
        "max_seq_length": seq_len,
        "lora_r": 16,
        "lora_dropout": 0.05,
        "learning_rate": learning_rate,
        "bidirectional": True,
        "stop_after_n_steps": steps,
        "save_steps": 10_000,
        "logging_steps": 1,
        "output_dir": output_dir,
        "seed": 42,
    }
    if stage == "mntp":
        config.update(train_file=os.path.join(data_dir, "mntp_sample.jsonl"), mlm_probability=0.2,
                      mask_token_type="blank", data_collator_type="all_mask", validation_split_percentage=0,
                      max_train_samples=mntp_texts(batch, seq_len, steps))
    else:
        config.update(train_file=os.path.join(data_dir, "unsup", "wiki1m_sample.txt"), simcse_dropout=0.1,
                      loss_scale=20, pooling_mode="mean", max_train_samples=batch * (steps + 1))
    return config


def measured_run(cmd, env, gpu):
    """Runs cmd; returns (stdout, peak RSS in MB, peak GPU memory in MiB or None) of that process."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    with GpuMemoryPoller(proc.pid) if gpu else contextlib.nullcontext() as poller:
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return out, usage.ru_maxrss / 1024, poller.peak_mb if gpu else None


def batch_size(args, stage):
    return args.mntp_batch if stage == "mntp" else args.simcse_batch


def ours(args, stage, env):
    work = tempfile.mkdtemp(prefix=f"bench-{stage}-")
    config = os.path.join(work, "config.json")
    with open(config, "w") as f:
        json.dump(train_config(stage, args.gguf, args.data, batch_size(args, stage), args.seq_len, args.steps,
                               os.path.join(work, "out")), f)
    cmd = [args.llm2vec, "train", stage, config, "--threads", str(args.threads)]
    if args.device != "cpu" or args.dtype != "f32":  # the CLI's defaults; older builds lack the flags
        cmd += ["--device", args.device, "--dtype", args.dtype]
    _, rss, gpu = measured_run(cmd, env, args.device != "cpu")
    steps = [json.loads(l) for l in open(os.path.join(work, "out", "metrics.jsonl")) if '"loss"' in l]
    times = [b["elapsed_seconds"] - a["elapsed_seconds"] for a, b in zip(steps, steps[1:])]
    tokens = [s["tokens"] for s in steps[1:]]
    return {"step_seconds": statistics.median(times), "tokens_per_step": statistics.mean(tokens), "peak_rss_mb": rss,
            "peak_gpu_mb": gpu}


def reference_child(args):
    """Runs inside its own process: the reference's training step, timed."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    device = torch.device(args.device)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none", task_type=None,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    if args.child == "mntp":
        from llm2vec.models import LlamaBiForMNTP, MistralBiForMNTP
        kind = json.load(open(os.path.join(args.model_dir, "config.json")))["model_type"]
        mntp_class = {"llama": LlamaBiForMNTP, "mistral": MistralBiForMNTP}[kind]
        model = mntp_class.from_pretrained(args.model_dir, torch_dtype=dtype, attn_implementation="sdpa").to(device)
        model.set_model_for_peft(get_peft_model(model.get_model_for_peft(), lora))
        lines = open(os.path.join(args.data, "mntp_sample.jsonl"))
        count = mntp_texts(args.mntp_batch, args.seq_len, args.steps)
        texts = [json.loads(l)["text"] for l, _ in zip(lines, range(count))]
        ids = [i for t in texts for i in tok(t)["input_ids"]]
        blocks = torch.tensor(ids[: len(ids) // args.seq_len * args.seq_len]).view(-1, args.seq_len)
        mask_id = tok.convert_tokens_to_ids("_")
        n = args.mntp_batch

        def batch(k):
            x = blocks[(k * n) % (len(blocks) - n):][:n].clone()
            sel = torch.rand(x.shape) < 0.2
            labels = torch.where(sel, x, torch.full_like(x, -100))
            x[sel] = mask_id
            b = {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": labels}
            return {k: v.to(device) for k, v in b.items()}, x.numel()

        def loss_of(b):
            return model(**b).loss
    else:
        from llm2vec import LLM2Vec
        from llm2vec.loss.HardNegativeNLLLoss import HardNegativeNLLLoss
        l2v = LLM2Vec.from_pretrained(args.model_dir, pooling_mode="mean", max_length=args.seq_len,
                                      attention_dropout=0.1, torch_dtype=dtype, attn_implementation="sdpa")
        l2v.model = get_peft_model(l2v.model, lora)
        model = l2v.to(device)
        sentences = [l.strip() for l in open(os.path.join(args.data, "unsup", "wiki1m_sample.txt")) if l.strip()]
        criterion = HardNegativeNLLLoss(scale=20)
        n = args.simcse_batch

        def batch(k):
            f = l2v.tokenize(sentences[k * n:(k + 1) * n])
            f.pop("token_type_ids", None)  # this tokenizer.json's post-processor adds them; the model takes none
            return {k: v.to(device) for k, v in f.items()}, int(f["attention_mask"].sum())

        def loss_of(f):
            q = l2v(dict(f))
            d = l2v(dict(f))
            return criterion(q, d)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, tokens = [], []
    for k in range(args.steps):
        b, n_tokens = batch(k)
        sync()
        start = time.perf_counter()
        loss = loss_of(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        sync()
        times.append(time.perf_counter() - start)
        tokens.append(n_tokens * (2 if args.child == "simcse" else 1))
    result = {"step_seconds": statistics.median(times[1:]), "tokens_per_step": statistics.mean(tokens[1:])}
    if device.type == "cuda":
        result["torch_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(result))


CHILD_OPTIONS = ("model_dir", "data", "threads", "steps", "simcse_batch", "mntp_batch", "seq_len", "device", "dtype")


def reference(args, stage, env):
    cmd = [sys.executable, __file__, "--child", stage]
    for name in CHILD_OPTIONS:
        cmd += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    out, rss, gpu = measured_run(cmd, env, args.device != "cpu")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(peak_rss_mb=rss, peak_gpu_mb=gpu)
    return result


def memory(side, args):
    """The peak memory that the ratio compares: the GPU's on a GPU, else RSS."""
    return side["peak_gpu_mb"] if args.device != "cpu" else side["peak_rss_mb"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="Hugging Face directory (reference side)")
    p.add_argument("--gguf", default="smollm2-135m-instruct", help="our model: the same weights (short name or path)")
    p.add_argument("--llm2vec", default="target/release/llm2vec")
    p.add_argument("--data", default=DATA, help="training data folder (mntp_sample.jsonl, unsup/wiki1m_sample.txt)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--stages", default="mntp,simcse")
    p.add_argument("--mntp-batch", type=int, default=8, help="MNTP blocks per batch")
    p.add_argument("--seq-len", type=int, default=128, help="MNTP block length; SimCSE's longest sentence")
    p.add_argument("--simcse-batch", type=int, default=32, help="sentences per SimCSE batch (two views each)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N (both sides)")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--output", default="target/bench/train_step.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def bench(args):
    """Both sides for every stage of args.stages; prints a line per side and the ratios; returns the results."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    results = {"threads": args.threads, "steps": args.steps, "device": args.device, "dtype": args.dtype}
    unit = "GPU" if args.device != "cpu" else "RSS"
    for stage in args.stages.split(","):
        r = reference(args, stage, env)
        o = ours(args, stage, env)
        mem_o, mem_r = memory(o, args), memory(r, args)
        results[stage] = {"ours": o, "reference": r,
                          "speed_ratio": (o["tokens_per_step"] / o["step_seconds"]) / (r["tokens_per_step"] / r["step_seconds"]),
                          "memory_ratio": mem_o / mem_r if mem_o and mem_r else None}
        for side, x in (("ours", o), ("reference", r)):
            print(f"{stage:7s} {side:9s} {x['step_seconds']:7.3f} s/step {x['tokens_per_step'] / x['step_seconds']:8.1f} tok/s "
                  f"peak {unit} {memory(x, args) or float('nan'):7.0f} MB")
        ratio = results[stage]["memory_ratio"]
        print(f"{stage:7s} ours/reference: speed {results[stage]['speed_ratio']:.2f}x, "
              f"peak memory {ratio if ratio is not None else float('nan'):.2f}x")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(args.output + ".tmp", args.output)
    return results


def main():
    args = parse_args()
    if args.child:
        return reference_child(args)
    bench(args)


if __name__ == "__main__":
    main()
