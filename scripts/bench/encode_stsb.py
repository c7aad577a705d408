#!/usr/bin/env python3
"""Encode benchmark: llm2vec-rs against the Python reference (llm2vec 0.2.3) on the STS-B test sentences.

Both sides encode the same sentences (sentence1 and sentence2 of every line of the STS-B test split, in
order: 2,758 sentences) with the same f32 weights (one Hugging Face directory), bidirectional attention,
mean pooling and batch size 32, on the CPU, once per thread count, each run in its own process. Printed per
thread count: sentences/s, real tokens/s (padding excluded), encode seconds, peak RSS, the ours/reference
ratios and how closely the embeddings agree. A JSON file keeps everything.

Exits 1 when the embeddings do not match (min cosine between matching rows below --min-cosine), 2 when a
side fails. Speed and memory goals are reported, never asserted.

Run it through scripts/bench/run-encode-bench.sh (builds, fetches what is missing). Directly:

    REF_PYTHON/python scripts/bench/encode_stsb.py --model-dir HF_DIR \
        --ours-bin target/release/examples/bench_encode [--threads 1,2] [--limit 300] [--attn eager]

This script runs under the reference venv's python (it needs numpy; the reference worker needs torch and
llm2vec). `--worker reference` is the reference side's own process, started by the driver.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "STSBenchmark" / "test.jsonl"
GOAL_SPEEDUP = 1.5


# ----------------------------------------------------------------------------------------------- helpers

def status_kb(field):
    """A kB field of /proc/self/status (VmHWM, VmRSS); 0 where unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_hwm():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def read_sentences(path, limit=None):
    sentences = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                sentences += [record["sentence1"], record["sentence2"]]
    return sentences[:limit] if limit else sentences


def safetensors_params(model_dir):
    """(parameter count, bytes as stored) over the model's safetensors files, from their headers."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    count = nbytes = 0
    for file in files:
        with open(file, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            numel = int(np.prod(info["shape"])) if info["shape"] else 1
            count += numel
            nbytes += info["data_offsets"][1] - info["data_offsets"][0]
    return count, nbytes


def activation_estimate(config, batch, seq):
    """Rough f32 bytes alive inside one decoder layer for the largest batch (hidden state and residual,
    fused qkv, q/k/v with k/v repeated to all heads, scores and probabilities, attention output,
    gate/up and the activation). A yardstick for 'model size plus activations', not a measurement."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    hd = config.get("head_dim") or h // heads
    rows = batch * seq
    floats = rows * (
        3 * h                      # residual, normed input, attention output
        + (heads + 2 * kv) * hd    # fused qkv
        + 3 * heads * hd           # q, k, v (repeated) in [b, heads, l, d] layout
        + 3 * inter                # gate/up and silu(gate) * up
    ) + 2 * batch * heads * seq * seq  # scores and softmax probabilities
    return floats * 4


def mb(kb_or_bytes, unit="kb"):
    return kb_or_bytes / 1024 if unit == "kb" else kb_or_bytes / 2**20


def cpu_jiffies():
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


def busy_cores(seconds=2.0):
    """CPU cores kept busy over the next `seconds` (by anything: measure before starting a side)."""
    a = cpu_jiffies()
    time.sleep(seconds)
    b = cpu_jiffies()
    if not a or not b:
        return None
    return (b[0] - a[0]) / os.sysconf("SC_CLK_TCK") / seconds


def wait_idle(max_wait, threshold=0.25):
    """Waits up to max_wait seconds for the other work on the machine to drop below `threshold` busy cores."""
    deadline = time.monotonic() + max_wait
    busy = busy_cores()
    while busy is not None and busy > threshold and time.monotonic() < deadline:
        print(f"  waiting for a quieter machine ({busy:.2f} cores busy)", file=sys.stderr, flush=True)
        time.sleep(10)
        busy = busy_cores()
    return busy


def fmt_load(load):
    return " ".join(f"{x:.2f}" for x in load) if load else "?"


def loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


# ----------------------------------------------------------------------------------- the reference side

