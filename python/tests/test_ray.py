"""llm2vec_rs.ray on a real Ray cluster: a head and a second node started on this machine with `ray start`, one
CPU each. 20,000 STS-B and SICK-R sentences (20 files, JSONL and Parquet, half with an instruction) embedded by
`python -m llm2vec_rs.ray` with the tiny model must give every id once and the `llm2vec encode` embeddings (one
process) to 1e-6; a rerun skips complete files and redoes missing or broken ones; a job whose worker process on
the second node is killed mid-job still finishes with nothing missing or doubled. Also `embed_dataset` on the
same cluster, the token-budget batching and the input errors."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA


def require(module):
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("LLM2VEC_REQUIRE_TEST_FILES"):
            pytest.fail(f"{module} is not installed (pip install 'ray[data]'), and LLM2VEC_REQUIRE_TEST_FILES is set")
        pytest.skip(f"{module} is not installed")


ray = require("ray")
pa = require("pyarrow")
pq = require("pyarrow.parquet")
from llm2vec_rs import ray as lray  # noqa: E402

TEXTS = 20_000
FILES = 20
INSTRUCTION = "Retrieve semantically similar text:"


def sentences(limit):
    """The first `limit` distinct sentences of STS-B then SICK-R (train, dev, test; sentence1 and sentence2)."""
    seen = {}
    for task in ("STSBenchmark", "SICK-R"):
        for split in ("train", "dev", "test"):
            path = SHARED_DATA / task / f"{split}.jsonl"
            if not path.exists():
                message = f"{path} is missing"
                if os.environ.get("LLM2VEC_REQUIRE_TEST_FILES"):
                    pytest.fail(f"{message}, and LLM2VEC_REQUIRE_TEST_FILES is set")
                pytest.skip(message)
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                for text in (record["sentence1"], record["sentence2"]):
                    seen.setdefault(text, None)
    texts = list(seen)[:limit]
    assert len(texts) == limit, f"only {len(texts)} distinct sentences"
    return texts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """20 input files of 1,000 rows: even ones JSONL, odd ones Parquet; files 0-9 carry an instruction column.
    Returns the folder and the (id, instruction, text) rows in order."""
    folder = tmp_path_factory.mktemp("corpus")
    texts = sentences(TEXTS)
    per_file = TEXTS // FILES
    rows = []
    for k in range(FILES):
        part = [(f"s{i:05d}", INSTRUCTION if k < FILES // 2 else "", texts[i])
                for i in range(k * per_file, (k + 1) * per_file)]
        rows += part
        columns = {"id": [r[0] for r in part], "text": [r[2] for r in part]}
        if k < FILES // 2:
            columns["instruction"] = [r[1] for r in part]
        if k % 2 == 0:
            with open(folder / f"part{k:02d}.jsonl", "w", encoding="utf-8") as f:
                for values in zip(*columns.values()):
                    f.write(json.dumps(dict(zip(columns, values))) + "\n")
        else:
            pq.write_table(pa.table(columns), folder / f"part{k:02d}.parquet")
    return folder, rows


@pytest.fixture(scope="module")
def reference(corpus, tiny_model, cli, tmp_path_factory):
    """`llm2vec encode` on all rows in one process: id -> embedding."""
    _, rows = corpus
    embeddings = cli(tiny_model, [(r[1], r[2]) for r in rows], tmp_path_factory.mktemp("cli"))
    return {r[0]: e for r, e in zip(rows, embeddings)}


@pytest.fixture(scope="module")
def cluster():
    with lray.LocalCluster(nodes=2, cpus=1) as c:
        yield c


def run_job(cluster, corpus_dir, out_dir, model, *extra):
    cmd = [sys.executable, "-m", "llm2vec_rs.ray", str(corpus_dir), str(out_dir), "--model", model,
           "--address", cluster.address, "--rows-per-task", "100", *extra]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)


def finish(job, timeout=600):
    _, err = job.communicate(timeout=timeout)
    assert job.returncode == 0, err
    return err


def read_outputs(out_dir):
    ids, embeddings = [], []
    for path in sorted(Path(out_dir).glob("*.parquet")):
        table = pq.read_table(path)
        assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32), path
        ids += table.column("id").to_pylist()
        embeddings.append(np.array(table.column("embedding").to_pylist(), dtype=np.float32))
    return ids, np.concatenate(embeddings)


def check_outputs(out_dir, reference):
    ids, embeddings = read_outputs(out_dir)
    counts = Counter(ids)
    assert set(counts) == set(reference), "ids missing or extra"
    assert max(counts.values()) == 1, f"ids written twice: {[i for i, n in counts.items() if n > 1][:5]}"
    expected = np.stack([reference[i] for i in ids])
    assert np.abs(embeddings - expected).max() <= 1e-6


def test_corpus_on_two_nodes_matches_the_cli(cluster, corpus, reference, tiny_model, tmp_path):
    folder, _ = corpus
    err = finish(run_job(cluster, folder, tmp_path / "out", tiny_model))
    nodes = {line.split()[3] for line in err.splitlines() if line.startswith("embedder ")}
    assert len(nodes) == 2, f"the embedders did not run on both nodes:\n{err}"
    assert f"{FILES} file(s) embedded, 0 skipped" in err
    assert len(list((tmp_path / "out").glob("*.parquet"))) == FILES
    check_outputs(tmp_path / "out", reference)

    # Resumable: complete files are skipped; a missing one and a broken one are redone.
    (tmp_path / "out" / "part03.parquet").unlink()
    (tmp_path / "out" / "part04.parquet").write_bytes(b"PAR1 not a whole file")
    err = finish(run_job(cluster, folder, tmp_path / "out", tiny_model))
    assert f"2 file(s) embedded, {FILES - 2} skipped as complete; 2000 rows" in err, err
    check_outputs(tmp_path / "out", reference)

    # Other settings are another output: nothing is skipped.
    err = finish(run_job(cluster, folder, tmp_path / "out", tiny_model, "--normalize"))
    assert f"{FILES} file(s) embedded, 0 skipped" in err


def descendants(pid):
    """Processes below `pid`, from /proc."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_killed_worker_process_mid_job(cluster, corpus, reference, tiny_model, tmp_path):
    folder, _ = corpus
    job = run_job(cluster, folder, tmp_path / "out", tiny_model, "--token-budget", "256")
    embedder_pids, wrote = set(), 0
    for line in job.stderr:
        if line.startswith("embedder "):
            embedder_pids.add(int(line.split()[-1]))
        if line.startswith("wrote "):
            wrote += 1
            break
    second_node = set(descendants(cluster.processes[1].pid))
    [victim] = embedder_pids & second_node
    assert job.poll() is None and wrote == 1, "the job ended before the kill"
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    err = finish(job)
    assert f"{FILES} file(s) embedded" in err
    written = [p.stat().st_mtime for p in (tmp_path / "out").glob("*.parquet")]
    assert len(written) == FILES and max(written) > killed_at, "no file was written after the kill"
    check_outputs(tmp_path / "out", reference)


