#!/usr/bin/env python3
"""Encode throughput on Ray against one process: what the engine costs on this machine.

Embeds the first N distinct STS-B training sentences (sentence1 and sentence2, in file order) three ways with
the same model and token budget:
  one process   `llm2vec_rs.ray.Embedder` in a fresh process with 2 threads (no Ray);
  1 node        `embed_corpus` on a local Ray cluster of one `ray start` node with 1 CPU (1 actor, 1 thread);
  2 nodes       the same on two nodes of 1 CPU each (2 actors, 1 thread each).
Times exclude model loading (and, on Ray, starting the actors). Prints texts/s and tokens/s of each, their
ratio to one process and the peak memory of one actor (of the one process), and checks the two-node
embeddings against one process's (max abs difference).

    .venv-py/bin/python scripts/bench/ray_throughput.py [--texts 4000] [--model PATH]

Needs the package with its `ray` extra in the running interpreter: run scripts/python-test.sh first.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from llm2vec_rs import ray as lray

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "STSBenchmark" / "train.jsonl"
DEFAULT_MODEL = Path.home() / ".cache" / "llm2vec" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

ONE_PROCESS = """
import json, sys, time
import numpy as np
from llm2vec_rs.ray import Embedder
model, texts_path, out_path, budget = sys.argv[1:5]
texts = json.load(open(texts_path, encoding="utf-8"))
embedder = Embedder(model, token_budget=int(budget), threads=2)
start = time.perf_counter()
embeddings, tokens = embedder.embed_counting(texts)
print(json.dumps({"embed_s": time.perf_counter() - start, "tokens": tokens, "actor_peak_bytes": embedder.peak_memory()}))
np.save(out_path, embeddings)
"""


def main():
    args = parse_args()
    texts = read_texts(args.data, args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
        corpus = tmp / "corpus"
        corpus.mkdir()
        per_file = -(-len(texts) // args.files)
        for k in range(args.files):
            with open(corpus / f"part{k:02d}.jsonl", "w", encoding="utf-8") as f:
                for i in range(k * per_file, min((k + 1) * per_file, len(texts))):
                    f.write(json.dumps({"id": i, "text": texts[i]}) + "\n")
        results = [("one process, 2 threads", 1, 2, one_process(args, tmp))]
        for nodes in (1, 2):
            summary = on_cluster(args, corpus, tmp / f"out{nodes}", nodes)
            results.append((f"{nodes} node(s), 1 CPU each", nodes, 1, summary))
        difference = np.abs(read_embeddings(tmp / "out2", len(texts)) - np.load(tmp / "one.npy")).max()
    report(args, texts, results, difference)


def one_process(args, tmp):
    cmd = [sys.executable, "-c", ONE_PROCESS, str(args.model), str(tmp / "texts.json"), str(tmp / "one.npy"),
           str(args.token_budget)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def on_cluster(args, corpus, out, nodes):
    with lray.LocalCluster(nodes=nodes, cpus=1) as cluster:
        return lray.embed_corpus(corpus, out, args.model, address=cluster.address, token_budget=args.token_budget,
                                 rows_per_task=args.rows_per_task)


def read_embeddings(out, rows):
    embeddings = None
    for path in out.glob("*.parquet"):
        table = pq.read_table(path)
        part = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
        if embeddings is None:
            embeddings = np.zeros((rows, part.shape[1]), dtype=np.float32)
        embeddings[table.column("id").to_pylist()] = part
    return embeddings


def read_texts(path, limit):
    seen = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        seen.setdefault(record["sentence1"], None)
        seen.setdefault(record["sentence2"], None)
    return list(seen)[:limit]


def report(args, texts, results, difference):
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{len(texts)} texts, model {args.model.name}, token budget {args.token_budget}, "
          f"{args.rows_per_task} rows per actor call; {load}")
    print(f"{'setup':<26} {'actors':>6} {'threads':>7} {'s':>8} {'texts/s':>8} {'tokens/s':>9} {'vs one':>7} "
          f"{'peak MiB':>8}")
    base = results[0][3]["tokens"] / results[0][3]["embed_s"]
    for name, actors, threads, r in results:
        rate = r["tokens"] / r["embed_s"]
        print(f"{name:<26} {actors:>6} {threads:>7} {r['embed_s']:>8.2f} {len(texts) / r['embed_s']:>8.1f} "
              f"{rate:>9.0f} {rate / base:>7.3f} {r['actor_peak_bytes'] / 2**20:>8.0f}")
    print(f"max |2 nodes - one process| = {difference:.2e}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--texts", type=int, default=4000)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--rows-per-task", type=int, default=100)
    p.add_argument("--token-budget", type=int, default=8192)
    return p.parse_args()


if __name__ == "__main__":
    main()