def reference_worker(args):
    """Loads the reference LLM2Vec, encodes the sentences, writes the .npy and prints one JSON line."""
    sentences = json.loads(Path(args.sentences).read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    import torch
    from llm2vec import LLM2Vec

    torch.set_num_threads(args.threads)
    import_s = time.perf_counter() - t0

    kwargs = dict(enable_bidirectional=True, pooling_mode="mean", torch_dtype=torch.float32)
    if args.attn != "default":
        kwargs["attn_implementation"] = args.attn
    t0 = time.perf_counter()
    model = LLM2Vec.from_pretrained(args.model_dir, **kwargs)
    # The dequantized directory's tokenizer would also return token_type_ids, which the model rejects.
    model.tokenizer.model_input_names = ["input_ids", "attention_mask"]
    load_s = time.perf_counter() - t0
    peak_load = status_kb("VmHWM")
    rss_after_load = status_kb("VmRSS")

    # Count what the model actually runs on: the tokenizer's attention masks (real tokens) and the padded
    # batch shapes, batch by batch as encode() forms them. Summing a mask costs microseconds.
    counts = {"tokens": 0, "padded_tokens": 0, "max_tokens": 0, "batches": 0}
    tokenize = model.tokenize

    def counting_tokenize(texts):
        features = tokenize(texts)
        mask = features["attention_mask"]
        counts["tokens"] += int(mask.sum())
        counts["padded_tokens"] += int(mask.numel())
        counts["max_tokens"] = max(counts["max_tokens"], int(mask.shape[1]))
        counts["batches"] += 1
        return features

    model.tokenize = counting_tokenize

    hwm_reset = reset_hwm()
    cpu0 = os.times()
    t0 = time.perf_counter()
    embeddings = model.encode(sentences, batch_size=args.batch_size, show_progress_bar=False)
    encode_s = time.perf_counter() - t0
    cpu1 = os.times()
    peak_encode = status_kb("VmHWM")

    array = embeddings.detach().to(torch.float32).numpy()
    np.save(args.output, array)
    print(json.dumps({
        "sentences": len(sentences),
        "tokens": counts["tokens"],
        "padded_tokens": counts["padded_tokens"],
        "max_tokens": counts["max_tokens"],
        "batches": counts["batches"],
        "dim": int(array.shape[1]),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "attn_implementation": model.model.config._attn_implementation,
        "import_s": import_s,
        "load_s": load_s,
        "encode_s": encode_s,
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "hwm_reset": hwm_reset,
        "peak_rss_load_kb": peak_load,
        "rss_after_load_kb": rss_after_load,
        "peak_rss_encode_kb": peak_encode,
        "peak_rss_kb": max(peak_load, peak_encode),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                     "llm2vec": __import__("importlib.metadata").metadata.version("llm2vec")},
    }))


# ------------------------------------------------------------------------------------------- the driver