def test_embed_dataset_on_the_cluster(cluster, corpus, reference, tiny_model, tmp_path):
    _, rows = corpus
    items = [{"id": r[0], "instruction": r[1], "text": r[2]} for r in rows[:3000:3]]
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        dataset = ray.data.from_items(items)
        out = lray.embed_dataset(dataset, tiny_model, instruction_column="instruction", token_budget=512)
        table = pa.concat_tables(ray.get(out.to_arrow_refs()))
        lray.embed_dataset(dataset, tiny_model, output=tmp_path / "ds", instruction_column="instruction")
    finally:
        ray.shutdown()
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(i["id"] for i in items)
    got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert np.abs(got - np.stack([reference[i] for i in ids])).max() <= 1e-6
    written = pq.read_table(tmp_path / "ds")
    assert written.num_rows == len(items)
    assert written.schema.field("embedding").type == pa.list_(pa.float32(), 32)


def test_token_batches_keep_to_the_budget():
    counts = [5, 40, 12, 12, 3, 100, 7]
    batches = lray.token_batches(counts, 36)
    assert sorted(i for b in batches for i in b) == list(range(len(counts)))
    for batch in batches:
        longest = max(counts[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 36
    assert [5] in batches and [1] in batches  # longer than the budget: alone


def test_embedder_in_process_matches_the_cli(corpus, reference, tiny_model):
    _, rows = corpus
    embedder = lray.Embedder(tiny_model, token_budget=300, threads=1)
    part = rows[:500]
    got = embedder.embed([r[2] for r in part], [r[1] for r in part])
    assert np.abs(got - np.stack([reference[r[0]] for r in part])).max() <= 1e-6


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.jsonl", '{"text": "fine"}\n{"text": "no end"\n', "a.jsonl: line 2: not JSON"),
        ("b.jsonl", '{"text": "fine"}\n\n{"txt": "typo"}\n', "b.jsonl: line 3: field 'text' must be a string"),
        ("c.jsonl", '{"text": "  "}\n', "c.jsonl: line 1: field 'text' is empty"),
        ("d.jsonl", '[1, 2]\n', "d.jsonl: line 1: expected a JSON object"),
        ("e.jsonl", '{"text": "a", "id": 1}\n{"text": "b", "id": [2]}\n', "e.jsonl: line 2: field 'id' must be"),
        ("f.jsonl", '{"text": "a", "id": 1}\n{"text": "b", "id": "x"}\n', "f.jsonl: the 'id' values are not all"),
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        lray.Source(path, "text", "instruction", "id", None)


def test_bad_parquet_names_file_and_row(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="a.parquet: no column 'text' \\(columns: body\\)"):
        lray.Source(tmp_path / "a.parquet", "text", "instruction", "id", None)
    pq.write_table(pa.table({"text": ["x", None]}), tmp_path / "b.parquet")
    with pytest.raises(ValueError, match="b.parquet: row 2: field 'text' must be a string"):
        lray.Source(tmp_path / "b.parquet", "text", "instruction", "id", None)
    (tmp_path / "c.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="c.parquet: not a readable Parquet file"):
        lray.Source(tmp_path / "c.parquet", "text", "instruction", "id", None)


def test_corpus_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        lray.embed_corpus(tmp_path / "missing", tmp_path / "out", "m")
    with pytest.raises(ValueError, match="no .parquet or .jsonl files"):
        lray.embed_corpus(tmp_path, tmp_path / "out", "m")
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="would both be written to a.parquet"):
        lray.embed_corpus(tmp_path, tmp_path / "out", "m")
