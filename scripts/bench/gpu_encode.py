#!/usr/bin/env python3
"""Encode benchmark on a GPU: llm2vec-rs (its Python package, built with CUDA) against llm2vec 0.2.3 (PyTorch, sdpa
attention) on the same GPU in one run, on random-weight models of real shapes made there with torch
(scripts/gpu/make_models.py; speed does not depend on the values). The four workloads:

  smollm2-sentences      SmolLM2-135M shape, the 2,551 distinct STS-B test sentences 8 times (20,408), batch 32
  mistral7b-sentences    Mistral-7B shape, the 2,551 sentences, batch 32 and 128
  mistral7b-documents    Mistral-7B shape, 1,000 documents of 400 words (SciFact abstracts joined), batch 32
  mistral7b-batch512     Mistral-7B shape, the 2,551 sentences, batch 512

Both sides: bidirectional attention, mean pooling, --dtype (bf16 by default), the same tokenizer (SmolLM2's: the
7B shape has its 49,152-token vocabulary), max_length 512. Each side loads a model once in its own process and
runs every workload of that model after one warm-up batch. Printed per workload: real tokens/s (counted with the
reference's tokenizer, the same for both), peak GPU memory (nvidia-smi's per-process memory, polled, both sides;
torch.cuda.max_memory_allocated for the reference), the ours/reference ratios and how closely the embeddings
agree (min cosine between matching rows). A JSON file keeps everything.

    python scripts/bench/gpu_encode.py --data DIR --tokenizer DIR --work DIR [--device cuda:0] [--output FILE]
    # a quick check of the logic on a CPU: --device cpu --tiny --limit 40 --dtype f32

--data holds sentences.txt (one per line) and documents.txt; `scripts/gpu-check.sh bundle` packs both.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gpu"))
from encode_stsb import agreement  # noqa: E402
from gpu_memory import GpuMemoryPoller  # noqa: E402
from make_models import make  # noqa: E402

# (name, model shape, texts, repeats, batch size)
WORKLOADS = [
    ("smollm2-sentences", "smollm2-135m", "sentences", 8, 32),
    ("mistral7b-sentences-b32", "mistral-7b", "sentences", 1, 32),
    ("mistral7b-sentences-b128", "mistral-7b", "sentences", 1, 128),
    ("mistral7b-documents", "mistral-7b", "documents", 1, 32),
    ("mistral7b-batch512", "mistral-7b", "sentences", 1, 512),
]
WARMUP_TEXTS = 64


def read_texts(path, repeats, limit):
    with open(path, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f if line.strip()]
    return (texts[:limit] if limit else texts) * repeats


# ------------------------------------------------------------------------------------------------ the workers

def ours_worker(args, jobs):
    """Loads our encoder through the Python package; times each job's encode call; writes .npy files."""
    from llm2vec_rs import LLM2Vec

    t0 = time.perf_counter()
    model = LLM2Vec.from_pretrained(args.model, device=args.device, dtype=args.dtype, pooling_mode="mean")
    load_s = time.perf_counter() - t0
    results = []
    for job in jobs:
        texts = json.load(open(job["texts"], encoding="utf-8"))
        model.encode(texts[:WARMUP_TEXTS], batch_size=job["batch"], show_progress_bar=False)
        t0 = time.perf_counter()
        embeddings = model.encode(texts, batch_size=job["batch"], show_progress_bar=False)
        results.append({"encode_s": time.perf_counter() - t0})
        np.save(job["output"], np.asarray(embeddings, dtype=np.float32))
    return {"load_s": load_s, "jobs": results}


