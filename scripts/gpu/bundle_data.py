#!/usr/bin/env python3
"""The data files `scripts/gpu-check.sh bundle` packs (a GPU machine cannot reach ../shared or a model hub):

  sentences.txt      the distinct STS-B test sentences, in order of first appearance (2,551)
  documents.txt      1,000 documents of 400 words: SciFact abstracts (title and text) joined in corpus order
                     until one reaches 400 words, then cut there
  train/             mntp_sample.jsonl and unsup/wiki1m_sample.txt, as in shared/data/train
  tasks/STSBenchmark task.json and test.jsonl, for `llm2vec eval`
  tokenizer/         SmolLM2-135M-Instruct's tokenizer.json and tokenizer_config.json, read from its GGUF by
                     scripts/reference/dequantize_gguf_to_hf.py's functions (needs the `gguf` package)

    python scripts/gpu/bundle_data.py --shared ../shared/data --gguf SmolLM2.gguf --out DIR
"""

import argparse
import json
import os
import shutil
import sys

DOCUMENTS = 1000
DOCUMENT_WORDS = 400


def sentences(sts_test):
    seen = {}
    with open(sts_test, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            for key in ("sentence1", "sentence2"):
                seen.setdefault(record[key], None)
    return list(seen)


def documents(corpus):
    """Documents of DOCUMENT_WORDS words from consecutive abstracts of a BEIR corpus (most are shorter)."""
    out, words = [], []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            words += f"{record.get('title', '')}. {record['text']}".split()
            if len(words) >= DOCUMENT_WORDS:
                out.append(" ".join(words[:DOCUMENT_WORDS]))
                words = []
            if len(out) == DOCUMENTS:
                return out
    sys.exit(f"error: {corpus}: text for only {len(out)} documents of {DOCUMENT_WORDS} words")


def tokenizer(gguf_path, out):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
    import dequantize_gguf_to_hf as d

    g = d.Gguf(gguf_path)
    os.makedirs(out, exist_ok=True)
    for name, content in (("tokenizer.json", d.tokenizer_json(g)), ("tokenizer_config.json", d.tokenizer_config(g))):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(content, f, ensure_ascii=False)


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line.replace("\n", " ") + "\n" for line in lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", required=True, help="the shared data folder (STSBenchmark/, SciFact/, train/)")
    p.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct's GGUF (its tokenizer)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    data = os.path.join(args.out, "data")
    os.makedirs(os.path.join(data, "train", "unsup"), exist_ok=True)
    write_lines(os.path.join(data, "sentences.txt"), sentences(os.path.join(args.shared, "STSBenchmark", "test.jsonl")))
    write_lines(os.path.join(data, "documents.txt"),
                documents(os.path.join(args.shared, "SciFact", "corpus.jsonl")))
    for name in ("mntp_sample.jsonl", os.path.join("unsup", "wiki1m_sample.txt")):
        shutil.copyfile(os.path.join(args.shared, "train", name), os.path.join(data, "train", name))
    os.makedirs(os.path.join(data, "tasks", "STSBenchmark"))
    for name in ("task.json", "test.jsonl"):
        shutil.copyfile(os.path.join(args.shared, "STSBenchmark", name),
                        os.path.join(data, "tasks", "STSBenchmark", name))
    tokenizer(args.gguf, os.path.join(args.out, "tokenizer"))


if __name__ == "__main__":
    main()