def run_side(name, cmd, env, wait=0):
    """Runs one side in its own process; returns its JSON line (the last line of stdout)."""
    busy_before = wait_idle(wait) if wait else busy_cores()
    print(f"  [{name}] {' '.join(str(c) for c in cmd)}", file=sys.stderr, flush=True)
    jiffies0, child0 = cpu_jiffies(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    jiffies1, child1 = cpu_jiffies(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"error: {name} failed with exit status {proc.returncode}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
        raise SystemExit(f"error: {name} printed no result line")
    result = json.loads(lines[-1])
    result["process_wall_s"] = wall
    result["busy_cores_before"] = busy_before
    if jiffies0 and jiffies1:
        child_cpu = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
        all_cpu = (jiffies1[0] - jiffies0[0]) / os.sysconf("SC_CLK_TCK")
        # Cores the rest of the machine kept busy while this side ran (load and encode): the contention.
        result["other_busy_cores"] = max(all_cpu - child_cpu, 0.0) / wall
    return result


def thread_env(threads):
    env = dict(os.environ)
    # One setting for every pool either side may use: rayon (candle, gemm, the tokenizers crate), OpenMP and
    # MKL (torch). torch.set_num_threads / llm2vec::set_num_threads are called as well.
    for key in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = str(threads)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    return env


def agreement(ours, ref):
    if ours.shape != ref.shape:
        return {"shape_ours": list(ours.shape), "shape_reference": list(ref.shape), "match": False}
    a, b = ours.astype(np.float64), ref.astype(np.float64)
    diff = a - b
    norms_a, norms_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = (a * b).sum(axis=1) / np.maximum(norms_a * norms_b, 1e-30)
    rel = np.linalg.norm(diff, axis=1) / np.maximum(norms_b, 1e-30)
    return {
        "max_abs_diff": float(np.abs(diff).max()),
        "max_rel_diff_row": float(rel.max()),
        "mean_rel_diff_row": float(rel.mean()),
        "min_cosine": float(cos.min()),
        "worst_row": int(cos.argmin()),
        "finite": bool(np.isfinite(a).all() and np.isfinite(b).all()),
    }


def derived(side):
    s = side["encode_s"]
    side["sentences_per_s"] = side["sentences"] / s
    side["tokens_per_s"] = side["tokens"] / s
    side["padded_tokens_per_s"] = side["padded_tokens"] / s
    if "cpu_ticks" in side:
        side["cpu_s"] = side["cpu_ticks"] / os.sysconf("SC_CLK_TCK")
    side["cpu_per_wall"] = side["cpu_s"] / s if s > 0 else None
    side["tokens_per_cpu_s"] = side["tokens"] / side["cpu_s"] if side["cpu_s"] > 0 else float("nan")
    return side


def fmt_cores(side):
    v = side.get("other_busy_cores")
    return "?" if v is None else f"{v:.2f}"


def fmt_table(t, r):
    o, ref, agree = r["ours"], r["reference"], r["agreement"]
    rows = [
        ("sentences/s", f"{o['sentences_per_s']:.1f}", f"{ref['sentences_per_s']:.1f}", f"{r['ratio_sentences_per_s']:.2f}x"),
        ("real tokens/s", f"{o['tokens_per_s']:.0f}", f"{ref['tokens_per_s']:.0f}", f"{r['ratio_tokens_per_s']:.2f}x"),
        ("encode s", f"{o['encode_s']:.2f}", f"{ref['encode_s']:.2f}", f"{ref['encode_s'] / o['encode_s']:.2f}x faster"),
        ("load s", f"{o['load_s']:.2f}", f"{ref['load_s']:.2f}", ""),
        ("real tokens", f"{o['tokens']}", f"{ref['tokens']}", "same" if o["tokens"] == ref["tokens"] else "DIFFER"),
        ("padded tokens", f"{o['padded_tokens']}", f"{ref['padded_tokens']}", ""),
        ("real tokens / CPU s", f"{o['tokens_per_cpu_s']:.0f}", f"{ref['tokens_per_cpu_s']:.0f}", f"{r['ratio_tokens_per_cpu_s']:.2f}x"),
        ("CPU s / wall s", f"{o['cpu_per_wall']:.2f}", f"{ref['cpu_per_wall']:.2f}", ""),
        ("other work (busy cores)", fmt_cores(o), fmt_cores(ref), ""),
        ("peak RSS MB (whole run)", f"{mb(o['peak_rss_kb']):.0f}", f"{mb(ref['peak_rss_kb']):.0f}", f"{r['ratio_peak_rss']:.2f}x"),
        ("peak RSS MB (load)", f"{mb(o['peak_rss_load_kb']):.0f}", f"{mb(ref['peak_rss_load_kb']):.0f}", ""),
        ("peak RSS MB (encode)", f"{mb(o['peak_rss_encode_kb']):.0f}", f"{mb(ref['peak_rss_encode_kb']):.0f}", f"{r['ratio_peak_rss_encode']:.2f}x"),
    ]
    width = [max(len(row[i]) for row in rows + [("", "ours", "reference", "ours/reference")]) for i in range(4)]
    head = ("", "ours", "reference", "ours/reference")
    line = lambda row: f"| {row[0]:<{width[0]}} | {row[1]:>{width[1]}} | {row[2]:>{width[2]}} | {row[3]:>{width[3]}} |"
    out = [f"### {t} thread{'s' if t != 1 else ''}", "", line(head),
           f"|{'-' * (width[0] + 2)}|{'-' * (width[1] + 1)}:|{'-' * (width[2] + 1)}:|{'-' * (width[3] + 1)}:|"]
    out += [line(row) for row in rows]
    goal = "met" if r["ratio_tokens_per_s"] >= GOAL_SPEEDUP else "NOT met"
    out += ["", f"tokens/s goal (>= {GOAL_SPEEDUP}x the reference): {goal}",
            f"embeddings: min cosine {agree['min_cosine']:.8f} (row {agree['worst_row']}), "
            f"max abs diff {agree['max_abs_diff']:.3g}, max relative diff per row {agree['max_rel_diff_row']:.3g} -> "
            f"{'match' if agree['match'] else 'MISMATCH'}",
            "load average (1/5/15 min) before ours / reference: "
            f"{fmt_load(r['load_before_ours'])} / {fmt_load(r['load_before_reference'])}"]
    if len(o.get("encode_s_tries", [])) > 1:
        out.append("encode s of each try (fastest kept): ours "
                   f"{[round(x, 2) for x in o['encode_s_tries']]}, reference {[round(x, 2) for x in ref['encode_s_tries']]}")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", choices=["reference"], help=argparse.SUPPRESS)
    p.add_argument("--sentences", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", required=True, help="Hugging Face directory with the f32 weights (both sides)")
    p.add_argument("--gguf", help="also time our load of this GGUF (same weights, quantized) for the record")
    p.add_argument("--ours-bin", default=str(REPO / "target/release/examples/bench_encode"),
                   help="the bench_encode example binary")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="STS-B test JSONL (sentence1, sentence2)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, help="only the first N sentences (for a quick try)")
    p.add_argument("--attn", default="default", choices=["default", "eager", "sdpa"],
                   help="reference attention implementation (default: what transformers picks)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each side N times per thread count and keep its fastest encode (noisy machines)")
    p.add_argument("--ours-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for our side only (repeatable), e.g. CANDLE_BARRIER_POOL_SPIN_LIMIT=200")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each side, wait up to this long for other work to leave the CPUs idle")
    p.add_argument("--min-cosine", type=float, default=0.9999)
    p.add_argument("--output", default=str(REPO / "target/bench/encode_stsb.json"), help="JSON result file")
    p.add_argument("--work-dir", default=str(REPO / "target/bench/encode_stsb"), help="inputs and .npy files")
    args = p.parse_args()
    # The worker reuses --threads as one number and --output as its .npy.
    if args.worker == "reference":
        args.threads = int(args.threads)
        return reference_worker(args)

    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sentences = read_sentences(args.data, args.limit)
    if any("\n" in s or "\r" in s for s in sentences):
        raise SystemExit("error: a sentence holds a line break")
    (work / "sentences.json").write_text(json.dumps(sentences, ensure_ascii=False), encoding="utf-8")
    with open(work / "sentences.jsonl", "w", encoding="utf-8") as f:
        for s in sentences:
            f.write(json.dumps({"text": s}, ensure_ascii=False) + "\n")

    config = json.loads((Path(args.model_dir) / "config.json").read_text())
    params, stored = safetensors_params(args.model_dir)
    model = {
        "model_dir": str(Path(args.model_dir).resolve()),
        "parameters": params,
        "f32_bytes": params * 4,
        "safetensors_bytes": stored,
        "gguf": args.gguf,
        "gguf_bytes": os.path.getsize(args.gguf) if args.gguf and os.path.exists(args.gguf) else None,
    }
    print(f"STS-B test: {len(sentences)} sentences from {args.data}", file=sys.stderr)
    load = loadavg()
    if load and load[0] > 0.5:
        print(f"note: load average {load[0]:.2f} at start: other work shares the CPUs, timings will be noisy "
              f"(torch's OpenMP threads suffer most from contention)", file=sys.stderr)
    print(f"model: {model['model_dir']} ({params / 1e6:.1f}M parameters, {mb(params * 4, 'b'):.0f} MB in f32)",
          file=sys.stderr)

    ours_extra = dict(kv.split("=", 1) for kv in args.ours_env)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": {
            "cpu": cpu_model(), "cores": os.cpu_count(), "mem_gb": mem_gb(),
            "platform": platform.platform(), "python": platform.python_version(),
        },
        "load_at_start": loadavg(),
        "sentences": len(sentences),
        "batch_size": args.batch_size,
        "pooling": "mean",
        "attention": "bidirectional",
        "dtype": "f32",
        "reference_attn": args.attn,
        "repeat": max(args.repeat, 1),
        "ours_env": ours_extra,
        "inherited_env": {k: v for k, v in os.environ.items()
                          if k.startswith(("CANDLE_", "RAYON_", "OMP_", "MKL_", "KMP_", "GOMP_"))},
        "model": model,
        "runs": {},
    }

    if args.gguf:
        g = run_side("ours, GGUF load", [args.ours_bin, "--model", args.gguf, "--load-only"], thread_env(max(threads)))
        result["ours_gguf_load"] = g
        print(f"  our GGUF load: {g['load_s']:.2f} s, peak RSS {mb(g['peak_rss_kb']):.0f} MB", file=sys.stderr)

    matched = True
    tables = []
    for t in threads:
        env = thread_env(t)
        ours_env = {**env, **ours_extra}
        run = {}
        ours_npy, ref_npy = work / f"ours-t{t}.npy", work / f"reference-t{t}.npy"
        ours_cmd = [args.ours_bin, "--model", args.model_dir, "--threads", t, "--batch-size", args.batch_size,
                    "--input", work / "sentences.jsonl", "--output", ours_npy]
        ref_cmd = [sys.executable, Path(__file__).resolve(), "--worker", "reference", "--model-dir", args.model_dir,
                   "--sentences", work / "sentences.json", "--threads", t, "--batch-size", args.batch_size,
                   "--attn", args.attn, "--output", ref_npy]
        tries = {"ours": [], "reference": []}
        for rep in range(max(args.repeat, 1)):
            run.setdefault("load_before_ours", loadavg())
            tries["ours"].append(derived(run_side(f"ours, {t} thread(s)", ours_cmd, ours_env, args.wait_idle)))
            run.setdefault("load_before_reference", loadavg())
            tries["reference"].append(derived(run_side(f"reference, {t} thread(s)", ref_cmd, env, args.wait_idle)))
        run["load_after"] = loadavg()
        for side, results in tries.items():
            best = min(results, key=lambda r: r["encode_s"])  # the least disturbed try
            best["encode_s_tries"] = [r["encode_s"] for r in results]
            run[side] = best
        o, r = run["ours"], run["reference"]
        run["ratio_tokens_per_s"] = o["tokens_per_s"] / r["tokens_per_s"]
        run["ratio_sentences_per_s"] = o["sentences_per_s"] / r["sentences_per_s"]
        run["ratio_tokens_per_cpu_s"] = o["tokens_per_cpu_s"] / r["tokens_per_cpu_s"]
        run["ratio_peak_rss"] = o["peak_rss_kb"] / r["peak_rss_kb"]
        run["ratio_peak_rss_encode"] = o["peak_rss_encode_kb"] / r["peak_rss_encode_kb"]
        run["speed_goal_met"] = run["ratio_tokens_per_s"] >= GOAL_SPEEDUP
        agree = agreement(np.load(ours_npy), np.load(ref_npy))
        agree["match"] = bool(agree.get("finite") and agree.get("min_cosine", -1) >= args.min_cosine)
        run["agreement"] = agree
        matched &= agree["match"]
        run["activation_estimate_bytes"] = activation_estimate(config, min(args.batch_size, len(sentences)),
                                                               o["max_tokens"])
        result["runs"][str(t)] = run
        table = fmt_table(t, run)
        tables.append(table)
        print("\n" + table + "\n", flush=True)

    result["embeddings_match"] = matched
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    first = result["runs"][str(threads[0])]
    est = first["activation_estimate_bytes"]
    print(f"model: {params / 1e6:.1f}M parameters = {mb(params * 4, 'b'):.0f} MB in f32"
          + (f"; GGUF file {mb(model['gguf_bytes'], 'b'):.0f} MB" if model["gguf_bytes"] else "")
          + f"; activations of one layer for the largest batch (estimate): {mb(est, 'b'):.0f} MB")
    if "ours_gguf_load" in result:
        g = result["ours_gguf_load"]
        print(f"our GGUF load path: {g['load_s']:.2f} s, peak RSS {mb(g['peak_rss_kb']):.0f} MB, "
              f"RSS after load {mb(g['rss_after_load_kb']):.0f} MB")
    ref_attn = first["reference"].get("attn_implementation")
    print(f"reference: llm2vec {first['reference']['versions']['llm2vec']}, torch {first['reference']['versions']['torch']}, "
          f"transformers {first['reference']['versions']['transformers']}, attn_implementation={ref_attn}")
    if ours_extra:
        print(f"our side ran with extra environment: {ours_extra}")
    print(f"results: {out}")
    if not matched:
        print(f"FAIL: embeddings do not match (min cosine < {args.min_cosine})", file=sys.stderr)
        return 1
    return 0


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def mem_gb():
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        return None


if __name__ == "__main__":
    sys.exit(main())
