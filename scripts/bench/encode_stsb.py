#!/usr/bin/env python3
"""Encode benchmark: llm2vec-rs (f32 and 8-bit matrix products) against the Python reference (llm2vec 0.2.3)
and llama.cpp's embedding mode, on the STS-B test sentences.

All sides encode the same sentences (sentence1 and sentence2 of every line of the STS-B test split, in
order: 2,758 sentences), mean pooling, batch size 32, on the CPU, once per thread count, each run in its own
process:
  - ours, once per --ours-dtypes entry (default f32,q8; `bench_encode --dtype q8` for 8-bit integer matrix
    products; a dtype the binary rejects with a usage error is skipped with a note), on the f32 Hugging Face
    directory, bidirectional attention;
  - the reference, on the same f32 directory, bidirectional attention;
  - llama.cpp (llama-cpp-python in its own venv, --llamacpp-venv; skipped with a note when that venv is
    missing) on the GGUF file the f32 directory was made from, bidirectional attention where the binding can
    switch causal attention off (said in the output), same length-sorted batches of 32 sentences.
Printed per thread count: ours f32 against the reference in detail (sentences/s, real tokens/s, encode
seconds, peak RSS, ratios, how closely the embeddings agree), then one summary table of every side (each
side's tokens are counted with its own tokenizer) and the CPU (model, AVX-512, VNNI). A JSON file keeps
everything.

Exits 1 when ours f32 and the reference disagree (min cosine between matching rows below --min-cosine), 2
when a side fails. Ours q8 is compared with ours f32, and llama.cpp with ours f32, by cosine: reported, not
asserted. Speed and memory goals are reported, never asserted.

Run it through scripts/bench/run-encode-bench.sh (builds, fetches what is missing). Directly:

    REF_PYTHON/python scripts/bench/encode_stsb.py --model-dir HF_DIR --gguf MODEL.gguf \
        --ours-bin target/release/examples/bench_encode [--threads 1,2] [--limit 300] [--attn eager] \
        [--ours-dtypes f32,q8] [--llamacpp-venv DIR]

This script runs under the reference venv's python (it needs numpy; the reference worker needs torch and
llm2vec). `--worker reference` and `--worker llamacpp` are the reference's and llama.cpp's own processes,
started by the driver (the latter under the llama.cpp venv's python).
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
DEFAULT_LLAMACPP_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm2vec" / "venv-llamacpp"
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


def measurements(import_s, load_s, encode_s, cpu0, cpu1, hwm_reset, peak_load, rss_after_load, peak_encode):
    """The timing and memory fields every worker reports."""
    return {
        "import_s": import_s,
        "load_s": load_s,
        "encode_s": encode_s,
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "hwm_reset": hwm_reset,
        "peak_rss_load_kb": peak_load,
        "rss_after_load_kb": rss_after_load,
        "peak_rss_encode_kb": peak_encode,
        "peak_rss_kb": max(peak_load, peak_encode),
    }

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
        **measurements(import_s, load_s, encode_s, cpu0, cpu1, hwm_reset, peak_load, rss_after_load, peak_encode),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                     "llm2vec": __import__("importlib.metadata").metadata.version("llm2vec")},
    }))


# ----------------------------------------------------------------------------------- the llama.cpp side

def llamacpp_worker(args):
    """Loads the GGUF with llama-cpp-python in embedding mode (mean pooling), encodes the sentences in the
    same length-sorted batches as ours, writes the .npy (input order) and prints one JSON line."""
    sentences = json.loads(Path(args.sentences).read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    import llama_cpp
    import_s = time.perf_counter() - t0

    # Untimed: the token counts, with llama.cpp's own tokenizer exactly as Llama.embed() calls it (a
    # vocabulary-only load), to size one batch of `batch_size` sentences as a single decode.
    vocab = llama_cpp.Llama(model_path=args.gguf, vocab_only=True, verbose=False)
    token_ids = [vocab.tokenize(s.encode("utf-8")) for s in sentences]
    bos = vocab.token_bos()
    del vocab
    lengths = [len(t) for t in token_ids]
    order = sorted(range(len(sentences)), key=lambda i: -lengths[i])  # longest first, as ours batches
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    largest = max(sum(lengths[i] for i in b) for b in batches)
    # Non-causal attention needs the whole batch in one micro-batch (n_ubatch >= tokens), and the unified KV
    # cache holds every sequence of the batch (n_ctx >= tokens).
    n_batch = -(-largest // 256) * 256
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=args.gguf, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                          n_threads=args.threads, n_threads_batch=args.threads, n_ctx=n_batch, n_batch=n_batch,
                          n_ubatch=n_batch, verbose=False)
    if args.llamacpp_attention == "bidirectional" and hasattr(llama_cpp, "llama_set_causal_attn"):
        llama_cpp.llama_set_causal_attn(llm._ctx.ctx, False)
    causal = bool(llama_cpp.llama_get_causal_attn(llm._ctx.ctx)) if hasattr(llama_cpp, "llama_get_causal_attn") \
        else None
    load_s = time.perf_counter() - t0
    peak_load = status_kb("VmHWM")
    rss_after_load = status_kb("VmRSS")

    hwm_reset = reset_hwm()
    rows = [None] * len(sentences)
    counted = 0
    cpu0 = os.times()
    t0 = time.perf_counter()
    for batch in batches:
        embeddings, n = llm.embed([sentences[i] for i in batch], return_count=True)
        counted += n
        for i, e in zip(batch, embeddings):
            rows[i] = e
    encode_s = time.perf_counter() - t0
    cpu1 = os.times()
    peak_encode = status_kb("VmHWM")

    array = np.asarray(rows, dtype=np.float32)
    np.save(args.output, array)
    print(json.dumps({
        "sentences": len(sentences),
        "tokens": counted,
        "tokens_pretokenized": sum(lengths),
        "padded_tokens": counted,  # sequences are packed, not padded
        "max_tokens": max(lengths),
        "batches": len(batches),
        "largest_batch_tokens": largest,
        "bos_added": bool(token_ids and all(t[:1] == [bos] for t in token_ids)),
        "dim": int(array.shape[1]),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "n_ctx": n_batch, "n_batch": n_batch, "n_ubatch": n_batch,
        "causal_attention": causal,
        "attention": {True: "causal", False: "bidirectional", None: "causal (the binding cannot switch it)"}[causal],
        **measurements(import_s, load_s, encode_s, cpu0, cpu1, hwm_reset, peak_load, rss_after_load, peak_encode),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "versions": {"llama-cpp-python": llama_cpp.__version__},
    }))


# ------------------------------------------------------------------------------------------- the driver

class UsageError(Exception):
    """A side's binary rejected its command line (exit status 2 with a usage line): an option it lacks."""


