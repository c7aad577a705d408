#!/usr/bin/env python3
"""Writes crates/llm2vec/tests/fixtures/parity/bert-<variant>/: tiny random BERT encoders saved as
sentence-transformers folders, and what sentence-transformers computes for them.

Variants:
  * mean: mean pooling + Normalize module, max_seq_length 12 (long inputs are truncated),
  * cls:  CLS pooling, no Normalize module, max_seq_length 40.

For each it makes a tiny WordPiece tokenizer (BERT normaliser and pre-tokenizer, [CLS] $A [SEP]) from
STSBenchmark sentences, builds a seeded random BertModel (weights drawn larger than HF's init so that
differences show), saves Transformer + Pooling (+ Normalize) with SentenceTransformer.save, and records
the token ids and SentenceTransformer.encode(...) of fixed inputs (batch size 3) -> expected.json.

Run with the reference venv (scripts/reference/setup-venv.sh installs sentence-transformers 2.7.0):
    .venv-ref/bin/python scripts/reference/make_bert_fixtures.py
Deterministic: rerunning rewrites byte-identical files.
"""

import importlib.metadata as md
import json
import os
from collections import Counter
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer, models  # noqa: E402
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors  # noqa: E402
from tokenizers.models import WordPiece  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/llm2vec/tests/fixtures/parity"
STS_TRAIN = Path(os.environ.get("STS_TRAIN", ROOT.parent / "shared/data/STSBenchmark/train.jsonl"))
VERSIONS = {"sentence-transformers": "2.7.0", "transformers": "4.44.2", "torch": "2.4.1", "tokenizers": "0.19.1"}

INPUTS = [
    "A man is playing a guitar.",
    "The cat sits on the mat!",
    "hello",
    "Three dogs run through the snow, chasing a red ball across the field near the old farmhouse.",
    "UPPER case Ünïcode and numbers 42",
    "a",
    "Two women are dancing on a stage while a crowd watches them.",
]

VARIANTS = {
    "mean": {"pooling": "mean", "normalize": True, "max_seq_length": 12, "seed": 1},
    "cls": {"pooling": "cls", "normalize": False, "max_seq_length": 40, "seed": 2},
}


def check_versions():
    bad = {k: md.version(k) for k, v in VERSIONS.items() if md.version(k).split("+")[0] != v}
    assert not bad, f"unexpected versions: {bad} (want {VERSIONS})"


def make_tokenizer(path: Path):
    """A WordPiece vocabulary chosen deterministically (the tokenizers trainer breaks ties at random): the
    special tokens, every character seen (alone and as a `##` continuation), then the most frequent words."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts = Counter()
    for line in STS_TRAIN.read_text().splitlines()[:2000]:
        record = json.loads(line)
        for sentence in (record["sentence1"], record["sentence2"]):
            counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(sentence)))
    chars = sorted({c for word in counts for c in word})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1][:150]
    tokens = specials + chars + [f"##{c}" for c in chars] + words
    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece()
    tok.save(str(path))
    return tok.get_vocab_size()


def build(variant: str, spec: dict):
    out = OUT / f"bert-{variant}"
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        vocab = make_tokenizer(base / "tokenizer.json")
        BertTokenizerFast(tokenizer_file=str(base / "tokenizer.json")).save_pretrained(base)
        torch.manual_seed(spec["seed"])
        config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=40, initializer_range=0.2)
        model = BertModel(config, add_pooling_layer=False)
        model.save_pretrained(base, safe_serialization=True)
        transformer = models.Transformer(str(base), max_seq_length=spec["max_seq_length"])
        modules = [transformer, models.Pooling(32, pooling_mode=spec["pooling"])]
        if spec["normalize"]:
            modules.append(models.Normalize())
        SentenceTransformer(modules=modules, device="cpu").save(str(out))
    (out / "README.md").unlink()  # a generated model card, not needed
    config_path = out / "config.json"  # names the temporary folder it was loaded from
    config_json = json.loads(config_path.read_text())
    config_json["_name_or_path"] = f"tiny-bert-{variant}"
    config_path.write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    st = SentenceTransformer(str(out), device="cpu")
    st.eval()
    features = st.tokenize(INPUTS)
    token_ids = [[int(t) for t, m in zip(ids, mask) if m] for ids, mask in zip(features["input_ids"], features["attention_mask"])]
    embeddings = st.encode(INPUTS, batch_size=3, convert_to_numpy=True)
    expected = {
        "generator": "scripts/reference/make_bert_fixtures.py",
        "versions": {k: md.version(k) for k in VERSIONS},
        "variant": variant,
        "settings": spec,
        "inputs": INPUTS,
        "token_ids": token_ids,
        "embeddings": [[round(float(v), 7) for v in row] for row in embeddings],
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    check_versions()
    torch.set_num_threads(1)
    for name, spec in VARIANTS.items():
        build(name, spec)
