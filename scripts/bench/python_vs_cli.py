#!/usr/bin/env python3
"""Encode throughput of the Python package (llm2vec_rs) against the `llm2vec` CLI, in the same run.

Both sides encode the STS-B test sentences (sentence1 then sentence2 of every line, in file order: 2,758
texts) with the same model, batch size and thread count, each in its own fresh process, in rounds that
alternate which side goes first (the CLI in rounds 1, 3, ...); the encode time excludes loading (the CLI's own
"encoded ... in Xs" line; `encode()` timed in Python).
Prints each side's best and median round (texts/s and tokens/s from the best), the Python/CLI throughput ratios
of the best and of the medians, and checks that the two outputs are bit-identical (exit 1 if not). On a shared
machine the rounds vary: compare the ratios with the spread of the rounds.

    .venv-py/bin/python scripts/bench/python_vs_cli.py [--threads 2] [--rounds 3] [--limit N]

Needs the package installed in the running interpreter and target/release/llm2vec, built from the same tree:
run scripts/python-test.sh first (it builds both into .venv-py and target/). Both build times are printed.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "STSBenchmark" / "test.jsonl"
DEFAULT_MODEL = Path.home() / ".cache" / "llm2vec" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

PYTHON_SIDE = """
import sys, time
import numpy as np
import llm2vec_rs
model_path, texts_path, out_path, threads, batch_size = sys.argv[1:6]
llm2vec_rs.set_num_threads(int(threads))
texts = open(texts_path, encoding="utf-8").read().split("\\n")
model = llm2vec_rs.LLM2Vec.from_pretrained(model_path)
start = time.perf_counter()
embeddings = model.encode(texts, batch_size=int(batch_size), show_progress_bar=False)
print(f"{time.perf_counter() - start:.4f}")
np.save(out_path, embeddings)
"""


def main():
    args = parse_args()
    args.cli_built = built(args.cli)
    texts = read_texts(args.data, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
        args.cli = Path(shutil.copy2(args.cli, tmp / "llm2vec"))  # a rebuild during the run cannot swap it
        rounds = {"python": [], "cli": []}
        tokens = None
        for k in range(args.rounds):
            for side in ("cli", "python") if k % 2 == 0 else ("python", "cli"):
                if side == "cli":
                    seconds, tokens = run_cli(args, tmp)
                else:
                    seconds = run_python(args, tmp)
                rounds[side].append(seconds)
        same = np.array_equal(np.load(tmp / "cli.npy"), np.load(tmp / "python.npy"))
    report(args, len(texts), tokens, rounds, same)
    return 0 if same else 1


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--cli", type=Path, default=REPO / "target" / "release" / "llm2vec")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per side")
    p.add_argument("--limit", type=int, help="only the first N lines of the data (2 texts each)")
    return p.parse_args()


def read_texts(path, limit):
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:limit]
    return [r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]


def run_cli(args, tmp):
    """(encode seconds, tokens) from the CLI's `encoded N inputs (T tokens, dim D) in Xs` line."""
    cmd = [
        str(args.cli), "encode", "--model", args.model, "--input", str(tmp / "texts.txt"),
        "--output", str(tmp / "cli.npy"), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
    ]
    stderr = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr
    match = re.search(r"encoded \d+ inputs \((\d+) tokens, dim \d+\) in ([\d.]+)s", stderr)
    if not match:
        sys.exit(f"unexpected CLI output: {stderr}")
    return float(match.group(2)), int(match.group(1))


def run_python(args, tmp):
    cmd = [
        sys.executable, "-c", PYTHON_SIDE, args.model, str(tmp / "texts.txt"), str(tmp / "python.npy"),
        str(args.threads), str(args.batch_size),
    ]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip())


def report(args, n, tokens, rounds, same):
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{n} texts ({tokens} tokens), model {Path(args.model).name}, {args.threads} threads, "
          f"batch {args.batch_size}, {args.rounds} alternating rounds; load average at the end {load}")
    print(f"built: CLI {args.cli_built}, Python extension {extension_built()}")
    print(f"{'side':<8} {'best s':>8} {'median s':>9} {'texts/s':>8} {'tokens/s':>9}   rounds (s)")
    for side in ("cli", "python"):
        best = min(rounds[side])
        print(f"{side:<8} {best:>8.2f} {median(rounds[side]):>9.2f} {n / best:>8.1f} {tokens / best:>9.0f}   "
              + " ".join(f"{s:.2f}" for s in rounds[side]))
    print(f"throughput python/cli: best {min(rounds['cli']) / min(rounds['python']):.3f}, "
          f"median {median(rounds['cli']) / median(rounds['python']):.3f}")
    print(f"embeddings bit-identical: {same}")


def built(path):
    """A file's modification time: the two sides should come from the same build (scripts/python-test.sh)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(Path(path).stat().st_mtime))


def extension_built():
    cmd = [sys.executable, "-c", "import llm2vec_rs._native as n; print(n.__file__)"]
    return built(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip())


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


if __name__ == "__main__":
    sys.exit(main())