def run_side(name, cmd, env, wait=0, usage_ok=False):
    """Runs one side in its own process; returns its JSON line (the last line of stdout). With usage_ok, a
    usage error (exit status 2, 'usage:' on stderr) raises UsageError instead of ending the benchmark."""
    busy_before = wait_idle(wait) if wait else busy_cores()
    print(f"  [{name}] {' '.join(str(c) for c in cmd)}", file=sys.stderr, flush=True)
    jiffies0, child0 = cpu_jiffies(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    jiffies1, child1 = cpu_jiffies(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if usage_ok and proc.returncode == 2 and "usage:" in proc.stderr:
        raise UsageError(proc.stderr.strip().splitlines()[-1])
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
        "mean_cosine": float(cos.mean()),
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


def fmt_table(t, r, dtype="f32"):
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
    out = [f"### {t} thread{'s' if t != 1 else ''}: ours {dtype} against the reference", "", line(head),
           f"|{'-' * (width[0] + 2)}|{'-' * (width[1] + 1)}:|{'-' * (width[2] + 1)}:|{'-' * (width[3] + 1)}:|"]
    out += [line(row) for row in rows]
    goal = "met" if r["ratio_tokens_per_s"] >= GOAL_SPEEDUP else "NOT met"
    out += ["", f"tokens/s goal (>= {GOAL_SPEEDUP}x the reference): {goal}",
            f"embeddings: min cosine {agree['min_cosine']:.8f} (row {agree['worst_row']}), "
            f"max abs diff {agree['max_abs_diff']:.3g}, max relative diff per row {agree['max_rel_diff_row']:.3g} -> "
            f"{'not asserted' if agree['match'] is None else 'match' if agree['match'] else 'MISMATCH'}",
            "load average (1/5/15 min) before ours / reference: "
            f"{fmt_load(r['load_before_ours'])} / {fmt_load(r['load_before_reference'])}"]
    if len(o.get("encode_s_tries", [])) > 1:
        out.append("encode s of each try (fastest kept): ours "
                   f"{[round(x, 2) for x in o['encode_s_tries']]}, reference {[round(x, 2) for x in ref['encode_s_tries']]}")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", choices=["reference", "llamacpp"], help=argparse.SUPPRESS)
    p.add_argument("--sentences", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", required=True, help="Hugging Face directory with the f32 weights (both sides)")
    p.add_argument("--gguf", help="the GGUF the f32 directory was made from: llama.cpp's model, and our load of "
                   "it is timed for the record")
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
    p.add_argument("--ours-dtypes", default="f32,q8",
                   help="comma-separated dtypes of our side, one run each (default f32,q8; f32 runs without a "
                   "--dtype flag, the others pass --dtype D to bench_encode and are skipped when it rejects it)")
    p.add_argument("--llamacpp-venv", default=str(DEFAULT_LLAMACPP_VENV),
                   help="venv with llama-cpp-python (scripts/bench/setup-llamacpp-venv.sh); the llama.cpp side "
                   "is skipped when it is missing or empty ('')")
    p.add_argument("--llamacpp-attention", default="bidirectional", choices=["bidirectional", "causal"],
                   help="llama.cpp attention (default bidirectional, as LLM2Vec; causal is llama.cpp's default)")
    p.add_argument("--min-cosine", type=float, default=0.9999)
    p.add_argument("--output", default=str(REPO / "target/bench/encode_stsb.json"), help="JSON result file")
    p.add_argument("--work-dir", default=str(REPO / "target/bench/encode_stsb"), help="inputs and .npy files")
    args = p.parse_args()
    # The worker reuses --threads as one number and --output as its .npy.
    if args.worker:
        args.threads = int(args.threads)
        return reference_worker(args) if args.worker == "reference" else llamacpp_worker(args)

    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    ours_dtypes = [d.strip() for d in args.ours_dtypes.split(",") if d.strip()]
    if not ours_dtypes:
        raise SystemExit("error: --ours-dtypes is empty")
    notes = []

    def note(text):
        notes.append(text)
        print(f"note: {text}", file=sys.stderr, flush=True)

    llamacpp_python = Path(args.llamacpp_venv) / "bin" / "python" if args.llamacpp_venv else None
    if llamacpp_python is None or not llamacpp_python.exists():
        llamacpp_python = None
        note(f"llama.cpp side skipped: no venv at {args.llamacpp_venv or '(none given)'} "
             "(scripts/bench/setup-llamacpp-venv.sh makes it)")
    elif not args.gguf:
        llamacpp_python = None
        note("llama.cpp side skipped: no --gguf")
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
            "cpu": cpu_model(), "cpu_features": cpu_features(), "cpu_line": cpu_line(), "cores": os.cpu_count(),
            "mem_gb": mem_gb(),
            "platform": platform.platform(), "python": platform.python_version(),
        },
        "load_at_start": loadavg(),
        "sentences": len(sentences),
        "batch_size": args.batch_size,
        "pooling": "mean",
        "attention": "bidirectional",
        "dtype": "f32",  # the reference's and the f32 directory's
        "ours_dtypes": ours_dtypes,
        "llamacpp_attention_requested": args.llamacpp_attention,
        "notes": notes,
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
    primary = "f32" if "f32" in ours_dtypes else ours_dtypes[0]
    ours_keys = {d: "ours" if d == primary else f"ours_{d}" for d in ours_dtypes}
    skipped = set()  # our dtypes the binary rejects
    if primary != "f32":
        note(f"no f32 run of ours: ours {primary} is compared with the reference, without the assertion")
    for t in threads:
        env = thread_env(t)
        ours_env = {**env, **ours_extra}
        run = {}
        npy = {"reference": work / f"reference-t{t}.npy", "llamacpp": work / f"llamacpp-t{t}.npy"}
        sides = {}  # key -> (label, command, environment, usage errors allowed)
        for d in ours_dtypes:
            key = ours_keys[d]
            npy[key] = work / f"ours-{d}-t{t}.npy"
            cmd = [args.ours_bin, "--model", args.model_dir, "--threads", t, "--batch-size", args.batch_size,
                   "--input", work / "sentences.jsonl", "--output", npy[key]]
            if d != "f32":  # f32 is the default: no flag, so binaries without --dtype run it
                cmd += ["--dtype", d]
            sides[key] = (f"ours {d}", cmd, ours_env, d != "f32")
        sides["reference"] = ("reference", [
            sys.executable, Path(__file__).resolve(), "--worker", "reference", "--model-dir", args.model_dir,
            "--sentences", work / "sentences.json", "--threads", t, "--batch-size", args.batch_size,
            "--attn", args.attn, "--output", npy["reference"]], env, False)
        if llamacpp_python:
            sides["llamacpp"] = ("llama.cpp", [
                llamacpp_python, Path(__file__).resolve(), "--worker", "llamacpp", "--model-dir", args.model_dir,
                "--gguf", args.gguf, "--sentences", work / "sentences.json", "--threads", t,
                "--batch-size", args.batch_size, "--llamacpp-attention", args.llamacpp_attention,
                "--output", npy["llamacpp"]], env, False)
        tries = {}
        for rep in range(max(args.repeat, 1)):
            for key, (label, cmd, side_env, usage_ok) in sides.items():
                dtype = key == "ours" and primary or key.removeprefix("ours_")
                if key.startswith("ours") and dtype in skipped:
                    continue
                run.setdefault(f"load_before_{key}", loadavg())
                try:
                    side = run_side(f"{label}, {t} thread(s)", cmd, side_env, args.wait_idle, usage_ok=usage_ok)
                except UsageError as err:
                    skipped.add(dtype)
                    note(f"ours {dtype} skipped: {args.ours_bin} rejects --dtype {dtype} ({err}); "
                         "rebuild bench_encode with --dtype support")
                    continue
                side["side"] = label
                tries.setdefault(key, []).append(derived(side))
        run["load_after"] = loadavg()
        for key, results in tries.items():
            best = min(results, key=lambda r: r["encode_s"])  # the least disturbed try
            best["encode_s_tries"] = [r["encode_s"] for r in results]
            run[key] = best
        r = run["reference"]
        for key in tries:
            run[key]["ratio_tokens_per_s_vs_reference"] = run[key]["tokens_per_s"] / r["tokens_per_s"]
            run[key]["ratio_sentences_per_s_vs_reference"] = run[key]["sentences_per_s"] / r["sentences_per_s"]
        if "ours" in run:
            o = run["ours"]
            run["ratio_tokens_per_s"] = o["tokens_per_s"] / r["tokens_per_s"]
            run["ratio_sentences_per_s"] = o["sentences_per_s"] / r["sentences_per_s"]
            run["ratio_tokens_per_cpu_s"] = o["tokens_per_cpu_s"] / r["tokens_per_cpu_s"]
            run["ratio_peak_rss"] = o["peak_rss_kb"] / r["peak_rss_kb"]
            run["ratio_peak_rss_encode"] = o["peak_rss_encode_kb"] / r["peak_rss_encode_kb"]
            run["speed_goal_met"] = run["ratio_tokens_per_s"] >= GOAL_SPEEDUP
            agree = agreement(np.load(npy["ours"]), np.load(npy["reference"]))
            if primary == "f32":
                agree["match"] = bool(agree.get("finite") and agree.get("min_cosine", -1) >= args.min_cosine)
                matched &= agree["match"]
            else:
                agree["match"] = None
            run["agreement"] = agree
        # Reported, not asserted: our other dtypes and llama.cpp against ours f32 (else the reference).
        base = "ours" if "ours" in run and primary == "f32" else "reference"
        for key in tries:
            if key in ("ours", "reference") or key == base:
                continue
            agree = agreement(np.load(npy[key]), np.load(npy[base]))
            agree["against"] = "ours f32" if base == "ours" else "reference"
            run[f"agreement_{key}"] = agree
        run["activation_estimate_bytes"] = activation_estimate(config, min(args.batch_size, len(sentences)),
                                                               run.get("ours", r)["max_tokens"])
        result["runs"][str(t)] = run
        if "ours" in run:
            table = fmt_table(t, run, primary)
            tables.append(table)
            print("\n" + table + "\n", flush=True)

    summary = fmt_summary(result, threads)
    result["summary"] = summary
    print("\n" + "\n".join(summary["lines"]) + "\n", flush=True)
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
    if "llamacpp" in first:
        l = first["llamacpp"]
        print(f"llama.cpp: llama-cpp-python {l['versions']['llama-cpp-python']}, {l['attention']} attention, "
              f"n_ctx = n_batch = n_ubatch = {l['n_batch']}, BOS added: {'yes' if l['bos_added'] else 'no'}; "
              f"{l['system_info']}")
    if ours_extra:
        print(f"our side ran with extra environment: {ours_extra}")
    for text in notes:
        print(f"note: {text}")
    print(f"results: {out}")
    if not matched:
        print(f"FAIL: embeddings do not match (min cosine < {args.min_cosine})", file=sys.stderr)
        return 1
    return 0


def fmt_summary(result, threads):
    """One table of every side and thread count: speed, memory, the ratio to the reference, agreement."""
    head = ("side", "threads", "sentences/s", "real tokens/s", "peak RSS MB", "tokens/s / reference",
            "sentences/s / reference", "cosine min / mean (against)")
    rows, records = [], []
    for t in threads:
        run = result["runs"][str(t)]
        for key in sorted((k for k in run if isinstance(run[k], dict) and "encode_s" in run[k]),
                          key=lambda k: (k != "ours", not k.startswith("ours"), k == "llamacpp", k)):
            side = run[key]
            agree = run.get("agreement") if key == "ours" else run.get(f"agreement_{key}")
            against = "reference" if key == "ours" else agree.get("against") if agree else None
            label = side["side"] + (f" ({side['attention']})" if key == "llamacpp" else "")
            cos = (f"{agree['min_cosine']:.6f} / {agree['mean_cosine']:.6f} ({against})"
                   if agree and "min_cosine" in agree else "-")
            rows.append((label, str(t), f"{side['sentences_per_s']:.1f}", f"{side['tokens_per_s']:.0f}",
                         f"{mb(side['peak_rss_kb']):.0f}", f"{side['ratio_tokens_per_s_vs_reference']:.2f}x",
                         f"{side['ratio_sentences_per_s_vs_reference']:.2f}x", cos))
            records.append({"side": label, "key": key, "threads": t, "sentences_per_s": side["sentences_per_s"],
                            "tokens_per_s": side["tokens_per_s"], "tokens": side["tokens"],
                            "peak_rss_kb": side["peak_rss_kb"],
                            "ratio_tokens_per_s_vs_reference": side["ratio_tokens_per_s_vs_reference"],
                            "ratio_sentences_per_s_vs_reference": side["ratio_sentences_per_s_vs_reference"],
                            "min_cosine": agree.get("min_cosine") if agree else None,
                            "mean_cosine": agree.get("mean_cosine") if agree else None, "against": against})
    width = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]
    line = lambda row: "| " + " | ".join(f"{c:<{w}}" if i in (0, 7) else f"{c:>{w}}"
                                         for i, (c, w) in enumerate(zip(row, width))) + " |"
    rule = "|" + "|".join("-" * (w + 1) + ("-" if i in (0, 7) else ":") for i, w in enumerate(width)) + "|"
    lines = ["### Summary", "", f"CPU: {result['machine']['cpu_line']}", "", line(head), rule]
    lines += [line(row) for row in rows]
    lines += ["", "real tokens are counted with each side's own tokenizer (llama.cpp's may differ); "
              "ours f32 against the reference is asserted, the other cosines are reported only"]
    return {"lines": lines, "rows": records}


def cpu_features():
    """The instruction-set flags of /proc/cpuinfo that matter to the matrix products."""
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    keep = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
            "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
    return [f for f in keep if f in flags]


def cpu_line():
    """'MODEL, N cores; AVX-512: yes/no; VNNI: yes (which)/no; flags'."""
    f = cpu_features()
    avx512 = "avx512f" in f
    vnni = [x for x in f if "vnni" in x]
    return (f"{cpu_model()}, {os.cpu_count()} logical cores; AVX-512: {'yes' if avx512 else 'no'}; "
            f"VNNI: {'yes (' + ', '.join(vnni) + ')' if vnni else 'no'}; flags: {' '.join(f) or '?'}")


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
