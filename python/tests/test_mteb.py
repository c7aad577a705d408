"""The mteb wrapper: task -> instruction mapping, and one small STS task (the first 100 STS-B test pairs from
../shared/data) end to end: through mteb itself when it is installed (it needs torch, so CI skips that test),
and always through a minimal evaluator that computes what mteb's STS evaluator computes (cosine Spearman)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import SHARED_DATA
from llm2vec_rs.mteb import STS_INSTRUCTION, MTEBModel, task_instruction

PAIRS = 100


def stsb_rows():
    with open(SHARED_DATA / "STSBenchmark" / "test.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(PAIRS), f)]


def metadata(name, task_type, prompt=None):
    """The attributes of mteb's TaskMetadata that the wrapper reads."""
    return SimpleNamespace(name=name, type=task_type, prompt=prompt)


def test_instruction_table():
    hint = json.loads((SHARED_DATA / "SciFact" / "task.json").read_text())["instruction_hint"]
    assert task_instruction("SciFact", "Retrieval", "query") == hint
    assert task_instruction("SciFact", "Retrieval", "document") == ""
    assert task_instruction("SciFact", "Retrieval", SimpleNamespace(value="document")) == ""
    assert task_instruction("STSBenchmark") == STS_INSTRUCTION == "Retrieve semantically similar text:"
    assert task_instruction("SomeNewSTS", "STS") == STS_INSTRUCTION
    assert task_instruction("SomeNewTask", "Classification", None, "Classify the review.") == "Classify the review:"
    assert task_instruction("SomeNewTask", "Retrieval", "query", {"query": "Find the answer"}) == "Find the answer:"
    assert task_instruction("SomeNewTask") == ""


def test_every_local_task_uses_its_instruction_hint():
    for task in sorted(p.parent for p in SHARED_DATA.glob("*/task.json")):
        info = json.loads((task / "task.json").read_text())
        assert task_instruction(info["name"], info["type"], "query") == info["instruction_hint"], info["name"]


def test_encode_applies_the_instruction(tiny_model):
    model = MTEBModel.from_pretrained(tiny_model, instructions={"MyTask": "Find the thing:"})
    texts = ["summit define", "a man is playing a flute ."]
    want = model.model.encode([["Find the thing:", t] for t in texts], show_progress_bar=False)
    batches = [{"text": texts[:1]}, {"text": texts[1:]}]  # mteb 2: a DataLoader of batches
    mteb2 = model.encode(batches, task_metadata=metadata("MyTask", "STS"), hf_split="test", hf_subset="default")
    mteb1 = model.encode(texts, task_name="MyTask", prompt_type="query")  # mteb 1: a list of sentences
    assert np.array_equal(mteb2, want) and np.array_equal(mteb1, want)
    documents = model.encode(texts, task_name="MyTask", prompt_type="document")
    assert np.array_equal(documents, model.model.encode(texts, show_progress_bar=False))


def test_similarity():
    a = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    b = np.array([[0.0, 2.0], [2.0, 0.0]], dtype=np.float32)
    model = MTEBModel(model=None)
    np.testing.assert_allclose(model.similarity(a, b), [[0.8, 0.6], [0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(model.similarity_pairwise(a, b), [0.8, 1.0], atol=1e-6)


def average_ranks(x):
    """Ranks from 1, ties sharing their mean rank (scipy.stats.rankdata's default)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def spearman(a, b):
    return float(np.corrcoef(average_ranks(np.asarray(a)), average_ranks(np.asarray(b)))[0, 1])


def evaluate_sts(model, task_metadata, rows, min_score=0, max_score=5, batch_size=32):
    """cosine_spearman as mteb 2 computes it (AbsTaskSTS + AnySTSEvaluator): each column encoded through the
    model's encode (batches of {"text": [...]}, prompt_type None), cosine of matching rows, Spearman
    correlation with the gold scores scaled to [0, 1]."""

    def embed(column):
        batches = [{"text": [r[column] for r in rows[i : i + batch_size]]} for i in range(0, len(rows), batch_size)]
        e = model.encode(batches, task_metadata=task_metadata, hf_split="test", hf_subset="default", prompt_type=None)
        e = np.asarray(e, dtype=np.float64)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    cosine = np.sum(embed("sentence1") * embed("sentence2"), axis=1)
    gold = [(r["score"] - min_score) / (max_score - min_score) for r in rows]
    return spearman(gold, cosine)


@pytest.fixture(scope="module")
def sts_model(default_model):
    return MTEBModel.from_pretrained(default_model)


def test_sts_end_to_end_through_the_minimal_evaluator(sts_model):
    rows = stsb_rows()
    score = evaluate_sts(sts_model, metadata("STSBenchmark", "STS"), rows)
    # The same score from LLM2Vec.encode with the STS instruction written out: the wrapper adds nothing else.
    # (Untrained bidirectional SmolLM2 scores near 0 here: without MNTP/SimCSE training it is a poor encoder.)
    first = sts_model.model.encode([[STS_INSTRUCTION, r["sentence1"]] for r in rows], show_progress_bar=False)
    second = sts_model.model.encode([[STS_INSTRUCTION, r["sentence2"]] for r in rows], show_progress_bar=False)
    first, second = (e.astype(np.float64) / np.linalg.norm(e, axis=1, keepdims=True) for e in (first, second))
    cosine = np.sum(first * second, axis=1)
    assert score == pytest.approx(spearman([r["score"] / 5 for r in rows], cosine), abs=1e-12)
    assert -1 <= score <= 1


def test_spearman_matches_a_hand_computed_value():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [3, 1, 2, 0]) == pytest.approx(-0.9486832980505139)  # scipy's spearmanr


def test_sts_end_to_end_through_mteb(sts_model):
    mteb = pytest.importorskip("mteb")
    datasets = pytest.importorskip("datasets")
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    rows = stsb_rows()

    class LocalSTSBenchmark(AbsTaskSTS):
        """STS-B test pairs read from ../shared/data instead of the Hugging Face hub."""

        metadata = TaskMetadata(
            name="STSBenchmark", dataset={"path": "local/STSBenchmark", "revision": "local"},
            description="The first STS-B test pairs, from ../shared/data/STSBenchmark/test.jsonl",
            reference=None, type="STS", category="t2t", modalities=["text"], eval_splits=["test"],
            eval_langs=["eng-Latn"], main_score="cosine_spearman", date=None, domains=None, task_subtypes=None,
            license=None, annotations_creators=None, dialect=None, sample_creation=None, bibtex_citation=None,
        )

        def load_data(self, num_proc=None, **kwargs):
            self.dataset = datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
            self.data_loaded = True

    result = mteb.evaluate(sts_model, [LocalSTSBenchmark()], cache=None)
    score = result.task_results[0].scores["test"][0]["cosine_spearman"]
    assert score == pytest.approx(evaluate_sts(sts_model, LocalSTSBenchmark.metadata, rows), abs=1e-6)