def reference_worker(args, jobs):
    """Loads llm2vec 0.2.3 (sdpa); times each job's encode call (synchronised), counting real tokens."""
    import torch
    from llm2vec import LLM2Vec

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    t0 = time.perf_counter()
    placement = {"device_map": args.device} if args.device.startswith("cuda") else {}  # straight onto the GPU
    model = LLM2Vec.from_pretrained(args.model, enable_bidirectional=True, pooling_mode="mean", torch_dtype=dtype,
                                    attn_implementation="sdpa", **placement)
    model.tokenizer.model_input_names = ["input_ids", "attention_mask"]  # the model takes no token_type_ids
    model = model.to(args.device)
    load_s = time.perf_counter() - t0
    counts = {"tokens": 0}
    tokenize = model.tokenize

    def counting_tokenize(texts):
        features = tokenize(texts)
        counts["tokens"] += int(features["attention_mask"].sum())
        return features

    model.tokenize = counting_tokenize
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    results = []
    for job in jobs:
        texts = json.load(open(job["texts"], encoding="utf-8"))
        model.encode(texts[:WARMUP_TEXTS], batch_size=job["batch"], show_progress_bar=False, device=args.device)
        counts["tokens"] = 0
        sync()
        t0 = time.perf_counter()
        embeddings = model.encode(texts, batch_size=job["batch"], show_progress_bar=False, device=args.device)
        sync()
        results.append({"encode_s": time.perf_counter() - t0, "tokens": counts["tokens"]})
        np.save(job["output"], embeddings.detach().to(torch.float32).cpu().numpy())
    result = {"load_s": load_s, "jobs": results,
              "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__}}
    if cuda:
        result["torch_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def worker_main(args):
    jobs = json.load(open(args.jobs))
    result = (ours_worker if args.worker == "ours" else reference_worker)(args, jobs)
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------------ the driver

def run_worker(args, side, model, jobs_file):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, "--model", model, "--jobs", jobs_file,
           "--device", args.device, "--dtype", args.dtype]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="true")
    print(f"  [{side}] {os.path.basename(model)}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    with GpuMemoryPoller(proc.pid) as poller:
        out = proc.stdout.read()
        proc.wait()
    if proc.returncode != 0:
        sys.exit(f"error: the {side} worker failed with exit status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_gpu_mb"] = poller.peak_mb
    return result


def prepare_jobs(args, shape, workloads):
    """Writes each workload's texts (JSON) once; returns the job list of each side."""
    jobs = {"ours": [], "reference": []}
    for name, _, source, repeats, batch in workloads:
        texts_file = os.path.join(args.work, f"{name}.texts.json")
        texts = read_texts(os.path.join(args.data, f"{source}.txt"), repeats, args.limit)
        with open(texts_file, "w", encoding="utf-8") as f:
            json.dump(texts, f)
        for side in jobs:
            jobs[side].append({"name": name, "texts": texts_file, "batch": batch, "sentences": len(texts),
                               "output": os.path.join(args.work, f"{name}.{side}.npy")})
    return jobs


def bench_shape(args, shape, workloads):
    model = os.path.join(args.work, f"model-{shape}")
    make(shape, args.tokenizer, model, args.dtype, args.device, layers=args.layers, tiny=args.tiny)
    jobs = prepare_jobs(args, shape, workloads)
    sides = {}
    for side in ("reference", "ours"):
        jobs_file = os.path.join(args.work, f"{shape}.{side}.jobs.json")
        with open(jobs_file, "w") as f:
            json.dump(jobs[side], f)
        sides[side] = run_worker(args, side, model, jobs_file)
    if not args.keep_models:
        import shutil
        shutil.rmtree(model)
    rows = []
    for i, job in enumerate(jobs["ours"]):
        ref, ours = sides["reference"]["jobs"][i], sides["ours"]["jobs"][i]
        tokens = ref["tokens"]
        row = {"workload": job["name"], "sentences": job["sentences"], "batch": job["batch"], "tokens": tokens,
               "ours_tokens_per_s": tokens / ours["encode_s"], "reference_tokens_per_s": tokens / ref["encode_s"],
               "ours_encode_s": ours["encode_s"], "reference_encode_s": ref["encode_s"],
               "agreement": agreement(np.load(job["output"]), np.load(jobs["reference"][i]["output"]))}
        row["speed_ratio"] = row["ours_tokens_per_s"] / row["reference_tokens_per_s"]
        rows.append(row)
    memory = {side: {"peak_gpu_mb": sides[side]["peak_gpu_mb"], "load_s": sides[side]["load_s"]} for side in sides}
    memory["reference"]["torch_max_allocated_mb"] = sides["reference"].get("torch_max_allocated_mb")
    mo, mr = memory["ours"]["peak_gpu_mb"], memory["reference"]["peak_gpu_mb"]
    memory["memory_ratio"] = mo / mr if mo and mr else None
    return {"shape": shape, "rows": rows, "memory": memory, "versions": sides["reference"].get("versions")}


def gpu_name():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def report(results):
    print(f"\ndevice {results['device']} ({results['gpu']}), dtype {results['dtype']}")
    print(f"{'workload':26s} {'batch':>5s} {'tokens':>8s} {'ours tok/s':>11s} {'ref tok/s':>10s} {'ours/ref':>8s} "
          f"{'min cos':>8s}")
    for shape in results["shapes"]:
        for r in shape["rows"]:
            print(f"{r['workload']:26s} {r['batch']:5d} {r['tokens']:8d} {r['ours_tokens_per_s']:11.0f} "
                  f"{r['reference_tokens_per_s']:10.0f} {r['speed_ratio']:7.2f}x {r['agreement']['min_cosine']:8.5f}")
        m = shape["memory"]
        ratio = f"{m['memory_ratio']:.2f}x" if m["memory_ratio"] else "n/a (no nvidia-smi)"
        print(f"  {shape['shape']}: peak GPU memory ours {m['ours']['peak_gpu_mb']} MiB, reference "
              f"{m['reference']['peak_gpu_mb']} MiB (torch max allocated {m['reference']['torch_max_allocated_mb']}); "
              f"ours/reference {ratio}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder with sentences.txt and documents.txt")
    p.add_argument("--tokenizer", help="folder with tokenizer.json and tokenizer_config.json")
    p.add_argument("--work", help="scratch folder for the models (14.5 GB for the 7B shape), texts and embeddings")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--workloads", default=",".join(w[0] for w in WORKLOADS), help="comma-separated names")
    p.add_argument("--limit", type=int, help="first N texts of each file (a quick run)")
    p.add_argument("--tiny", action="store_true", help="tiny models of the shapes' families (a quick run)")
    p.add_argument("--layers", type=int, help="fewer layers than the shapes have (a quick run)")
    p.add_argument("--keep-models", action="store_true", help="keep the random models in --work")
    p.add_argument("--output", default="target/bench/gpu_encode.json")
    p.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--jobs", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker_main(args)
    if not (args.data and args.tokenizer and args.work):
        p.error("--data, --tokenizer and --work are required")
    wanted = args.workloads.split(",")
    unknown = set(wanted) - {w[0] for w in WORKLOADS}
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}")
    os.makedirs(args.work, exist_ok=True)
    results = {"device": args.device, "gpu": gpu_name(), "dtype": args.dtype, "shapes": []}
    for shape in dict.fromkeys(w[1] for w in WORKLOADS):
        workloads = [w for w in WORKLOADS if w[1] == shape and w[0] in wanted]
        if workloads:
            results["shapes"].append(bench_shape(args, shape, workloads))
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(args.output + ".tmp", args.output)
    report(results)


if __name__ == "__main__":
    main()
